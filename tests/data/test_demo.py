"""ensure_dataset: write-once, atomic, process-safe creation of demo data."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from mmattn.data import ensure_dataset


def _write_payload(log: Path, delay: float = 0.0):
    """A generator that records each call in `log` (outside the dataset) and writes one file."""

    def generate(tmp: Path) -> None:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(delay)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "payload.txt").write_text("hello")

    return generate


def test_generates_once_and_marks_complete(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    root = tmp_path / "data" / "toy"
    out = ensure_dataset(root, _write_payload(log), name="toy", version="1")
    assert out == root.absolute()
    assert (root / "sub" / "payload.txt").read_text() == "hello"
    assert json.loads((root / ".complete").read_text()) == {"name": "toy", "version": "1"}
    ensure_dataset(str(root), _write_payload(log), name="toy", version="1")
    assert log.read_text().count("\n") == 1
    # No temporary folders are left next to the dataset.
    assert not [p for p in root.parent.iterdir() if ".tmp-" in p.name]


def test_version_mismatch_asks_to_delete(tmp_path: Path) -> None:
    root = tmp_path / "toy"
    ensure_dataset(root, _write_payload(tmp_path / "log"), name="toy", version="1")
    with pytest.raises(ValueError, match=r"version '1'.*version '2'.*delete it"):
        ensure_dataset(root, _write_payload(tmp_path / "log"), name="toy", version="2")
    with pytest.raises(ValueError, match="'other'"):
        ensure_dataset(root, _write_payload(tmp_path / "log"), name="other", version="1")


def test_foreign_folder_without_marker_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "toy"
    root.mkdir()
    with pytest.raises(ValueError, match=r"no \.complete marker.*delete it"):
        ensure_dataset(root, _write_payload(tmp_path / "log"), name="toy", version="1")


def test_failed_generation_leaves_nothing_and_can_be_retried(tmp_path: Path) -> None:
    root = tmp_path / "toy"

    def broken(tmp: Path) -> None:
        (tmp / "half.txt").write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ensure_dataset(root, broken, name="toy", version="1")
    assert not root.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    ensure_dataset(root, _write_payload(tmp_path / "log"), name="toy", version="1")
    assert (root / ".complete").is_file()


def test_stale_temporary_folder_is_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".toy.tmp-99999-deadbeef"
    stale.mkdir()
    (stale / "junk").write_text("x")
    ensure_dataset(tmp_path / "toy", _write_payload(tmp_path / "log"), name="toy", version="1")
    assert not stale.exists()


def _worker(root: str, log: str, results: str) -> None:
    out = ensure_dataset(Path(root), _write_payload(Path(log), delay=0.5), name="toy", version="1")
    # Reaching this line means the dataset is complete: record what this process saw.
    with open(results, "a") as f:
        f.write((out / "sub" / "payload.txt").read_text() + "\n")


@pytest.mark.slow
def test_concurrent_callers_generate_once(tmp_path: Path) -> None:
    root, log, results = tmp_path / "toy", tmp_path / "calls.log", tmp_path / "results.txt"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(str(root), str(log), str(results))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert log.read_text().count("\n") == 1, "exactly one process may generate"
    assert results.read_text().split() == ["hello"] * 3
