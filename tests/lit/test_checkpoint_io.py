"""Atomic checkpoints: a save interrupted at any point, even by SIGKILL, leaves the previous checkpoint whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from mmattn.lit import AtomicCheckpointIO, atomic_write, replace_dir
from mmattn.lit.checkpoint_io import partial_path


def test_atomic_write_replaces_the_file_and_leaves_no_partial(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "metrics.json"
    with atomic_write(target, "w") as f:
        f.write("old")
    with atomic_write(target, "w") as f:
        f.write("new")
        assert target.read_text() == "old"  # nothing is visible before the rename
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_atomic_write_that_fails_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"good")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(target) as f:
            f.write(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"good"
    assert not partial_path(target).exists()


def test_checkpoint_io_round_trip_and_remote_paths_use_lightning(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.arange(4)}, "global_step": 3}, tmp_path / "a.ckpt")
    loaded = io.load_checkpoint(tmp_path / "a.ckpt")
    assert loaded["global_step"] == 3 and torch.equal(loaded["state_dict"]["w"], torch.arange(4))
    with pytest.raises(TypeError, match="storage_options"):
        io.save_checkpoint({}, tmp_path / "b.ckpt", storage_options={"x": 1})


WRITER = textwrap.dedent(
    """
    import sys, torch
    from mmattn.lit import AtomicCheckpointIO
    # ~400 MB: long enough to be killed while the bytes are being written.
    big = {"state_dict": {"w": torch.ones(100_000_000)}, "global_step": 2}
    print("writing", flush=True)
    AtomicCheckpointIO().save_checkpoint(big, sys.argv[1])
    print("done", flush=True)
    """
)


@pytest.mark.slow
def test_sigkill_while_saving_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 1}, target)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    partial = partial_path(target)
    deadline = time.monotonic() + 120
    while not (partial.exists() and partial.stat().st_size > 1_000_000):
        assert proc.poll() is None, "the writer finished before it could be killed; make the checkpoint bigger"
        assert time.monotonic() < deadline, "the writer never started writing"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    kept = torch.load(target, weights_only=True)
    assert kept["global_step"] == 1 and torch.equal(kept["state_dict"]["w"], torch.zeros(3))
    # The next save of the same path overwrites the leftover partial file and completes.
    AtomicCheckpointIO().save_checkpoint({"global_step": 5}, target)
    assert torch.load(target, weights_only=True)["global_step"] == 5 and not partial.exists()


def test_replace_dir_swaps_a_sharded_checkpoint_folder(tmp_path: Path) -> None:
    final = tmp_path / "last.ckpt"
    final.mkdir()
    (final / "shard0").write_text("old")
    new = partial_path(final)
    new.mkdir()
    (new / "shard0").write_text("new")
    (new / "meta.pt").write_text("meta")
    replace_dir(new, final)
    assert sorted(p.name for p in final.iterdir()) == ["meta.pt", "shard0"]
    assert (final / "shard0").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    # A full checkpoint file at the target is replaced by a folder too, and a missing target is simply created.
    other = tmp_path / "other.ckpt"
    other.write_text("file")
    folder = tmp_path / "folder"
    folder.mkdir()
    replace_dir(folder, other)
    assert other.is_dir() and not folder.exists()
