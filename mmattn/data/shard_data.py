"""The contract of a datamodule that can be written to shards and read back, and the writing of all its splits.

`ShardedData` is what `mmattn-shards` needs from a datamodule: its identity from the config and its splits as
`RecordSource`s. There are two ways to read them back (`mmattn.data.streaming`):

- `StreamedData` adds the function that decodes and transforms one stored `Record` (the same decoder and transforms
  its file datasets use); litdata's streaming loader then shuffles chunks and hands out decoded items (classification).
- A datamodule whose own sampler orders the items (token-budget batches by length) reads the records by index
  (`load_record_splits`), in the order they were written: the source order (`shard_shuffle = False`), so an index
  names the same item in the files and in the shards.

`write_shards` writes every split; `check_format` checks a datamodule's `format` and `shards` options.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import uuid
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmattn.data.shards import (
    INDEX_NAME,
    INFO_NAME,
    ITEMS_NAME,
    Record,
    RecordSource,
    ShardError,
    ShardInfo,
    check_chunks,
    is_url,
    items_text,
    join,
    listing_sha256,
    read_info,
)

__all__ = [
    "DATA_FORMATS",
    "ShardedData",
    "SplitWritten",
    "StreamedData",
    "check_format",
    "write_shards",
    "write_split",
]

# Where the items come from: the dataset's own files, or shards written from them by mmattn-shards.
DATA_FORMATS = ("files", "shards")


class ShardedData(ABC):
    """The contract of a datamodule whose splits `mmattn-shards` writes and `format="shards"` reads back.

    `shard_codec` names what its records' bytes are ("image", "audio"); shards of another codec are refused.
    `shard_shuffle` writes the training split in a seeded random order (for litdata's streaming loader, which shuffles
    whole chunks, so each chunk must mix the classes); False keeps the source order, for data read by index.
    """

    shard_codec: ClassVar[str]
    shard_shuffle: ClassVar[bool] = True

    @abstractmethod
    def shard_identity(self) -> dict[str, Any]:
        """The data's identity from the config alone (dataset name, generator version, the options that choose the
        items; flat JSON values), recorded with the shards and compared before training from them."""

    @abstractmethod
    def shard_sources(self) -> tuple[dict[str, list[RecordSource]], list[str]]:
        """Every split's records in order (train, val, optionally test and side splits such as "noise") and the
        class names (empty without classes); reads the source data (after `prepare_sources`)."""

    def prepare_sources(self) -> None:
        """Make the source data readable for `shard_sources` (generate a demo): the datamodule's `prepare_data`
        unless that does more (a datamodule that trains a tokenizer there overrides this)."""
        self.prepare_data()  # type: ignore[attr-defined]


class StreamedData(ShardedData):
    """A `ShardedData` read back through litdata's streaming loader, one decoded record at a time."""

    @abstractmethod
    def decode_record(self, train: bool) -> Callable[[Record], Any]:
        """The picklable function from one stored record to one dataset item, for the training split or the others:
        the same decoder and transforms as the file datasets."""


def check_format(
    data: object, format: str, shards: str | Path | None, contract: type[ShardedData] = ShardedData
) -> str | None:
    """Check a datamodule's `format` and `shards` options; return the shard location (None without one).

    A URL stays as it is; a local folder is made absolute so that DDP ranks and loader workers agree on it.

    Raises:
        ValueError: An unknown format, or format "shards" without `shards` or for data that does not implement
            `contract` (what its reader needs).
    """
    if format not in DATA_FORMATS:
        raise ValueError(f"format must be one of {list(DATA_FORMATS)}, got {format!r}")
    if format != "shards":
        return None if shards is None else _location(shards)
    if not isinstance(data, contract):
        raise ValueError(
            f"{type(data).__name__} cannot read shards (it does not implement mmattn.data.shard_data."
            f"{contract.__name__}); set data.format=files"
        )
    if not shards:
        raise ValueError("format=shards needs shards=<the folder or URL that mmattn-shards wrote>; set data.shards")
    return _location(shards)


def _location(shards: str | Path) -> str:
    return str(shards) if is_url(shards) else os.path.abspath(shards)


# Writing ------------------------------------------------------------------------------------------------------------


def _write_chunks(
    folder: str, sources: Sequence[RecordSource], chunk_bytes: int | str, on_item: Callable[[int], None] | None
) -> int:
    """Write the records of `sources` in order into the empty local `folder` (litdata's chunk writer, in this
    process: item order is kept and a bad file stops here with its name). Returns the bytes stored."""
    from litdata.streaming.writer import BinaryWriter

    writer = BinaryWriter(folder, chunk_bytes=chunk_bytes)
    num_bytes = 0
    for index, source in enumerate(sources):
        data = source.read()
        writer.add_item(index, {"key": source.key, "label": int(source.label), "data": data, "crc": zlib.crc32(data)})
        num_bytes += len(data)
        if on_item is not None:
            on_item(len(data))
    writer.done()
    writer.merge()
    return num_bytes


def write_split(
    out: str,
    sources: Sequence[RecordSource],
    info: ShardInfo,
    *,
    chunk_bytes: int | str = "64MB",
    on_item: Callable[[int], None] | None = None,
) -> ShardInfo:
    """Write one split's records, in order, into `<out>/<info.split>/`, replacing what was there.

    A local split is written into a temporary sibling folder and renamed into place, so a reader never sees a half
    written split; to a URL, the files are uploaded after writing, `mmattn.json` last.

    Args:
        out: The shard folder (local path or object-store URL).
        sources: The records to write, in order.
        info: The split's fingerprint (`num_items`, `listing_sha256` and `num_bytes` are filled in here).
        chunk_bytes: Target chunk size, e.g. "64MB" (litdata's default).
        on_item: Called with each record's size after it is written (progress).

    Returns:
        The fingerprint as written.

    Raises:
        ValueError: An empty split.
    """
    if not sources:
        raise ValueError(f"the {info.split} split has no items to write")
    info.num_items = len(sources)
    info.listing_sha256 = listing_sha256(sources)
    items = items_text(sources)
    if items is not None:
        info.extra["items"] = {"bytes": len(items), "sha256": hashlib.sha256(items).hexdigest()}
    if is_url(out):
        with tempfile.TemporaryDirectory(prefix="mmattn-shards-") as tmp:
            info.num_bytes = _write_chunks(tmp, sources, chunk_bytes, on_item)
            _write_items(tmp, items)
            Path(tmp, INFO_NAME).write_text(info.to_json())
            _upload(tmp, join(out, info.split))
        return info
    final = Path(out, info.split)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir()
    try:
        info.num_bytes = _write_chunks(str(tmp_dir), sources, chunk_bytes, on_item)
        _write_items(str(tmp_dir), items)
        (tmp_dir / INFO_NAME).write_text(info.to_json())
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp_dir, final)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return info


def _write_items(folder: str, items: bytes | None) -> None:
    if items is not None:
        Path(folder, ITEMS_NAME).write_bytes(items)


def _upload(folder: str, url: str) -> None:
    """Upload the files of a written local split to `url`: chunks, then litdata's index, then `mmattn.json`."""
    from litdata.streaming.fs_provider import _get_fs_provider

    provider = _get_fs_provider(url)
    names = sorted(os.listdir(folder), key=lambda name: (name == INFO_NAME, name == INDEX_NAME, name))
    for name in names:
        provider.upload_file(os.path.join(folder, name), join(url, name))


@dataclass(frozen=True)
class SplitWritten:
    """What `write_shards` did for one split: written (or found up to date), how much, how long, where."""

    split: str
    num_items: int
    num_bytes: int
    seconds: float
    location: str
    up_to_date: bool = False


# What makes two written splits the same data (the byte count and the format are consequences).
_SAME_DATA_KEYS = ("codec", "identity", "classes", "num_items", "listing_sha256", "order", "splits")


def _same_data(found: ShardInfo, new: ShardInfo) -> bool:
    return all(getattr(found, k) == getattr(new, k) for k in _SAME_DATA_KEYS)


def write_shards(
    data: ShardedData,
    out: str,
    *,
    seed: int = 0,
    chunk_bytes: int | str = "64MB",
    overwrite: bool = False,
    on_split: Callable[[str, int], Callable[[int], None] | None] | None = None,
) -> list[SplitWritten]:
    """Write every split of `data` into the shard folder `out` (`<out>/<split>/`), with its fingerprint.

    The training split is written in a seeded random order (unless `data.shard_shuffle` is off), so that each chunk
    (which litdata shuffles as a unit between ranks and workers) mixes the classes; the other splits keep the data's
    order. A split already written from the same data (identity, classes, listing) is left as it is, or written
    again if a chunk (or its metadata file) is missing or cut.

    Args:
        data: A datamodule implementing `ShardedData` (its data prepared: `prepare_data` has run).
        out: The shard folder or object-store URL.
        seed: Seed of the training split's order.
        chunk_bytes: Target chunk size, e.g. "64MB".
        overwrite: Replace splits written from other data (without it, such a split stops the writing).
        on_split: Called with a split's name and item count before it is written (not for one up to date); may
            return a callable that gets each record's size (progress).

    Returns:
        One `SplitWritten` per split, in the order written.

    Raises:
        ShardError: A split at `out` holds other data and `overwrite` is off.
    """
    sources, classes = data.shard_sources()
    written = []
    for split, items in sources.items():
        order = "source"
        if split == "train" and data.shard_shuffle:
            items = [items[i] for i in np.random.default_rng(seed).permutation(len(items))]
            order = f"shuffled:{seed}"
        info = ShardInfo(
            split=split,
            splits=list(sources),
            codec=data.shard_codec,
            identity=data.shard_identity(),
            classes=list(classes),
            num_items=len(items),
            listing_sha256=listing_sha256(items),
            order=order,
        )
        info = ShardInfo.from_json(info.to_json(), split)  # as it reads back (tuples become lists)
        split_dir = join(out, split)
        found = read_info(split_dir)
        if found is not None and _same_data(found, info) and _whole(split_dir, found):
            written.append(SplitWritten(split, found.num_items, found.num_bytes, 0.0, split_dir, up_to_date=True))
            continue
        # The same data, damaged (a chunk lost or cut short), is written again without asking.
        if found is not None and not overwrite and not _same_data(found, info):
            raise ShardError(
                f"{split_dir} already holds shards of other data ({_what_differs(found, info)}); pass overwrite=true "
                "to replace them, or write to another folder (data.shards=...)"
            )
        progress = on_split(split, len(items)) if on_split is not None else None
        start = time.perf_counter()
        info = write_split(out, items, info, chunk_bytes=chunk_bytes, on_item=progress)
        seconds = time.perf_counter() - start
        written.append(SplitWritten(split, info.num_items, info.num_bytes, seconds, split_dir))
    return written


def _whole(split_dir: str, info: ShardInfo) -> bool:
    try:
        check_chunks(split_dir, info)
    except ShardError:
        return False
    return True


def _what_differs(found: ShardInfo, new: ShardInfo) -> str:
    for key in _SAME_DATA_KEYS:
        if getattr(found, key) != getattr(new, key):
            if key == "identity":
                keys = sorted(set(found.identity) | set(new.identity))
                name = next(k for k in keys if found.identity.get(k) != new.identity.get(k))
                return f"{name} {found.identity.get(name)!r} there, {new.identity.get(name)!r} now"
            if key == "listing_sha256":
                return "other files"
            return f"{key} {getattr(found, key)!r} there, {getattr(new, key)!r} now"
    return "other contents"
