"""Token streams on disk: written once (rank 0), memory-mapped by every process.

A split's tokens live in `<name>.bin` (little-endian uint16 when every id fits, else uint32: 2 or 4 bytes a token
instead of the 8 of int64) beside `<name>.json`, which records the dtype, the token count and a fingerprint of what
made the tokens (the tokenizer, the source files, the options). Both are written to temporary files and renamed into
place, the JSON last, so a killed writer leaves no file that passes for complete; a reader whose fingerprint differs
(other text, another tokenizer) gets None and writes them again. Processes map the file read-only: the operating
system's page cache holds the stream once per machine, not once per process. `MappedTokens` names such a map so
that it can cross a process boundary (a pickle) as a file name instead of as a copy of the tokens.

`TokenFileData` is the contract of a datamodule whose prepared form is such a folder (with its tokenizer):
`mmattn-shards` prepares it once, before a run of many processes or nodes reads it.
"""

from __future__ import annotations

import json
import mmap
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mmattn.data.shard_data import SplitWritten

__all__ = ["MappedTokens", "TokenFileData", "read_tokens", "stale_reason", "token_dtype", "write_tokens"]


class TokenFileData(ABC):
    """A datamodule whose prepared form is a folder of token files beside its tokenizer.

    `mmattn-shards` calls `write_token_dir(out)`; a training run given `data.token_dir=<out>` and
    `data.tokenizer_dir=<out>/tokenizer` (and the same data options) then loads that tokenizer and maps those files
    instead of tokenizing again.
    """

    @abstractmethod
    def write_token_dir(self, out: Path) -> list[SplitWritten]:
        """Prepare the source (generate a demo), train the tokenizer into `out/tokenizer` (or load the one there),
        and write each split's token file into `out`, keeping the ones made from the same input."""


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding ids below `vocab_size` (uint16 up to 65,536 ids, else uint32)."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


@dataclass(frozen=True)
class MappedTokens:
    """Where a read-only token map comes from: file, dtype, byte offset and length; `open()` maps it again.

    `stamp` (the file's inode, size and modification time) tells the same file from one written again since: a
    new file is renamed into place, so a reader that maps by name could otherwise read other tokens.
    """

    path: str
    dtype: str
    offset: int
    count: int
    stamp: tuple[int, int, int]

    @classmethod
    def of(cls, stream: np.ndarray) -> MappedTokens | None:
        """The source of `stream` if it is a whole read-only file map (not a slice of one), else None."""
        # A slice of a map keeps the map's filename and offset but not its start, so only the map itself qualifies.
        if not (isinstance(stream, np.memmap) and isinstance(stream.base, mmap.mmap) and stream.filename):
            return None
        return cls(str(stream.filename), stream.dtype.str, int(stream.offset), len(stream), _stamp(stream.filename))

    def open(self) -> np.memmap:
        """The tokens mapped read-only.

        Raises:
            ValueError: The file was written again (or removed) since it was first mapped.
        """
        try:
            same = _stamp(self.path) == tuple(self.stamp)
        except FileNotFoundError:
            same = False
        if not same:
            raise ValueError(
                f"{self.path} was written again or removed while a process still read it; two runs share one "
                "data.token_dir with different text or tokenizers: give each its own"
            )
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=(self.count,))


def _stamp(path: str | Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def _meta_path(path: Path) -> Path:
    return path.with_suffix(".json")


def write_tokens(
    path: str | Path, chunks: Iterable[np.ndarray], *, vocab_size: int, fingerprint: Mapping[str, Any]
) -> int:
    """Write the concatenated `chunks` (integer id arrays) to `path` and their description beside it; the count.

    Raises:
        ValueError: An id outside [0, vocab_size) (it would wrap around in the smaller dtype).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(vocab_size)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    count = 0
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                chunk = np.asarray(chunk)
                if chunk.size and (chunk.min() < 0 or chunk.max() >= vocab_size):
                    raise ValueError(
                        f"{path}: id {int(chunk.max() if chunk.max() >= vocab_size else chunk.min())} lies outside "
                        f"the vocabulary [0, {vocab_size})"
                    )
                f.write(chunk.astype(dtype, copy=False).tobytes())
                count += int(chunk.size)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    meta = {"dtype": dtype.str, "tokens": count, "fingerprint": dict(fingerprint)}
    meta_tmp = _meta_path(path).with_name(f".{path.stem}.json.{os.getpid()}.tmp")
    meta_tmp.write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(meta_tmp, _meta_path(path))
    return count


def stale_reason(path: str | Path, fingerprint: Mapping[str, Any]) -> str | None:
    """Why the token file at `path` cannot serve `fingerprint` (what it was made from, against now), None if it can
    or if there is no complete file to compare."""
    meta_path = _meta_path(Path(path))
    if not (Path(path).is_file() and meta_path.is_file()):
        return None
    try:
        made = json.loads(meta_path.read_text(encoding="utf-8")).get("fingerprint", {})
    except json.JSONDecodeError:
        return f"{meta_path.name} is not valid JSON"
    now = json.loads(json.dumps(dict(fingerprint)))
    differs = []
    for key in sorted(set(made) | set(now)):
        old, new = made.get(key), now.get(key)
        if old != new:
            # Hashes say only that something changed; plain values (vocab_size, options) are worth showing.
            plain = not (isinstance(old, str) and len(old) == 64)
            differs.append(f"{key} {old} in the file, {new} now" if plain else f"other {key}")
    return "; ".join(differs) or None


def read_tokens(path: str | Path, *, fingerprint: Mapping[str, Any]) -> np.memmap | None:
    """The stream at `path` mapped read-only, or None when it is missing, incomplete or made from something else.

    Raises:
        ValueError: The description and the file disagree on its size (the file was changed after it was written).
    """
    path = Path(path)
    meta_path = _meta_path(path)
    if not (path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    if meta.get("fingerprint") != json.loads(json.dumps(dict(fingerprint))):
        return None
    dtype = np.dtype(meta["dtype"])
    if path.stat().st_size != meta["tokens"] * dtype.itemsize:
        raise ValueError(
            f"{path} holds {path.stat().st_size} bytes but {meta_path.name} describes {meta['tokens']} tokens of "
            f"{dtype.itemsize} bytes; delete both files to tokenize again"
        )
    if meta["tokens"] == 0:
        return np.zeros(0, dtype=dtype)  # type: ignore[return-value]  # numpy cannot map an empty file
    return np.memmap(path, dtype=dtype, mode="r", shape=(meta["tokens"],))
