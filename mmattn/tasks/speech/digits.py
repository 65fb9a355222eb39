"""Built-in offline speech demo: spoken digit strings ("three seven one") as 16-bit FLAC files with manifests.

Backend "espeak" speaks each string with the espeak-ng synthesiser, in a random voice of a fixed pool of English
accents and voice variants, at a random speed and pitch. Backend "dtmf" stands in where espeak-ng is missing: the
string is dialled as telephone keypad tones, one tone per digit, so a recogniser still has to segment and classify
a sequence; the targets stay the digit words. Either way each utterance gets random leading and trailing silence, a
random level and background noise (`mmattn.tasks.audio.dtmf.render_background`) at a random SNR.

Every utterance is drawn from its own seed `(seed, split, index)`, so the result does not depend on generation
order or on the number of worker threads, and any single utterance can be reproduced alone. espeak-ng itself is
deterministic: the same text, voice, speed and pitch give the same samples.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import textwrap
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import MappingProxyType

import numpy as np
import soundfile as sf
import torch

from mmattn.data import ensure_dataset
from mmattn.data.demo import MARKER_NAME
from mmattn.tasks.audio.dtmf import (
    BACKGROUND_NOISES,
    MIN_SAMPLE_RATE,
    _check_range,
    _dbfs_to_rms,
    _rms,
    _to_pcm16,
    dial,
    render_background,
)
from mmattn.tasks.audio.io import resampler

from .corpus import Utterance, write_manifest

__all__ = [
    "DIGIT_WORDS",
    "ESPEAK_VOICES",
    "SPLITS",
    "digits_to_words",
    "espeak_available",
    "make_spoken_digits",
    "render_utterance",
]

log = logging.getLogger(__name__)

# Bump when the synthesis changes, so an existing tree of an older generator is detected, not silently reused.
GENERATOR_VERSION = "1"
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "valid", "test")
DEFAULT_COUNTS: Mapping[str, int] = MappingProxyType({"train": 3000, "valid": 200, "test": 200})
BACKENDS = ("auto", "espeak", "dtmf")

# Accents x voice variants of Debian's espeak-ng 1.51 (`espeak-ng --voices=en`, `--voices=variant`). British English
# is "en": with "en-gb", espeak-ng 1.51 silently ignores a "+variant" suffix. The mbrola voices ("mb/...") are left
# out: they need the separate mbrola program. All splits share this pool, so the test set measures new digit
# strings, speeds, pitches and noise, not unseen voices.
ESPEAK_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
ESPEAK_VARIANTS = ("", "+m3", "+m7", "+f2", "+f3", "+f4")
ESPEAK_VOICES = tuple(accent + variant for accent in ESPEAK_ACCENTS for variant in ESPEAK_VARIANTS)
SPEED_WPM = (130, 200)
PITCH = (30, 70)  # espeak-ng's 0..99 scale, 50 = the voice's own pitch
# espeak-ng's default amplitude: louder saturates its 16-bit output; the level is set afterwards in floats anyway.
ESPEAK_AMPLITUDE = 100
SILENCE_MS = (50.0, 300.0)
# Speech RMS over the spoken span, on the AES17 scale of the DTMF demo (a full-scale sine is 0 dBFS).
LEVEL_DBFS = (-35.0, -15.0)
INSTALL_HINT = "install it with `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS)"
# Below this many utterances, starting threads is not worth it.
MIN_PARALLEL_JOBS = 200


def digits_to_words(digits: str) -> str:
    """The digit words of a string of ASCII digits, separated by single spaces: "371" -> "three seven one"."""
    bad = sorted({c for c in digits if c not in "0123456789"})
    if bad or not digits:
        raise ValueError(f"digits must be a non-empty string of ASCII digits 0-9, got {digits!r}")
    return " ".join(DIGIT_WORDS[int(c)] for c in digits)


def _espeak(text: str, *, voice: str, speed: int, pitch: int, timeout: float | None = None) -> tuple[np.ndarray, int]:
    """Synthesise `text` with espeak-ng; return float32 samples in [-1, 1] and their sample rate."""
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-a", str(ESPEAK_AMPLITUDE), "--stdout", text]
    # No timeout by default: with one, Popen.wait polls with sleeps, which cost a tenth of the generation time.
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    if proc.returncode != 0 or not proc.stdout:
        stderr = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}: {stderr or 'no output'}")
    # espeak-ng streams the WAV, so its header carries placeholder sizes; libsndfile reads up to the real end.
    data, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    return data, rate


def _espeak_problem() -> str | None:
    """Why espeak-ng cannot be used here, or None when a one-word test synthesis works."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return "espeak-ng was not found on PATH"
    try:
        data, _ = _espeak("one", voice=ESPEAK_VOICES[0], speed=160, pitch=50, timeout=30)
    except (OSError, RuntimeError, subprocess.TimeoutExpired, sf.SoundFileError) as e:
        return f"espeak-ng at {exe} failed a test synthesis ({e})"
    return None if data.size else f"espeak-ng at {exe} synthesised no samples for a test word"


def espeak_available() -> bool:
    """Whether the espeak-ng program is on PATH and synthesises a test word."""
    return _espeak_problem() is None


def _resolve_backend(backend: str) -> str:
    """The backend to use for `backend` ("auto" becomes "espeak" or "dtmf"); raise if "espeak" cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    if backend == "dtmf":
        return backend
    problem = _espeak_problem()
    if problem is None:
        return "espeak"
    if backend == "espeak":
        raise RuntimeError(f"backend 'espeak' needs espeak-ng, but {problem}; {INSTALL_HINT}, or use backend='dtmf'")
    log.warning(
        "%s, so the spoken-digits demo falls back to dialled DTMF digits (one keypad tone per digit, targets still "
        "the digit words); for synthetic speech, %s",
        problem,
        INSTALL_HINT,
    )
    return "dtmf"


def _existing_backend(root: Path, versions: dict[str, str]) -> str | None:
    """The backend of a finished tree at `root` whose marker matches one of `versions` (backend -> version)."""
    try:
        marker = json.loads((root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("name") != "spoken_digits":
        return None
    return next((b for b, v in versions.items() if marker.get("version") == v), None)


def _fast_fft_length(n: int) -> int:
    """The smallest 5-smooth number (2**a * 3**b * 5**c) >= n, a length pocketfft transforms quickly."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35 << max(0, (n - 1) // p35).bit_length()  # p35 * 2**k >= n, k smallest
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _speech_span(x: np.ndarray) -> np.ndarray:
    """`x` without its leading and trailing digital silence (espeak-ng pads ~10 ms before and ~230 ms after)."""
    loud = np.flatnonzero(np.abs(x) > 1e-4)
    return x[loud[0] : loud[-1] + 1] if loud.size else x[:0]


def render_utterance(
    digits: str, rng: np.random.Generator, *, backend: str, sample_rate: int, snr_db: tuple[float, float]
) -> np.ndarray:
    """Synthesise `digits` (e.g. "371") with `backend` ("espeak" or "dtmf") as floats with peak <= 1.

    Args:
        digits: ASCII digits to say (espeak) or dial (dtmf).
        rng: Source of all randomness of this utterance: voice, speed and pitch or the tones' timing, the silences,
            the level, the kind of background noise and the SNR.
        backend: "espeak" or "dtmf".
        sample_rate: Sample rate of the result in Hz.
        snr_db: Range of the speech-to-noise power ratio, the speech power measured over the spoken span.

    Raises:
        ValueError: `digits` is not a non-empty string of ASCII digits, or an unknown backend.
        RuntimeError: espeak-ng fails.
    """
    if backend == "espeak":
        voice = ESPEAK_VOICES[rng.integers(len(ESPEAK_VOICES))]
        speed = int(rng.integers(SPEED_WPM[0], SPEED_WPM[1] + 1))
        pitch = int(rng.integers(PITCH[0], PITCH[1] + 1))
        data, rate = _espeak(digits_to_words(digits), voice=voice, speed=speed, pitch=pitch)
        if rate != sample_rate:
            with torch.no_grad():
                data = resampler(rate, sample_rate)(torch.from_numpy(data)).numpy()
        speech = _speech_span(data.astype(np.float64))
    elif backend == "dtmf":
        digits_to_words(digits)  # the same check of `digits` as for espeak
        speech = dial(digits, rng, sample_rate=sample_rate)
    else:
        raise ValueError(f"unknown backend {backend!r}; choose 'espeak' or 'dtmf'")
    lead = round(rng.uniform(*SILENCE_MS) * sample_rate / 1000)
    trail = round(rng.uniform(*SILENCE_MS) * sample_rate / 1000)
    level = _dbfs_to_rms(rng.uniform(*LEVEL_DBFS))
    clip = np.zeros(lead + len(speech) + trail)
    clip[lead : lead + len(speech)] = speech * (level / max(_rms(speech), 1e-12))
    kind = BACKGROUND_NOISES[rng.integers(len(BACKGROUND_NOISES))]
    snr = rng.uniform(*snr_db)
    # Stationary noise, so a crop of a longer recording is as good; an FFT of a prime length is 5x slower.
    noise = render_background(kind, rng, _fast_fft_length(len(clip)), sample_rate)[: len(clip)]
    # As mix_at_snr, but against the speech's power while it sounds, not diluted by the silences around it.
    clip += noise * (level / 10 ** (snr / 20) / max(_rms(noise), 1e-12))
    peak = np.abs(clip).max()
    return clip / peak if peak > 1 else clip


def _write_utterance(
    job: tuple[int, int],
    out_dir: str,
    *,
    seed: int,
    min_digits: int,
    max_digits: int,
    sample_rate: int,
    backend: str,
    snr_db: tuple[float, float],
) -> tuple[str, str, int, str]:
    """Draw, render and write utterance `job = (split index, index)`; return (id, relative path, frames, text)."""
    split_idx, i = job
    split = SPLITS[split_idx]
    rng = np.random.default_rng([seed, split_idx, i])
    num_digits = int(rng.integers(min_digits, max_digits + 1))
    digits = "".join(str(d) for d in rng.integers(0, 10, size=num_digits))
    pcm = _to_pcm16(render_utterance(digits, rng, backend=backend, sample_rate=sample_rate, snr_db=snr_db))
    utt_id = f"{split}-{i:05d}"
    rel = f"{split}/{utt_id}.flac"
    # One write of finished bytes instead of libsndfile's many small ones (see dtmf._write_wav).
    buffer = io.BytesIO()
    sf.write(buffer, pcm, sample_rate, subtype="PCM_16", format="FLAC")
    (Path(out_dir) / rel).write_bytes(buffer.getvalue())
    return utt_id, rel, len(pcm), digits_to_words(digits)


def _espeak_version() -> str:
    proc = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True)
    return proc.stdout.split("  Data at")[0].strip()  # drop the data path, which names this machine's install


def _readme(settings: dict[str, object], counts: dict[str, int]) -> str:
    """The README.txt written into the dataset root."""
    if settings["backend"] == "espeak":
        how = (
            f"Speech: synthesised with {_espeak_version()}, per utterance in a random voice of these "
            f"{len(ESPEAK_VOICES)}: {', '.join(ESPEAK_VOICES)}; at a random speed of {SPEED_WPM[0]}-{SPEED_WPM[1]} "
            f"words per minute and pitch {PITCH[0]}-{PITCH[1]}; resampled to the sample rate. All splits share the "
            "voice pool, so the test set holds new digit strings, speeds, pitches and noise, not new voices."
        )
    else:
        how = (
            "Speech: none. espeak-ng was not used, so each digit string is dialled as DTMF keypad tones "
            "(mmattn.tasks.audio.dtmf.dial: one 40-120 ms tone per digit, 40-120 ms pauses); the texts are still the "
            "digit words."
        )
    paragraphs = [
        "Generated by mmattn/tasks/speech/digits.py (make_spoken_digits); synthetic, no recordings of people. The same "
        "settings (and espeak-ng version) give the same samples.",
        "Layout: <split>/<split>-<nnnnn>.flac (16-bit FLAC, mono) and a manifest per split, <split>.jsonl, one JSON "
        'object a line: "id", "audio" (path relative to this folder), "duration" (seconds), "text". Utterances: '
        + ", ".join(f"{split} {n}" for split, n in counts.items())
        + ".",
        f"Text: {settings['min_digits']} to {settings['max_digits']} random digits as words separated by single "
        'spaces, e.g. "three seven one". Each split draws its digit strings independently, so short strings also '
        "occur in other splits.",
        how,
        f"Each utterance: {SILENCE_MS[0]:g}-{SILENCE_MS[1]:g} ms of silence before and after, a speech level of "
        f"{LEVEL_DBFS[0]:g} to {LEVEL_DBFS[1]:g} dBFS RMS (AES17) over the spoken span, and background noise (one of "
        f"{', '.join(BACKGROUND_NOISES)}) at an SNR drawn from snr_db, measured against the speech power while it "
        "sounds. Clips whose peak would exceed full scale are scaled down, never clipped.",
    ]
    lines = ["Spoken digit strings (mmattn built-in speech demo)", ""]
    for paragraph in paragraphs:
        lines += [*textwrap.wrap(paragraph, width=100), ""]
    lines += ["Settings:", *(f"- {k}: {v}" for k, v in settings.items()), ""]
    return "\n".join(lines)


def _generate(
    out_dir: Path, *, counts: dict[str, int], num_workers: int, settings: dict[str, object], **render: object
) -> None:
    """Write the whole dataset into `out_dir` (not atomic; `make_spoken_digits` validates and is atomic)."""
    for split in SPLITS:
        (out_dir / split).mkdir()
    jobs = [(split_idx, i) for split_idx, split in enumerate(SPLITS) for i in range(counts[split])]
    work = partial(_write_utterance, out_dir=str(out_dir), **render)
    # The resampler's convolution of one short clip is too small to share: on 2 cores, 2 torch threads made it
    # 3-17x slower than 1. Restored afterwards, since this may run inside a training process.
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if num_workers > 1 and len(jobs) >= MIN_PARALLEL_JOBS:
            with ThreadPoolExecutor(num_workers) as pool:
                results = list(pool.map(work, jobs))
        else:
            results = [work(job) for job in jobs]
    finally:
        torch.set_num_threads(torch_threads)
    sample_rate = int(render["sample_rate"])  # type: ignore[call-overload]
    by_split: dict[str, list[Utterance]] = {split: [] for split in SPLITS}
    for (split_idx, _), (utt_id, rel, frames, text) in zip(jobs, results):
        by_split[SPLITS[split_idx]].append(Utterance(utt_id, out_dir / rel, frames / sample_rate, text))
    for split, utterances in by_split.items():
        write_manifest(out_dir / f"{split}.jsonl", utterances)
    (out_dir / "README.txt").write_text(_readme(settings, counts))


def make_spoken_digits(
    root: Path | str,
    *,
    counts: Mapping[str, int] = DEFAULT_COUNTS,
    min_digits: int = 3,
    max_digits: int = 7,
    seed: int = 0,
    sample_rate: int = 16000,
    backend: str = "auto",
    snr_db: tuple[float, float] = (10.0, 30.0),
    num_workers: int = 2,
) -> Path:
    """Generate the spoken-digits dataset once into `root` (atomic, process-safe) and return `root`.

    Writes `{train,valid,test}/<id>.flac` and the manifests `{train,valid,test}.jsonl` that
    `mmattn.tasks.speech.corpus.read_manifest` reads, plus a README.txt. The marker records the settings and the backend
    actually used, so a tree made by the other backend is reported, not silently reused.

    Args:
        root: Dataset folder, e.g. `data_dir / "spoken_digits"`.
        counts: Utterances per split; keys exactly "train", "valid", "test", each >= 1.
        min_digits: Fewest digits per utterance.
        max_digits: Most digits per utterance.
        seed: Seed of the whole dataset.
        sample_rate: Sample rate of the files in Hz (>= 8000).
        backend: "espeak" (synthetic speech), "dtmf" (dialled keypad tones) or "auto" (espeak when espeak-ng
            works, else dtmf with a warning).
        snr_db: Range of the speech-to-noise power ratio in dB.
        num_workers: Threads that render utterances (each waits on its own espeak-ng process); more than one is
            used only for at least `MIN_PARALLEL_JOBS` utterances. The output does not depend on it.

    Raises:
        ValueError: A count, digit range, rate or SNR range is out of bounds, an unknown backend, or `root` holds
            a dataset made with other settings.
        RuntimeError: `backend="espeak"` but espeak-ng is missing or does not work.
    """
    counts = {str(k): int(v) for k, v in counts.items()}
    if sorted(counts) != sorted(SPLITS) or min(counts.values()) < 1:
        raise ValueError(f"counts must give each of {list(SPLITS)} a count >= 1, got {counts}")
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"need 1 <= min_digits <= max_digits, got min_digits={min_digits}, max_digits={max_digits}")
    if sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be >= {MIN_SAMPLE_RATE} Hz (the noise's telephone band), got {sample_rate}")
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    snr = _check_range("snr_db", snr_db)
    counts = {split: counts[split] for split in SPLITS}
    render: dict[str, object] = dict(
        seed=int(seed), min_digits=int(min_digits), max_digits=int(max_digits), sample_rate=int(sample_rate)
    )

    def version(used: str) -> str:
        settings = dict(render, backend=used, snr_db=snr)
        return f"{GENERATOR_VERSION} counts={','.join(f'{k}:{v}' for k, v in counts.items())} " + " ".join(
            f"{k}={v}" for k, v in settings.items()
        )

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    # A finished tree is reused as it is, without probing espeak-ng: one synthesised elsewhere serves a machine
    # without it, unwarned.
    candidates = ("espeak", "dtmf") if backend == "auto" else (backend,)
    used = _existing_backend(Path(root).expanduser(), {b: version(b) for b in candidates})
    used = used or _resolve_backend(backend)
    render.update(backend=used, snr_db=snr)
    settings = dict(render, generator_version=GENERATOR_VERSION)
    generate = partial(_generate, counts=counts, num_workers=num_workers, settings=settings, **render)
    return ensure_dataset(root, generate, name="spoken_digits", version=version(used))
