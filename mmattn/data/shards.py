"""Shard folders: a dataset's splits written once as litdata chunks of encoded records, with a fingerprint.

Layout of a shard folder (local, or an object-store URL such as `s3://bucket/prefix`)::

    <shards>/<split>/index.json         litdata's index of the chunks
    <shards>/<split>/chunk-0-<n>.bin    the records, in order
    <shards>/<split>/mmattn.json        `ShardInfo`: what the split holds, checked before training

    <shards>/<split>/items.jsonl        per-item metadata (only when the records have some), one JSON object a line

A record is `{"key", "label", "data", "crc"}`: `data` are the item's encoded bytes as they are on disk (PNG, WAV, ...,
so shards stay the size of the data and are decoded by the same reader as the files), `crc` their CRC-32 (a garbled
chunk is caught at the record it spoils), `key` the item's stable name (its path in the source folder). Metadata that
must be known without reading the records (an utterance's duration and transcript, which batching and the tokenizer
need before any audio is read) goes into `items.jsonl`, in record order, checked by its SHA-256. Everything here is
modality-free: a task lists its items as `RecordSource`s and decodes `Record`s (see `mmattn.data.streaming`).

Object stores go through litdata's own clients (boto3 for s3://, google-cloud-storage for gs://, azure-storage-blob
for azure://), which read their usual credentials (the README lists them).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "INFO_NAME",
    "ITEMS_NAME",
    "SHARD_FORMAT",
    "SHARD_VERSION",
    "FileSource",
    "Record",
    "RecordSource",
    "ShardError",
    "ShardInfo",
    "check_chunks",
    "check_info",
    "is_url",
    "items_text",
    "join",
    "listing_sha256",
    "read_info",
    "read_items",
    "record_from_raw",
]

SHARD_FORMAT = "mmattn-shards"
SHARD_VERSION = 1
INFO_NAME = "mmattn.json"
INDEX_NAME = "index.json"  # litdata's
ITEMS_NAME = "items.jsonl"
RECORD_KEYS = frozenset({"key", "label", "data", "crc"})


class ShardError(ValueError):
    """Shards that cannot be used as they are: missing, incomplete, damaged or written from other data.

    The message names the folder or file, what differs, and what to do. One positional argument, so that a loader
    worker's exception is re-raised in the main process as this type.
    """


def is_url(location: str | Path) -> bool:
    """Whether `location` is an object-store URL (`s3://...`) rather than a local path."""
    return "://" in str(location)


def join(location: str | Path, *parts: str) -> str:
    """`location/part/...` for a local folder or a URL."""
    if is_url(location):
        return "/".join([str(location).rstrip("/"), *parts])
    return str(Path(location, *parts))


@dataclass(frozen=True)
class Record:
    """One stored item as a decoder gets it: its key, label and encoded bytes; `where` is its split folder."""

    key: str
    label: int
    data: bytes
    where: str = ""

    @property
    def name(self) -> str:
        """How messages name the item: its key and the shard folder that holds it."""
        return f"{self.key} in {self.where}" if self.where else self.key


class RecordSource(ABC):
    """One item to write: a stable `key`, a `label`, `read()` for its encoded bytes (picklable, read lazily), and
    optionally `meta`, flat JSON values stored in the split's `items.jsonl` (readable without the records)."""

    key: str
    label: int
    meta: dict[str, Any] | None = None

    @abstractmethod
    def read(self) -> bytes:
        """The item's encoded bytes, as a decoder of its task reads them back."""


@dataclass(frozen=True)
class FileSource(RecordSource):
    """A file stored as it is on disk (its bytes, unchanged)."""

    key: str
    label: int
    path: str
    meta: dict[str, Any] | None = field(default=None, hash=False)

    def read(self) -> bytes:
        """The file's bytes."""
        try:
            return Path(self.path).read_bytes()
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{self.path} does not exist (it was listed a moment ago); check the folder") from e


def listing_sha256(sources: Iterable[RecordSource]) -> str:
    """SHA-256 of the keys, labels and metadata in order: the same source listing always gives the same hash."""
    digest = hashlib.sha256()
    for source in sources:
        # Without metadata, the line of the first shard format (shards written before metadata existed stay current).
        meta = "" if source.meta is None else "\t" + json.dumps(source.meta, sort_keys=True, ensure_ascii=False)
        digest.update(f"{source.key}\t{source.label}{meta}\n".encode())
    return digest.hexdigest()


def items_text(sources: Sequence[RecordSource]) -> bytes | None:
    """The `items.jsonl` of `sources` (`{"key": ..., **meta}` a line, in order, UTF-8), None when none has metadata."""
    if all(source.meta is None for source in sources):
        return None
    lines = (json.dumps({"key": source.key, **(source.meta or {})}, ensure_ascii=False) + "\n" for source in sources)
    return "".join(lines).encode()


def _canonical(value: Any) -> Any:
    """`value` as JSON reads it back (tuples become lists), so a config and a stored fingerprint compare equal."""
    return json.loads(json.dumps(value))


@dataclass
class ShardInfo:
    """The fingerprint of one written split (`mmattn.json`).

    Args:
        split: This split's name ("train", "val", "test", or a side split such as "noise").
        splits: Every split written with it (a missing one means an incomplete copy).
        codec: What the records' bytes are ("image", "audio"): the task that can decode them.
        identity: The data's identity from its config: dataset name, generator version, the options that choose the
            items (flat JSON values); training compares it with the identity of its own config.
        classes: Class names, in label order.
        num_items: Records in the split.
        listing_sha256: `listing_sha256` of the written records, in order.
        num_bytes: Encoded bytes of all records.
        order: "source" (the split finder's order) or "shuffled:<seed>" (training, mixed once so chunks mix classes).
        extra: `{"items": {"bytes": n, "sha256": h}}` when the split has an `items.jsonl` of per-item metadata.
    """

    split: str
    splits: list[str]
    codec: str
    identity: dict[str, Any]
    classes: list[str]
    num_items: int
    listing_sha256: str
    num_bytes: int = 0
    order: str = "source"
    format: str = SHARD_FORMAT
    version: int = SHARD_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The JSON text of `mmattn.json`."""
        return json.dumps(_canonical(asdict(self)), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> ShardInfo:
        """Parse `mmattn.json` text; `where` names the file in errors.

        Raises:
            ShardError: Not JSON, not ours, a newer format version, or fields missing.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ShardError(f"{where} is not valid JSON ({e}); write the shards again with mmattn-shards") from None
        if not isinstance(data, dict) or data.get("format") != SHARD_FORMAT:
            raise ShardError(f"{where} was not written by mmattn-shards; write the shards with mmattn-shards")
        if data.get("version") != SHARD_VERSION:
            raise ShardError(
                f"{where} is shard format version {data.get('version')}, this mmattn reads version {SHARD_VERSION}; "
                "write the shards again with this mmattn-shards"
            )
        try:
            return cls(**data)
        except TypeError as e:
            raise ShardError(f"{where} lacks fields of a shard fingerprint ({e}); write the shards again") from None


# Reading ------------------------------------------------------------------------------------------------------------


def _read_text(location: str) -> str | None:
    """The text of a local file or an object-store URL; None when it does not exist."""
    data = _read_bytes(location)
    return None if data is None else data.decode()


def _read_bytes(location: str) -> bytes | None:
    """The bytes of a local file or an object-store URL; None when it does not exist."""
    if not is_url(location):
        try:
            return Path(location).read_bytes()
        except FileNotFoundError:
            return None
    # litdata's provider for the URL's scheme (a private helper: its public API covers chunks, not single files).
    from litdata.streaming.fs_provider import _get_fs_provider

    provider = _get_fs_provider(location)
    if not provider.exists(location):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, os.path.basename(location))
        provider.download_file(location, local)
        return Path(local).read_bytes()


def read_info(split_dir: str) -> ShardInfo | None:
    """The `ShardInfo` of a written split, or None when `split_dir` holds no `mmattn.json`.

    Raises:
        ShardError: The file is there but is not a readable fingerprint of this format.
    """
    where = join(split_dir, INFO_NAME)
    text = _read_text(where)
    return None if text is None else ShardInfo.from_json(text, where)


def _differences(found: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    found, expected = _canonical(found), _canonical(expected)
    out = []
    for key in sorted(set(found) | set(expected)):
        if found.get(key) != expected.get(key):
            out.append(f"{key} is {found.get(key)!r} in the shards but {expected.get(key)!r} in the config")
    return out


def check_info(
    info: ShardInfo,
    *,
    where: str,
    codec: str,
    identity: dict[str, Any],
    classes: Sequence[str] | None = None,
) -> None:
    """Check that a split's fingerprint is the data the config asks for.

    Raises:
        ShardError: Another codec, identity or class list; the message names the first difference and the fix.
    """
    redo = "write the shards again for this config (mmattn-shards with the same data options) or point data.shards at"
    if info.codec != codec:
        raise ShardError(f"{where} holds {info.codec} records but this data reads {codec}; {redo} {codec} shards")
    differences = _differences(info.identity, identity)
    if differences:
        more = f" (and {len(differences) - 1} more difference(s))" if len(differences) > 1 else ""
        raise ShardError(f"{where} was written from other data: {differences[0]}{more}; {redo} the matching ones")
    if classes is not None and list(info.classes) != list(classes):
        only_shards = sorted(set(info.classes) - set(classes))
        only_config = sorted(set(classes) - set(info.classes))
        detail = (
            f"only in the shards: {only_shards}, only in the config: {only_config}"
            if only_shards or only_config
            else "the same names in another order"
        )
        counts = f"{len(info.classes)} classes but the config expects {len(classes)}"
        raise ShardError(f"{where} holds {counts} ({detail}); {redo} the matching ones")


def check_chunks(split_dir: str, info: ShardInfo) -> None:
    """Check a local split folder against litdata's index: every chunk present, of its recorded size, and the item
    count of the fingerprint (cheap: `stat` calls, no data read). Object-store folders are checked by litdata.

    Raises:
        ShardError: No index, a missing or resized chunk, or a count that differs; the message names the file.
    """
    if is_url(split_dir):
        return
    again = "copy the folder again, or write the split again with mmattn-shards"
    index_path = Path(split_dir, INDEX_NAME)
    try:
        index = json.loads(index_path.read_text())
        chunks = index["chunks"]
    except FileNotFoundError:
        raise ShardError(
            f"{index_path} is missing: the shards were not finished or not copied whole; {again}"
        ) from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ShardError(f"{index_path} is damaged ({type(e).__name__}: {e}); {again}") from None
    total = 0
    for chunk in chunks:
        path = Path(split_dir, chunk["filename"])
        if not path.is_file():
            raise ShardError(f"chunk {path} is missing ({len(chunks)} chunks are listed in {INDEX_NAME}); {again}")
        size = path.stat().st_size
        if size != chunk["chunk_bytes"]:
            raise ShardError(
                f"chunk {path} is {size} bytes but {INDEX_NAME} records {chunk['chunk_bytes']} (truncated or "
                f"replaced); {again}"
            )
        total += int(chunk["chunk_size"])
    if total != info.num_items:
        raise ShardError(f"{split_dir} holds {total} records but its {INFO_NAME} says {info.num_items}; {again}")
    items = info.extra.get("items")
    if items is not None:
        path = Path(split_dir, ITEMS_NAME)
        if not path.is_file():
            raise ShardError(f"{path} is missing (its {INFO_NAME} lists per-item metadata); {again}")
        if path.stat().st_size != items["bytes"]:
            raise ShardError(
                f"{path} is {path.stat().st_size} bytes but {INFO_NAME} records {items['bytes']} (truncated or "
                f"replaced); {again}"
            )


def read_items(split_dir: str, info: ShardInfo) -> list[dict[str, Any]]:
    """The per-item metadata of a checked split (`items.jsonl`), one dict with its `key` per record, in order.

    Raises:
        ShardError: The split has no metadata, or the file is missing or differs from the one written.
    """
    again = "copy the folder again, or write the split again with mmattn-shards"
    where = join(split_dir, ITEMS_NAME)
    expected = info.extra.get("items")
    if expected is None:
        raise ShardError(f"{split_dir} was written without per-item metadata ({ITEMS_NAME}); write it again")
    data = _read_bytes(where)
    if data is None:
        raise ShardError(f"{where} is missing (its {INFO_NAME} lists per-item metadata); {again}")
    if len(data) != expected["bytes"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise ShardError(f"{where} differs from the file written (its SHA-256 does not match {INFO_NAME}); {again}")
    items = [json.loads(line) for line in data.decode().splitlines()]
    if len(items) != info.num_items:
        raise ShardError(f"{where} lists {len(items)} items but {INFO_NAME} says {info.num_items}; {again}")
    return items


def record_from_raw(raw: Any, where: str) -> Record:
    """A `Record` from what litdata read back, its CRC checked.

    Raises:
        ShardError: Not a record of this format, or its bytes differ from the ones written (a garbled chunk).
    """
    if not isinstance(raw, dict) or set(raw) != RECORD_KEYS:
        raise ShardError(f"{where} holds records of another layout ({type(raw).__name__}); write it with mmattn-shards")
    data = bytes(raw["data"])
    if zlib.crc32(data) != raw["crc"]:
        raise ShardError(
            f"record {raw['key']!r} in {where} is damaged (its bytes do not match their CRC-32): a chunk was garbled; "
            "copy the folder again, or write the split again with mmattn-shards"
        )
    return Record(str(raw["key"]), int(raw["label"]), data, where)
