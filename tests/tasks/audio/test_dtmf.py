"""The DTMF audio demo set: layout, determinism, the tones' spectra, levels, and argument checks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmattn.tasks.audio.data import speech_commands_splits
from mmattn.tasks.audio.dtmf import (
    BACKGROUND_NOISES,
    DTMF_CLASSES,
    DTMF_FREQS,
    _dbfs_to_rms,
    dial,
    make_dtmf,
    render_background,
    render_clip,
)

SMALL = dict(train_per_class=2, val_per_class=1, test_per_class=1)
STEM = re.compile(r"^[0-9a-f]{8}_nohash_\d+\.wav$")
SR = 16000
CLIP_KW = dict(
    sample_rate=SR,
    clip_samples=SR,
    snr_db=(0.0, 20.0),
    duration_ms=(40.0, 400.0),
    freq_tolerance=0.015,
    twist_db=(-4.0, 4.0),
    level_dbfs=(-30.0, -6.0),
)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.fft.rfftfreq(len(x), 1 / SR), np.abs(np.fft.rfft(x * np.hanning(len(x))))


def _two_peaks(x: np.ndarray) -> tuple[float, float]:
    """Frequencies of the strongest spectral peak and of the strongest one more than 100 Hz away from it."""
    freqs, mag = _spectrum(x)
    first = freqs[mag.argmax()]
    second = freqs[np.where(np.abs(freqs - first) > 100, mag, 0).argmax()]
    return tuple(sorted((float(first), float(second))))  # type: ignore[return-value]


def _tone_prominence(x: np.ndarray) -> float:
    """Largest ratio, over the 8 DTMF frequencies, of the peak within +-3% to the median within +-10%."""
    freqs, mag = _spectrum(x)
    ratios = []
    for f in sorted({f for pair in DTMF_FREQS.values() for f in pair}):
        near = mag[np.abs(freqs - f) <= 0.03 * f].max()
        ratios.append(near / np.median(mag[np.abs(freqs - f) <= 0.1 * f]))
    return max(ratios)


@pytest.fixture(scope="module")
def backgrounds() -> list[np.ndarray]:
    return [render_background(n, np.random.default_rng([0, j]), 4 * SR, SR) for j, n in enumerate(BACKGROUND_NOISES)]


@pytest.fixture(scope="module")
def dtmf_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dtmf(tmp_path_factory.mktemp("data"), **SMALL)


def test_classes_and_keypad() -> None:
    assert len(DTMF_CLASSES) == 17 and list(DTMF_CLASSES) == sorted(DTMF_CLASSES)
    assert set(DTMF_CLASSES) == {*"0123456789", "a", "b", "c", "d", "star", "hash", "noise"}
    assert DTMF_FREQS["1"] == (697, 1209) and DTMF_FREQS["a"] == (697, 1633)
    assert DTMF_FREQS["5"] == (770, 1336) and DTMF_FREQS["c"] == (852, 1633)
    assert (DTMF_FREQS["star"], DTMF_FREQS["0"], DTMF_FREQS["hash"], DTMF_FREQS["d"]) == (
        (941, 1209),
        (941, 1336),
        (941, 1477),
        (941, 1633),
    )
    assert len(set(DTMF_FREQS.values())) == 16


def test_speech_commands_layout(dtmf_root: Path) -> None:
    assert dtmf_root.name == "dtmf" and (dtmf_root / "README.md").is_file()
    folders = sorted(p.name for p in dtmf_root.iterdir() if p.is_dir())
    assert folders == sorted([*DTMF_CLASSES, "_background_noise_"])
    listed = {}
    for name in ("validation_list.txt", "testing_list.txt"):
        lines = (dtmf_root / name).read_text().splitlines()
        assert lines == sorted(lines) and len(lines) == len(DTMF_CLASSES)
        for rel in lines:
            word, file = rel.split("/")
            assert word in DTMF_CLASSES and STEM.match(file) and (dtmf_root / rel).is_file()
        listed[name] = set(lines)
    assert not listed["validation_list.txt"] & listed["testing_list.txt"]
    for name in DTMF_CLASSES:
        files = sorted((dtmf_root / name).iterdir())
        assert len(files) == 4 and all(STEM.match(f.name) for f in files)
        info = sf.info(str(files[0]))
        assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == ("WAV", "PCM_16", SR, 1, SR)
    noise = sorted((dtmf_root / "_background_noise_").iterdir())
    assert [p.stem for p in noise] == sorted(BACKGROUND_NOISES)
    assert all(sf.info(str(p)).frames == 10 * SR and sf.info(str(p)).subtype == "PCM_16" for p in noise)

    # The Speech Commands split finder reads it: training = every file in neither list.
    splits, classes, background = speech_commands_splits(dtmf_root)
    assert classes == list(DTMF_CLASSES) and background == noise
    assert {k: len(v) for k, v in splits.items()} == {"train": 34, "val": 17, "test": 17}


def test_same_seed_same_bytes_other_seed_differs(dtmf_root: Path, tmp_path: Path) -> None:
    assert _tree_bytes(make_dtmf(tmp_path / "a", **SMALL)) == _tree_bytes(dtmf_root)
    other = _tree_bytes(make_dtmf(tmp_path / "b", **SMALL, seed=1))
    same = [k for k, v in _tree_bytes(dtmf_root).items() if k.endswith(".wav") and other.get(k) == v]
    assert not same


def test_each_clip_has_its_own_seed(dtmf_root: Path) -> None:
    # Clip i of class c in split s is reproducible alone from (seed, 0, s, c, i) and the background recordings.
    backgrounds = [sf.read(p, dtype="int16")[0] / 32767 for p in sorted((dtmf_root / "_background_noise_").iterdir())]
    rel = (dtmf_root / "validation_list.txt").read_text().splitlines()[DTMF_CLASSES.index("hash")]
    assert rel.startswith("hash/")
    expected = render_clip(
        "hash", np.random.default_rng([0, 0, 1, DTMF_CLASSES.index("hash"), 0]), backgrounds, **CLIP_KW
    )
    np.testing.assert_array_equal(sf.read(dtmf_root / rel, dtype="int16")[0], np.rint(expected * 32767))


def test_settings_are_versioned(dtmf_root: Path) -> None:
    assert make_dtmf(dtmf_root.parent, **SMALL) == dtmf_root  # same settings: reused
    with pytest.raises(ValueError, match=r"snr_db=\(10.0, 20.0\).*delete it"):
        make_dtmf(dtmf_root.parent, **SMALL, snr_db=(10, 20))


def test_tone_clips_peak_at_their_key_frequencies(tmp_path: Path) -> None:
    root = make_dtmf(tmp_path, train_per_class=3, val_per_class=1, test_per_class=0, snr_db=(40.0, 40.0))
    assert (root / "testing_list.txt").read_text() == ""
    for key, (low, high) in DTMF_FREQS.items():
        for path in sorted((root / key).iterdir()):
            x, rate = sf.read(path)
            assert rate == SR and np.abs(x).max() > 0
            found = _two_peaks(x)
            # The generator deviates each frequency by up to 1.5%; 3 Hz more for the FFT's bin grid and leakage.
            for f, nominal in zip(found, (low, high)):
                assert abs(f - nominal) <= 0.015 * nominal + 3, f"{path}: peaks {found}, expected {(low, high)}"


def test_noise_clips_have_no_tone(dtmf_root: Path, backgrounds: list[np.ndarray]) -> None:
    for path in sorted((dtmf_root / "noise").iterdir()):
        assert _tone_prominence(sf.read(path)[0]) < 6, path
    for i in range(30):
        clip = render_clip("noise", np.random.default_rng([5, i]), backgrounds, **CLIP_KW)
        assert _tone_prominence(clip) < 6
    # The same measure does see a 400 ms tone at the lowest SNR. (Short tones at 0 dB hold too little of the clip's
    # energy for a whole-clip spectrum to show them reliably; a spectrogram, which the models see, still does.)
    faint = dict(CLIP_KW, snr_db=(0.0, 0.0), duration_ms=(400.0, 400.0), level_dbfs=(-30.0, -30.0))
    for key in DTMF_FREQS:
        assert _tone_prominence(render_clip(key, np.random.default_rng([5, 0]), backgrounds, **faint)) > 10


def test_level_snr_and_no_clipping(backgrounds: list[np.ndarray]) -> None:
    # Near-silent noise: the clip's energy is the tone's, whose level is -20 dBFS (AES17) over 400 ms.
    kw = dict(CLIP_KW, snr_db=(80.0, 80.0), duration_ms=(400.0, 400.0), level_dbfs=(-20.0, -20.0), twist_db=(3, 3))
    clip = render_clip("9", np.random.default_rng(1), backgrounds, **kw)
    sounding = np.abs(clip) > 1e-3
    assert 0.38 * SR < sounding.sum() <= 0.4 * SR
    energy = np.sum(clip**2) / (0.4 * SR)
    assert abs(10 * np.log10(energy / _dbfs_to_rms(-20.0) ** 2)) < 0.2, "5 ms fades cost ~0.1 dB"
    # SNR 0 dB: noise power over the whole clip equals the tone's power while it sounds.
    kw = dict(kw, snr_db=(0.0, 0.0), duration_ms=(1000.0, 1000.0))
    clip = render_clip("9", np.random.default_rng(1), backgrounds, **kw)
    assert abs(10 * np.log10(np.mean(clip**2) / (2 * _dbfs_to_rms(-20.0) ** 2))) < 0.5
    # Too loud to fit: scaled down to full scale, not clipped (a clipped clip would sit at +-1 for many samples).
    loud = render_clip("9", np.random.default_rng(1), backgrounds, **dict(kw, level_dbfs=(0.0, 0.0)))
    assert np.abs(loud).max() == pytest.approx(1.0) and np.sum(np.abs(loud) > 0.999) <= 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(train_per_class=0), "train_per_class must be >= 1, got 0"),
        (dict(val_per_class=-1), "val_per_class must be >= 1, got -1"),
        (dict(test_per_class=-2), "test_per_class must be >= 0, got -2"),
        (dict(sample_rate=4000), "sample_rate 4000 Hz is too low"),
        (dict(clip_seconds=0), "clip_seconds must be > 0"),
        (dict(duration_ms=(40.0, 1500.0)), r"duration_ms \(40.0, 1500.0\) must lie in \(0, 1000\]"),
        (dict(duration_ms=(0.0, 100.0)), r"duration_ms \(0.0, 100.0\) must lie in \(0, 1000\]"),
        (dict(snr_db=(20.0, 0.0)), r"snr_db \(20.0, 0.0\) is reversed"),
        (dict(twist_db=(1.0,)), r"twist_db must be a \(low, high\) pair"),
        (dict(level_dbfs=(-10.0, 3.0)), r"level_dbfs \(-10.0, 3.0\) must lie within \[-inf, 0\]"),
        (dict(freq_tolerance=0.06), r"freq_tolerance 0.06 must lie in \[0, 0.049"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_dtmf(tmp_path, **kwargs)
    assert not (tmp_path / "dtmf").exists()


def test_dial_sounds_each_key_in_order() -> None:
    keys = ["1", "5", "9", "star", "0", "d"]
    x = dial(keys, np.random.default_rng(3), sample_rate=SR, tone_ms=(100.0, 120.0), pause_ms=(40.0, 60.0))
    sounding = np.abs(x) > 1e-6
    assert sounding[0] and sounding[-1], "starts with the first tone and ends with the last"
    # Tones are the runs of sound; the pauses between them are exact zeros.
    edges = np.flatnonzero(np.diff(sounding.astype(int)))
    runs = list(zip([0, *edges[1::2] + 1], [*edges[::2] + 1, len(x)]))
    assert len(runs) == len(keys)
    for key, (start, stop) in zip(keys, runs):
        assert 0.1 * SR - 2 <= stop - start <= 0.12 * SR
        found = _two_peaks(x[start:stop])
        for f, nominal in zip(found, DTMF_FREQS[key]):
            assert abs(f - nominal) <= 0.015 * nominal + 10, f"key {key}: peaks {found}, expected {DTMF_FREQS[key]}"
    pauses = [b[0] - a[1] for a, b in zip(runs, runs[1:])]
    assert all(0.04 * SR <= p <= 0.06 * SR + 2 for p in pauses)


def test_dial_is_seeded_and_checks_keys() -> None:
    a = dial("0123", np.random.default_rng(1), sample_rate=SR)
    np.testing.assert_array_equal(a, dial("0123", np.random.default_rng(1), sample_rate=SR))
    assert not np.array_equal(a[:1000], dial("0123", np.random.default_rng(2), sample_rate=SR)[:1000])
    assert dial("", np.random.default_rng(1), sample_rate=SR).shape == (0,)
    with pytest.raises(ValueError, match=r"unknown DTMF keys \['#', 'x'\]"):
        dial("1#x", np.random.default_rng(1), sample_rate=SR)
    with pytest.raises(ValueError, match=r"tone_ms \(0.0, 10.0\) must be > 0 ms"):
        dial("1", np.random.default_rng(1), sample_rate=SR, tone_ms=(0.0, 10.0))
