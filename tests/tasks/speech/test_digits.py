"""The spoken-digits demo set: layout, manifests, determinism, both backends, the espeak-ng fallback."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmattn.tasks.speech.corpus import read_manifest
from mmattn.tasks.speech.digits import (
    DIGIT_WORDS,
    ESPEAK_VOICES,
    MIN_PARALLEL_JOBS,
    SPLITS,
    digits_to_words,
    espeak_available,
    make_spoken_digits,
)

SR = 16000
SMALL = {"train": 6, "valid": 2, "test": 2}
needs_espeak = pytest.mark.skipif(
    not espeak_available(), reason="espeak-ng is not installed (apt-get install espeak-ng)"
)


def _samples(root: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(root)): sf.read(p, dtype="int16")[0] for p in sorted(root.rglob("*.flac"))}


def _check_tree(root: Path, counts: dict[str, int]) -> None:
    """Files are 16 kHz mono 16-bit FLAC; the manifests read back and agree with the files."""
    assert (root / "README.txt").is_file()
    seen = {}
    for split in SPLITS:
        utts, dropped = read_manifest(root / f"{split}.jsonl")
        assert dropped == 0 and len(utts) == counts[split]
        for line in (root / f"{split}.jsonl").read_text().splitlines():
            assert not Path(json.loads(line)["audio"]).is_absolute()
        for u in utts:
            assert u.path.parent == root / split and u.path.name == f"{u.id}.flac"
            info = sf.info(str(u.path))
            assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", SR, 1)
            assert u.duration == info.frames / SR
            words = u.text.split(" ")
            assert 3 <= len(words) <= 7 and set(words) <= set(DIGIT_WORDS), u.text
            x = sf.read(u.path)[0]
            assert 0 < np.abs(x).max() <= 1
            seen[u.id] = x
    assert sorted(root.rglob("*.flac")) == sorted(
        root / split / f"{u}.flac" for u in seen for split in [u[: u.index("-")]]
    )
    arrays = list(seen.values())
    assert all(len(a) != len(b) or not np.array_equal(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1 :]), (
        "two utterances have identical audio"
    )


@pytest.fixture(scope="module")
def dtmf_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_spoken_digits(tmp_path_factory.mktemp("data") / "spoken_digits", counts=SMALL, backend="dtmf")


@pytest.fixture(scope="module")
def espeak_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return make_spoken_digits(tmp_path_factory.mktemp("data") / "spoken_digits", counts=SMALL, backend="espeak")


def test_digits_to_words() -> None:
    assert digits_to_words("371") == "three seven one"
    assert digits_to_words("0123456789").split() == list(DIGIT_WORDS)
    for bad in ("", "12a", "1 2", "٣"):
        with pytest.raises(ValueError, match="ASCII digits"):
            digits_to_words(bad)


@pytest.mark.parametrize("backend", ["dtmf", pytest.param("espeak", marks=needs_espeak)])
def test_layout_and_manifests(backend: str, request: pytest.FixtureRequest) -> None:
    root = request.getfixturevalue(f"{backend}_root")
    _check_tree(root, SMALL)
    assert f"backend={backend}" in json.loads((root / ".complete").read_text())["version"]
    assert f"backend: {backend}" in (root / "README.txt").read_text()


@pytest.mark.parametrize("backend", ["dtmf", pytest.param("espeak", marks=needs_espeak)])
def test_deterministic_and_per_utterance_seeds(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    root = request.getfixturevalue(f"{backend}_root")
    first = _samples(root)
    # Fewer training utterances: the ones both sets have are identical, since each has its own seed.
    fewer = make_spoken_digits(tmp_path / "a", counts={"train": 3, "valid": 2, "test": 2}, backend=backend)
    again = _samples(fewer)
    assert sorted(again) == [k for k in sorted(first) if not k.startswith("train/") or k < "train/train-00003"]
    for key, x in again.items():
        np.testing.assert_array_equal(x, first[key], err_msg=key)
    assert (fewer / "valid.jsonl").read_text() == (root / "valid.jsonl").read_text()
    other = _samples(make_spoken_digits(tmp_path / "b", counts=SMALL, backend=backend, seed=1))
    assert not any(len(x) == len(first[k]) and np.array_equal(x, first[k]) for k, x in other.items())


def test_threads_give_the_same_bytes(tmp_path: Path) -> None:
    counts = {"train": MIN_PARALLEL_JOBS - 4, "valid": 2, "test": 2}  # just enough to use the thread pool
    one, two = (make_spoken_digits(tmp_path / str(n), counts=counts, backend="dtmf", num_workers=n) for n in (1, 2))
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len(files) == MIN_PARALLEL_JOBS + 5  # + 3 manifests, README.txt, .complete
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)


def test_second_call_reuses_the_tree(dtmf_root: Path) -> None:
    marker = (dtmf_root / ".complete").stat().st_mtime_ns
    assert make_spoken_digits(dtmf_root, counts=SMALL, backend="dtmf") == dtmf_root
    assert (dtmf_root / ".complete").stat().st_mtime_ns == marker
    with pytest.raises(ValueError, match=r"snr_db=\(0.0, 5.0\).*delete it"):
        make_spoken_digits(dtmf_root, counts=SMALL, backend="dtmf", snr_db=(0.0, 5.0))
    # "auto" takes a finished tree of either backend as it is, even where espeak-ng works.
    assert make_spoken_digits(dtmf_root, counts=SMALL, backend="auto") == dtmf_root


def test_without_espeak_auto_falls_back_and_espeak_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    monkeypatch.setenv("PATH", str(empty_path))  # a real PATH without espeak-ng, not a mock
    assert not espeak_available()
    with pytest.raises(RuntimeError, match=r"espeak-ng was not found on PATH.*apt-get install espeak-ng"):
        make_spoken_digits(tmp_path / "espeak", counts=SMALL, backend="espeak")
    assert not (tmp_path / "espeak").exists()
    with caplog.at_level(logging.WARNING, logger="mmattn.tasks.speech.digits"):
        root = make_spoken_digits(tmp_path / "auto", counts={"train": 1, "valid": 1, "test": 1}, backend="auto")
    assert "falls back to dialled DTMF digits" in caplog.text and "apt-get install espeak-ng" in caplog.text
    assert "backend=dtmf" in json.loads((root / ".complete").read_text())["version"]


def test_a_finished_espeak_tree_needs_no_espeak(
    espeak_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # e.g. a cluster node without espeak-ng, the tree made elsewhere
    with caplog.at_level(logging.WARNING, logger="mmattn.tasks.speech.digits"):
        assert make_spoken_digits(espeak_root, counts=SMALL, backend="espeak") == espeak_root
        assert make_spoken_digits(espeak_root, counts=SMALL, backend="auto") == espeak_root
    assert not caplog.text


@needs_espeak
def test_espeak_voices_exist_and_differ() -> None:
    # espeak-ng falls back silently for an unknown voice or an ignored variant ("en-gb+f3" sounds as "en-gb").
    outputs = {}
    for voice in ESPEAK_VOICES:
        proc = subprocess.run(["espeak-ng", "-v", voice, "--stdout", "seven"], capture_output=True, check=True)
        assert not proc.stderr, (voice, proc.stderr)
        outputs[voice] = proc.stdout
    same = [v for v in ESPEAK_VOICES if list(outputs.values()).count(outputs[v]) > 1]
    assert not same, f"voices that sound alike: {same}"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(counts={"train": 1, "valid": 1}), "counts must give each of"),
        (dict(counts={"train": 1, "valid": 0, "test": 1}), "counts must give each of"),
        (dict(min_digits=0), "need 1 <= min_digits <= max_digits"),
        (dict(min_digits=5, max_digits=4), "need 1 <= min_digits <= max_digits"),
        (dict(sample_rate=4000), "sample_rate must be >= 8000"),
        (dict(snr_db=(30.0, 10.0)), r"snr_db \(30.0, 10.0\) is reversed"),
        (dict(backend="festival"), "unknown backend 'festival'"),
        (dict(num_workers=0), "num_workers must be >= 1"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_spoken_digits(tmp_path / "sd", **{"backend": "dtmf", **kwargs})
    assert not (tmp_path / "sd").exists()
