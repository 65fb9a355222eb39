"""Atomic file and directory replacement, and the CheckpointIO plugin that writes every checkpoint that way."""

from __future__ import annotations

import ctypes
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

# renameat2(2) flag: swap two paths in one step (Linux >= 3.15).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def partial_path(path: Path) -> Path:
    """The temporary sibling that `path` is written to before it replaces `path` (same directory, same filesystem)."""
    return path.with_name(f".{path.name}.partial")


def _fsync_dir(directory: Path) -> None:
    """Persist a rename in `directory` (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path` for writing; on success fsync it and rename it over `path`.

    A reader, or a process killed at any moment, sees either the old complete file or the new complete one, never a
    truncated one. Lightning's default writes through fsspec's transaction, whose temporary file lives in the system
    temp directory: across filesystems (local /tmp, checkpoints on NFS or Lustre) the final move is a plain copy
    onto the target, and nothing is fsynced.

    Raises:
        OSError: The directory is not writable; the old file, if any, is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def replace_dir(src: str | Path, dst: str | Path) -> None:
    """Move the complete directory `src` to `dst`, replacing what is there (a file or a directory) atomically.

    On Linux the two paths are exchanged in one `renameat2(RENAME_EXCHANGE)` call, so `dst` is at every moment either
    the old complete checkpoint or the new one; elsewhere the old one is moved aside first (a crash in between leaves
    it under `.<name>.old`). The old content is deleted afterwards.
    """
    src, dst = Path(src), Path(dst)
    if not dst.exists():
        os.replace(src, dst)
        _fsync_dir(dst.parent)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None and renameat2(_AT_FDCWD, bytes(src), _AT_FDCWD, bytes(dst), _RENAME_EXCHANGE) == 0:
        old = src  # after the exchange, `src` holds the old content
    else:
        old = dst.with_name(f".{dst.name}.old")
        _remove(old)
        os.replace(dst, old)
        os.replace(src, dst)
    _fsync_dir(dst.parent)
    _remove(old)


def _remove(path: Path) -> None:
    """Delete a file or a directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` each checkpoint to `.<name>.partial` beside its target, fsync, then rename it over the target.

    A run killed while saving (SIGKILL, node failure, full disk) keeps its previous `last.ckpt` intact. Remote paths
    (`s3://...`) go through Lightning's own writer, which uploads in one transaction.

    Example::

        trainer = Trainer(plugins=[AtomicCheckpointIO()])
    """

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} writes local files and takes no `storage_options`")
        with atomic_write(path) as f:
            torch.save(checkpoint, f)
