"""Built-in offline audio demo: telephone keypad (DTMF) tones as 16-bit WAV files in the Speech Commands v2 layout.

Each of the 16 keys sounds as the sum of one low ("row") and one high ("column") sine; a 17th class, "noise", holds
background noise alone. A clip carries one key press of random onset, duration, level, twist (high minus low tone
level), frequency deviation and phases, in background noise cut from one of a few long noise recordings at a random
SNR. The recordings are written next to the clips as `_background_noise_/`, exactly where Speech Commands keeps its
own, so the same split finder and the same noise augmentation read both.

Every clip is drawn from its own seed `(seed, split, class, index)`, so the result does not depend on generation
order and any single clip can be reproduced alone.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf

from mmattn.data import ensure_dataset

# Bump when the synthesis changes, so an existing tree of an older generator is detected, not silently reused.
GENERATOR_VERSION = "1"
SPLITS = ("train", "val", "test")
LIST_FILES = {"val": "validation_list.txt", "test": "testing_list.txt"}
BACKGROUND_DIR = "_background_noise_"

# The standard keypad: rows 1 2 3 A / 4 5 6 B / 7 8 9 C / * 0 # D. Folder names are lowercase words, as in
# Speech Commands, because "*" and "#" are awkward in paths and shells.
KEYPAD = (("1", "2", "3", "a"), ("4", "5", "6", "b"), ("7", "8", "9", "c"), ("star", "0", "hash", "d"))
ROW_FREQS = (697, 770, 852, 941)
COLUMN_FREQS = (1209, 1336, 1477, 1633)
DTMF_FREQS: dict[str, tuple[int, int]] = {
    key: (ROW_FREQS[r], COLUMN_FREQS[c]) for r, row in enumerate(KEYPAD) for c, key in enumerate(row)
}
NOISE_CLASS = "noise"
DTMF_CLASSES: tuple[str, ...] = tuple(sorted([*DTMF_FREQS, NOISE_CLASS]))  # sorted = the order a folder scan gives

# Raised-cosine fade in and out of each tone, so its edges do not click (a click is broadband and would smear the
# two spectral lines the classes differ by).
RAMP_MS = 5.0
BACKGROUND_SECONDS = 10.0
BACKGROUND_RMS_DBFS = -20.0
# Mains hum stops at the 8th harmonic (400 Hz at 50 Hz), below the lowest DTMF row (697 Hz): it is a nuisance to
# ignore, not a near-miss tone.
HUM_HZ, HUM_HARMONICS = 50.0, 8
TELEPHONE_BAND_HZ = (300.0, 3400.0)
BACKGROUND_NOISES = ("brown_noise", "mains_hum", "pink_noise", "telephone_band_noise", "white_noise")
# The telephone band's upper edge must sit below Nyquist, and 8 kHz is the telephone rate anyway.
MIN_SAMPLE_RATE = 8000


def _max_freq_tolerance() -> float:
    """Largest relative deviation at which neighbouring rows (or columns) still cannot reach each other's band."""
    return min((hi - lo) / (hi + lo) for freqs in (ROW_FREQS, COLUMN_FREQS) for lo, hi in zip(freqs, freqs[1:]))


def _dbfs_to_rms(level_dbfs: float) -> float:
    """RMS of a signal at `level_dbfs` on the AES17 scale, where a full-scale sine reads 0 dBFS."""
    return 10 ** (level_dbfs / 20) / np.sqrt(2)


def _coloured_noise(
    rng: np.random.Generator,
    num_samples: int,
    sample_rate: int,
    exponent: float,
    band: tuple[float, float] = (20.0, float("inf")),
) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as 1 / f**exponent inside `band` (0 = white, 1 = pink, 2 = brown).

    The 20 Hz lower edge by default keeps brown noise from drifting like a DC offset over a long recording.
    """
    freqs = np.fft.rfftfreq(num_samples, 1 / sample_rate)
    inside = (freqs >= band[0]) & (freqs <= band[1])
    gain = np.zeros_like(freqs)
    gain[inside] = freqs[inside] ** (-exponent / 2)
    spectrum = np.fft.rfft(rng.standard_normal(num_samples)) * gain
    return np.fft.irfft(spectrum, num_samples)


def _mains_hum(rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """50 Hz hum with harmonics falling as 1/k, random phases and a slow random drift in amplitude, over pink hiss."""
    t = np.arange(num_samples) / sample_rate
    hum = np.zeros(num_samples)
    for k in range(1, HUM_HARMONICS + 1):
        hum += np.sin(2 * np.pi * HUM_HZ * k * t + rng.uniform(0, 2 * np.pi)) / k
    drift = 1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
    hiss = _coloured_noise(rng, num_samples, sample_rate, exponent=1.0)
    return hum / _rms(hum) * drift + 0.1 * hiss / _rms(hiss)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def render_background(name: str, rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """Synthesise the background recording `name` (one of `BACKGROUND_NOISES`) as floats at -20 dBFS RMS."""
    if name == "white_noise":
        x = rng.standard_normal(num_samples)
    elif name == "pink_noise":
        x = _coloured_noise(rng, num_samples, sample_rate, exponent=1.0)
    elif name == "brown_noise":
        x = _coloured_noise(rng, num_samples, sample_rate, exponent=2.0)
    elif name == "telephone_band_noise":
        x = _coloured_noise(rng, num_samples, sample_rate, exponent=0.0, band=TELEPHONE_BAND_HZ)
    elif name == "mains_hum":
        x = _mains_hum(rng, num_samples, sample_rate)
    else:
        raise ValueError(f"unknown background noise {name!r}; choose one of {list(BACKGROUND_NOISES)}")
    x = x * (_dbfs_to_rms(BACKGROUND_RMS_DBFS) / _rms(x))
    peak = np.abs(x).max()
    return x / peak if peak > 1 else x


def _key_tone(
    key: str,
    rng: np.random.Generator,
    num_samples: int,
    sample_rate: int,
    rms: float,
    twist_db: tuple[float, float],
    freq_tolerance: float,
) -> np.ndarray:
    """One key's dual tone with random twist, frequency deviations and phases; power `rms**2` before the fades."""
    twist = 10 ** (rng.uniform(*twist_db) / 20)  # high tone amplitude over low tone amplitude
    a_low = rms * np.sqrt(2 / (1 + twist**2))  # so that (a_low**2 + a_high**2) / 2 == rms**2
    f_low, f_high = (f * (1 + rng.uniform(-freq_tolerance, freq_tolerance)) for f in DTMF_FREQS[key])
    phase_low, phase_high = rng.uniform(0, 2 * np.pi, size=2)
    t = np.arange(num_samples) / sample_rate
    low = a_low * np.sin(2 * np.pi * f_low * t + phase_low)
    tone = low + twist * a_low * np.sin(2 * np.pi * f_high * t + phase_high)
    ramp = min(round(RAMP_MS * sample_rate / 1000), num_samples // 2)
    if ramp > 0:
        fade = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
        tone[:ramp] *= fade
        tone[-ramp:] *= fade[::-1]
    return tone


def render_clip(
    name: str,
    rng: np.random.Generator,
    backgrounds: Sequence[np.ndarray],
    *,
    sample_rate: int,
    clip_samples: int,
    snr_db: tuple[float, float],
    duration_ms: tuple[float, float],
    freq_tolerance: float,
    twist_db: tuple[float, float],
    level_dbfs: tuple[float, float],
) -> np.ndarray:
    """Synthesise one clip of class `name` (one of `DTMF_CLASSES`) as floats [clip_samples] with peak <= 1.

    Args:
        name: Key name (a key of `DTMF_FREQS`) or "noise".
        rng: Source of all randomness for this clip.
        backgrounds: Long noise recordings (each >= `clip_samples`) to cut the background from.
        sample_rate: Sample rate in Hz.
        clip_samples: Clip length in samples.
        snr_db: Range of the tone-to-noise power ratio, the tone's power measured while it sounds.
        duration_ms: Range of the tone duration, fades included.
        freq_tolerance: Largest relative deviation of each frequency from its nominal value.
        twist_db: Range of the level of the high tone minus that of the low tone.
        level_dbfs: Range of the tone's level (AES17 dBFS: a full-scale sine is 0 dBFS).
    """
    if name != NOISE_CLASS and name not in DTMF_FREQS:
        raise ValueError(f"unknown DTMF class {name!r}; choose one of {list(DTMF_CLASSES)}")
    source = backgrounds[rng.integers(len(backgrounds))]
    start = rng.integers(0, len(source) - clip_samples + 1)
    noise = source[start : start + clip_samples]
    noise = noise / max(_rms(noise), 1e-12)
    if name == NOISE_CLASS:
        # The level follows the noise level under a tone (tone level minus SNR), so loudness alone gives no hint.
        clip = noise * _dbfs_to_rms(rng.uniform(*level_dbfs) - rng.uniform(*snr_db))
    else:
        num_tone = min(max(1, round(rng.uniform(*duration_ms) * sample_rate / 1000)), clip_samples)
        onset = rng.integers(0, clip_samples - num_tone + 1)
        rms = _dbfs_to_rms(rng.uniform(*level_dbfs))
        clip = noise * (rms / 10 ** (rng.uniform(*snr_db) / 20))
        clip[onset : onset + num_tone] += _key_tone(name, rng, num_tone, sample_rate, rms, twist_db, freq_tolerance)
    peak = np.abs(clip).max()
    return clip / peak if peak > 1 else clip


def dial(
    keys: Sequence[str],
    rng: np.random.Generator,
    *,
    sample_rate: int,
    tone_ms: tuple[float, float] = (40.0, 120.0),
    pause_ms: tuple[float, float] = (40.0, 120.0),
    level_dbfs: tuple[float, float] = (-20.0, -6.0),
    twist_db: tuple[float, float] = (-4.0, 4.0),
    freq_tolerance: float = 0.015,
) -> np.ndarray:
    """Dial `keys` (keys of `DTMF_FREQS`, e.g. "555" or ["1", "star"]) as a float waveform, tone-pause-tone.

    ITU-T Q.24 receivers must accept tones and pauses of 40 ms and more; the defaults stay near the fast end, as an
    auto-dialler or a quick thumb does. The waveform starts at the first tone's onset and ends with the last tone,
    so the caller adds silence around it. Every key gets its own duration, pause before it, twist, frequency
    deviations and phases; the level is drawn once, as one phone line carries the whole number.

    Args:
        keys: Keys to dial, in order; an empty sequence gives an empty waveform.
        rng: Source of all randomness.
        sample_rate: Sample rate in Hz.
        tone_ms: Range of each tone's duration in milliseconds, fades included.
        pause_ms: Range of the silence between two tones in milliseconds.
        level_dbfs: Range of the tones' level (AES17 dBFS: a full-scale sine is 0 dBFS).
        twist_db: Range of the level of the high tone minus that of the low tone.
        freq_tolerance: Largest relative deviation of each frequency from its nominal value.

    Raises:
        ValueError: An unknown key, `sample_rate` below 8000 Hz, or a range that is reversed or out of bounds.
    """
    unknown = sorted({k for k in keys if k not in DTMF_FREQS})
    if unknown:
        raise ValueError(f"unknown DTMF keys {unknown}; choose from {sorted(DTMF_FREQS)}")
    if sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate {sample_rate} Hz is too low for the DTMF bands; use >= {MIN_SAMPLE_RATE}")
    tone = _check_range("tone_ms", tone_ms, low=0.0)
    pause = _check_range("pause_ms", pause_ms, low=0.0)
    if tone[0] <= 0:
        raise ValueError(f"tone_ms {tuple(tone_ms)} must be > 0 ms")
    if not 0 <= freq_tolerance < _max_freq_tolerance():
        raise ValueError(f"freq_tolerance {freq_tolerance} must lie in [0, {_max_freq_tolerance():.4f})")
    rms = _dbfs_to_rms(rng.uniform(*_check_range("level_dbfs", level_dbfs, high=0.0)))
    twist = _check_range("twist_db", twist_db)
    parts = []
    for j, key in enumerate(keys):
        if j:
            parts.append(np.zeros(round(rng.uniform(*pause) * sample_rate / 1000)))
        num_tone = max(1, round(rng.uniform(*tone) * sample_rate / 1000))
        parts.append(_key_tone(key, rng, num_tone, sample_rate, rms, twist, freq_tolerance))
    return np.concatenate(parts) if parts else np.zeros(0)


def _to_pcm16(x: np.ndarray) -> np.ndarray:
    """Quantise floats in [-1, 1] to 16-bit PCM here, so the bytes do not depend on libsndfile's conversion."""
    return np.rint(x * 32767).astype(np.int16)


def _write_wav(path: Path, pcm: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM samples as a WAV file.

    Encoded in memory and written in one go: libsndfile writing to a path seeks back to patch the header on close,
    and those extra system calls made up two thirds of the generation time.
    """
    buffer = io.BytesIO()
    sf.write(buffer, pcm, sample_rate, subtype="PCM_16", format="WAV")
    path.write_bytes(buffer.getvalue())


def _file_stems(seed: int, counts: dict[str, int]) -> dict[tuple[str, int], str]:
    """Speech Commands style names `<8 hex>_nohash_<k>` for each (split, index), shared by all classes.

    As in Speech Commands, where the hex is a speaker's hash, one "speaker" says every word once; `k` numbers the
    rare repeats of a hex so that names stay unique.
    """
    stems: dict[tuple[str, int], str] = {}
    seen: dict[str, int] = {}
    for split in SPLITS:
        for i in range(counts[split]):
            speaker = hashlib.sha1(f"dtmf/{seed}/{split}/{i}".encode()).hexdigest()[:8]
            stems[split, i] = f"{speaker}_nohash_{seen.get(speaker, 0)}"
            seen[speaker] = seen.get(speaker, 0) + 1
    return stems


def _readme(settings: dict[str, object], counts: dict[str, int]) -> str:
    """The README.md written into the dataset root."""
    keypad = [
        "| Hz | " + " | ".join(map(str, COLUMN_FREQS)) + " |",
        "|---" * (len(COLUMN_FREQS) + 1) + "|",
        *(f"| {f} | " + " | ".join(f"`{k}`" for k in row) + " |" for f, row in zip(ROW_FREQS, KEYPAD)),
    ]
    lines = [
        "# DTMF keypad tones (mmattn built-in audio demo)",
        "",
        "Synthetic, generated by `mmattn/tasks/audio/dtmf.py` (`make_dtmf`); no recordings of people. Re-create it",
        "with the same settings to get the same bytes.",
        "",
        "Layout: exactly that of Speech Commands v2: `<class>/<8 hex>_nohash_<k>.wav` (16-bit PCM WAV, mono),",
        "`validation_list.txt` and `testing_list.txt` (one `<class>/<file>.wav` a line; training = every clip in",
        f"neither list), and `{BACKGROUND_DIR}/` holding {BACKGROUND_SECONDS:g} s noise recordings.",
        "",
        f"Classes ({len(DTMF_CLASSES)}): {', '.join(DTMF_CLASSES)}. Clips per class: "
        + ", ".join(f"{split} {n}" for split, n in counts.items())
        + ".",
        "Class `noise` holds background noise only, no tone. Each key (folder name) sounds its row and column tone:",
        "",
        *keypad,
        "",
        "Each tone clip: one key press with random onset (fully inside the clip), duration, level (AES17 dBFS, a",
        "full-scale sine is 0 dBFS), twist (high minus low tone level), relative deviation of each frequency and",
        f"phases; {RAMP_MS:g} ms raised-cosine fades; background noise cut at a random offset from one of the",
        "recordings and mixed at a random SNR, measured against the tone's power while it sounds. A noise clip's",
        "level follows the same distribution as the noise under a tone. Clips whose peak would exceed full scale are",
        "scaled down, never clipped.",
        "",
        f"Background recordings ({BACKGROUND_RMS_DBFS:g} dBFS RMS): white, pink (1/f) and brown (1/f^2) noise above",
        f"20 Hz, white noise limited to the telephone band {TELEPHONE_BAND_HZ[0]:g}-{TELEPHONE_BAND_HZ[1]:g} Hz, and",
        f"{HUM_HZ:g} Hz mains hum with {HUM_HARMONICS} harmonics over pink hiss.",
        "",
        "Settings:",
        "",
        *(f"- {k}: {v}" for k, v in settings.items()),
        "",
    ]
    return "\n".join(lines)


def generate_dtmf(
    out_dir: Path | str,
    *,
    sample_rate: int,
    clip_seconds: float,
    train_per_class: int,
    val_per_class: int,
    test_per_class: int,
    seed: int,
    snr_db: tuple[float, float],
    duration_ms: tuple[float, float],
    freq_tolerance: float,
    twist_db: tuple[float, float],
    level_dbfs: tuple[float, float],
) -> None:
    """Write the DTMF dataset into `out_dir` (not atomic and unchecked; `make_dtmf` validates and is atomic)."""
    out_dir = Path(out_dir)
    clip_samples = round(clip_seconds * sample_rate)
    counts = {"train": train_per_class, "val": val_per_class, "test": test_per_class}

    (out_dir / BACKGROUND_DIR).mkdir(parents=True, exist_ok=True)
    background_samples = max(round(BACKGROUND_SECONDS * sample_rate), 2 * clip_samples)
    backgrounds = []
    for j, name in enumerate(BACKGROUND_NOISES):
        # Key [seed, 1, j] vs [seed, 0, split, class, i] for clips: the two never share a random stream.
        pcm = _to_pcm16(render_background(name, np.random.default_rng([seed, 1, j]), background_samples, sample_rate))
        _write_wav(out_dir / BACKGROUND_DIR / f"{name}.wav", pcm, sample_rate)
        backgrounds.append(pcm / 32767)  # mix from exactly what is on disk

    stems = _file_stems(seed, counts)
    listed: dict[str, list[str]] = {split: [] for split in LIST_FILES}
    clip_kw = dict(
        sample_rate=sample_rate,
        clip_samples=clip_samples,
        snr_db=snr_db,
        duration_ms=duration_ms,
        freq_tolerance=freq_tolerance,
        twist_db=twist_db,
        level_dbfs=level_dbfs,
    )
    for class_idx, name in enumerate(DTMF_CLASSES):
        (out_dir / name).mkdir()
        for split_idx, split in enumerate(SPLITS):
            for i in range(counts[split]):
                clip = render_clip(
                    name, np.random.default_rng([seed, 0, split_idx, class_idx, i]), backgrounds, **clip_kw
                )
                rel = f"{name}/{stems[split, i]}.wav"
                _write_wav(out_dir / rel, _to_pcm16(clip), sample_rate)
                if split in listed:
                    listed[split].append(rel)
    for split, filename in LIST_FILES.items():
        (out_dir / filename).write_text("".join(f"{rel}\n" for rel in sorted(listed[split])))
    (out_dir / "README.md").write_text(_readme(dict(seed=seed, clip_seconds=clip_seconds, **clip_kw), counts))


def _check_range(key: str, value: Sequence[float], low: float = -np.inf, high: float = np.inf) -> tuple[float, float]:
    """Return `value` as a (low, high) float pair, checking low <= high and that both lie in [`low`, `high`]."""
    if len(value) != 2:
        raise ValueError(f"{key} must be a (low, high) pair, got {value}")
    lo, hi = float(value[0]), float(value[1])
    if lo > hi:
        raise ValueError(f"{key} {tuple(value)} is reversed; give it as (low, high) with low <= high")
    if lo < low or hi > high:
        raise ValueError(f"{key} {tuple(value)} must lie within [{low:g}, {high:g}]")
    return lo, hi


def make_dtmf(
    root: Path | str,
    *,
    sample_rate: int = 16000,
    clip_seconds: float = 1.0,
    train_per_class: int = 250,
    val_per_class: int = 40,
    test_per_class: int = 40,
    seed: int = 0,
    snr_db: tuple[float, float] = (0.0, 20.0),
    duration_ms: tuple[float, float] = (40.0, 400.0),
    freq_tolerance: float = 0.015,
    twist_db: tuple[float, float] = (-4.0, 4.0),
    level_dbfs: tuple[float, float] = (-30.0, -6.0),
) -> Path:
    """Generate the DTMF dataset once under `root/dtmf` (atomic, process-safe) and return that folder.

    Args:
        root: Data directory; the dataset goes to `root/dtmf`.
        sample_rate: Sample rate in Hz (>= 8000, the telephone rate).
        clip_seconds: Length of every clip in seconds.
        train_per_class: Training clips per class.
        val_per_class: Validation clips per class (listed in `validation_list.txt`).
        test_per_class: Test clips per class (listed in `testing_list.txt`).
        seed: Seed of the whole dataset.
        snr_db: Range of the tone-to-noise power ratio in dB, the tone's power measured while it sounds.
        duration_ms: Range of the tone duration in milliseconds, fades included.
        freq_tolerance: Largest relative deviation of each tone from its nominal frequency; ITU-T Q.24 receivers
            must accept +-1.5%.
        twist_db: Range of the high tone's level minus the low tone's level, in dB.
        level_dbfs: Range of the tone level in dBFS (AES17: a full-scale sine is 0 dBFS).

    Raises:
        ValueError: A size or range is out of bounds, or `root/dtmf` holds a dataset made with other settings.
    """
    if sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate {sample_rate} Hz is too low for the DTMF bands; use >= {MIN_SAMPLE_RATE}")
    if clip_seconds <= 0:
        raise ValueError(f"clip_seconds must be > 0, got {clip_seconds}")
    for key, n, least in (("train_per_class", train_per_class, 1), ("val_per_class", val_per_class, 1)):
        if n < least:
            raise ValueError(f"{key} must be >= {least}, got {n}")
    if test_per_class < 0:
        raise ValueError(f"test_per_class must be >= 0, got {test_per_class}")
    max_tolerance = _max_freq_tolerance()
    if not 0 <= freq_tolerance < max_tolerance:
        raise ValueError(
            f"freq_tolerance {freq_tolerance} must lie in [0, {max_tolerance:.4f}) so that neighbouring keys' "
            "frequency bands do not overlap"
        )
    duration = _check_range("duration_ms", duration_ms, low=0.0)
    if duration[0] <= 0 or duration[1] > clip_seconds * 1000:
        raise ValueError(
            f"duration_ms {tuple(duration_ms)} must lie in (0, {clip_seconds * 1000:g}] so a tone fits in a clip of "
            f"clip_seconds={clip_seconds}"
        )
    settings = dict(
        sample_rate=int(sample_rate),
        clip_seconds=float(clip_seconds),
        train_per_class=train_per_class,
        val_per_class=val_per_class,
        test_per_class=test_per_class,
        seed=seed,
        snr_db=_check_range("snr_db", snr_db),
        duration_ms=duration,
        freq_tolerance=float(freq_tolerance),
        twist_db=_check_range("twist_db", twist_db),
        level_dbfs=_check_range("level_dbfs", level_dbfs, high=0.0),
    )
    version = f"{GENERATOR_VERSION} ramp_ms={RAMP_MS} " + " ".join(f"{k}={v}" for k, v in settings.items())
    generate = partial(generate_dtmf, **settings)
    return ensure_dataset(Path(root) / "dtmf", generate, name="dtmf", version=version)
