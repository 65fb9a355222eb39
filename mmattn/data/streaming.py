"""Training from shard folders: litdata's `StreamingDataset` / `StreamingDataLoader` over `mmattn.data.shards`.

`load_shard_splits` opens the splits of a `mmattn.data.shard_data.StreamedData` datamodule after checking their
fingerprints and chunks (before anything is read); `ShardDataset` decodes each record with the datamodule's own
decoder and transforms, and names the folder when a chunk turns out damaged while reading. litdata shards the chunks
over DDP ranks and loader workers itself (every rank gets the same number of items, so under DDP a few items of a
split can be left out of an epoch), reshuffles them each epoch, and its loader's state goes into Lightning
checkpoints, so a resumed run continues inside the epoch.

`load_record_splits` opens the splits of data read by index instead (`ShardRecords`, a map-style dataset of stored
records, with the per-item metadata of `items.jsonl`): its own sampler and loader (token-budget batches,
`mmattn.data.ResumableDataLoader`) order and resume the items exactly as from its files.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from litdata import StreamingDataLoader, StreamingDataset
from torch.utils.data import Dataset

from mmattn.data.resumable import item_seed, seed_rngs, seed_step
from mmattn.data.shard_data import ShardedData, StreamedData
from mmattn.data.shards import (
    Record,
    ShardError,
    ShardInfo,
    check_chunks,
    check_info,
    is_url,
    join,
    read_info,
    read_items,
    record_from_raw,
)
from mmattn.data.skipping import SkippingDataLoader

__all__ = [
    "RecordSplit",
    "ShardDataset",
    "ShardRecords",
    "load_record_splits",
    "load_shard_splits",
    "read_records",
    "shard_loader",
]

EVAL_SPLITS = ("train", "val", "test")

# litdata logs its choices (mmap in place, cache budget) at INFO for every split, worker and epoch.
logging.getLogger("litdata").setLevel(logging.WARNING)
# litdata's loader length is exact per rank and worker (it hands out whole batches); Lightning's generic warning
# about `__len__` on an IterableDataset does not apply to it.
warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined", category=UserWarning)


class ShardDataset(StreamingDataset):
    """One written split as litdata's `StreamingDataset`, yielding `decode(record)` for each stored record.

    Reading errors (a chunk that is not what litdata's index says) stop with a `ShardError` naming the folder;
    a record whose bytes changed fails its CRC check naming its key.

    Args:
        split_dir: The split folder or URL.
        info: Its checked fingerprint.
        decode: Record -> item (from `ShardedData.decode_record`).
        shuffle: Shuffle chunks and the items inside them, anew each epoch.
        seed: Seed of that shuffle.
        drop_last: Drop items so that every rank and worker gets whole batches; None = litdata's default (off in one
            process, on under DDP, where every rank must see as many batches).
        item_seed: Seed the RNGs from `(item_seed, epoch, index)` before decoding each item (training), so that its
            augmentation does not depend on the worker that reads it or on a restart (`mmattn.data.resumable`).
    """

    def __init__(
        self,
        split_dir: str,
        info: ShardInfo,
        decode: Callable[[Record], Any],
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool | None = None,
        item_seed: int | None = None,
    ) -> None:
        # A full in-chunk permutation (litdata's default mixes only windows of 256 items inside a chunk), and records
        # deserialised one at a time: litdata's automatic window for byte leaves is 256 records, which a full
        # permutation re-decodes for every item (2,300 instead of 113,000 records/s on the shapes demo, 2 cores).
        super().__init__(
            split_dir, shuffle=shuffle, seed=seed, drop_last=drop_last, item_shuffle_window="full", batch_decode=0
        )
        self.split_dir = split_dir
        self.info = info
        self.decode = decode
        self.item_seed = item_seed

    def __iter__(self) -> ShardDataset:
        """Start a pass over this rank's and worker's chunks (litdata maps and checks them here)."""
        return self._reading(super().__iter__)

    def __getitem__(self, index: Any) -> Any:
        """The decoded item at `index` (an int, or litdata's chunk index while iterating)."""
        if isinstance(index, int) and not 0 <= index < self.info.num_items:
            raise IndexError(f"index {index} is out of range for the {self.info.num_items} records of {self.split_dir}")
        raw = self._reading(lambda: super(ShardDataset, self).__getitem__(index))
        if self.item_seed is not None:
            seed_rngs(item_seed(self.item_seed, self.current_epoch, int(getattr(index, "index", index))))
        return self.decode(record_from_raw(raw, self.split_dir))

    def _reading(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except ShardError:
            raise
        # litdata reports a chunk that is not what its index says as whatever its parser meets (a RuntimeError on a
        # bad header, a UnicodeDecodeError in a key, a timeout on a short file): say which folder, and what to do.
        except Exception as e:
            raise ShardError(
                f"cannot read the shards in {self.split_dir} ({type(e).__name__}: {e}); if a chunk is damaged, copy "
                "the folder again or write the split again with mmattn-shards"
            ) from e


class _SeededStepsLoader(StreamingDataLoader):
    """litdata's loader that seeds the RNGs of the step before handing out each batch of a training split, from the
    seed, the epoch, the position in it and the rank (as `mmattn.data.ResumableDataLoader` does; litdata's own state
    restores the position on resume)."""

    def __iter__(self) -> Any:
        """Batches of the epoch, each handed out with the step's RNGs seeded."""
        dataset = self.dataset
        seed = getattr(dataset, "item_seed", None)
        for batch in super().__iter__():
            if seed is not None:
                rank = dataset.distributed_env.global_rank
                seed_step(seed, self.current_epoch, self._num_samples_yielded_streaming, rank)
            yield batch


class _SkippingStreamingDataLoader(SkippingDataLoader, _SeededStepsLoader):
    """litdata's loader over `collate_skipping` batches: skipped records are dropped and counted per pass."""


def shard_loader(
    dataset: ShardDataset,
    *,
    batch_size: int,
    num_workers: int,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    skipping_kind: str | None = None,
) -> StreamingDataLoader:
    """litdata's `StreamingDataLoader` over a `ShardDataset`; its length is exact per rank (Lightning needs it).

    With `skipping_kind` (pass `collate_fn=collate_skipping`), unreadable records are skipped and counted in a
    warning after each pass, as `SkippingDataLoader` does for files; the kind names them ("image", "audio").
    `persistent_workers` is ignored: litdata 0.2.76's persistent workers do not exit when the loader is shut down,
    which then waits out a 5 s timeout per worker (10 s for 2 workers at the end of every run, measured); its
    workers start again each epoch instead (a fork, a fraction of a second).
    """
    del persistent_workers
    options = dict(
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        collate_fn=collate_fn,
    )
    if skipping_kind is None:
        return _SeededStepsLoader(dataset, **options)
    loader = _SkippingStreamingDataLoader(dataset, **options)
    loader.kind = skipping_kind
    return loader


def _missing(root: str, split: str) -> ShardError:
    exists = os.path.isdir(root) if not is_url(root) else True
    if not exists:
        return ShardError(
            f"no shards at {root}; write them with `mmattn-shards data=<this data config>` (it writes to data.shards), "
            "or point data.shards at them"
        )
    return ShardError(
        f"{join(root, split)} holds no shards ({join(split, 'mmattn.json')} is missing); copy the whole shard folder, "
        "or write it again with mmattn-shards"
    )


def load_shard_splits(
    root: str,
    data: StreamedData,
    *,
    seed: int,
    drop_last: bool,
    classes: Sequence[str] | None = None,
) -> tuple[dict[str, ShardDataset], list[str]]:
    """Open the train, val and (if written) test splits of the shard folder `root` for `data`, after checking them.

    Every split's fingerprint must match `data.shard_identity()` and codec, all splits must hold the same classes
    (and `classes`, when the config knows them), and every local chunk must be present and whole.

    Args:
        root: The shard folder or URL (`data.shards`).
        data: The datamodule whose config the shards must match.
        seed: Seed of the training shuffle.
        drop_last: Whole batches only in training (every rank and worker the same number).
        classes: Class names the config expects, if it knows them.

    Returns:
        `{split: dataset}` ("test" only if it was written) and the class names.

    Raises:
        ShardError: A missing folder, split or chunk, a damaged file, or shards of other data; one line naming it.
    """
    infos = _split_infos(root)
    expected = list(classes) if classes is not None else infos["train"].classes
    datasets = {}
    for split, info in infos.items():
        _check_split(root, split, info, data, expected)
        train = split == "train"
        datasets[split] = ShardDataset(
            join(root, split),
            info,
            data.decode_record(train),
            shuffle=train,
            seed=seed,
            item_seed=seed if train else None,
            # litdata's default for evaluation: every item in one process, whole batches per rank under DDP.
            drop_last=drop_last if train else None,
        )
    return datasets, list(infos["train"].classes)


def _split_infos(root: str) -> dict[str, ShardInfo]:
    """The fingerprints of train, val and (if written) test."""
    infos: dict[str, ShardInfo] = {}
    for split in EVAL_SPLITS:
        info = read_info(join(root, split))
        if info is None:
            # A dataset without a test split was written without one: its test split is val, as from files.
            if split == "test" and "test" not in infos["train"].splits:
                continue
            raise _missing(root, split)
        infos[split] = info
    return infos


def _check_split(root: str, split: str, info: ShardInfo, data: ShardedData, classes: Sequence[str] | None) -> None:
    split_dir = join(root, split)
    check_info(info, where=split_dir, codec=data.shard_codec, identity=data.shard_identity(), classes=classes)
    if info.split != split:
        raise ShardError(f"{split_dir} holds the {info.split!r} split, not {split!r}; keep each split in its folder")
    check_chunks(split_dir, info)


def read_records(root: str, split: str, data: ShardedData) -> list[Record] | None:
    """Every record of a small side split (e.g. background noise), checked like the others, in order; None when the
    shards were written without that split.

    Raises:
        ShardError: The split was written but is missing or damaged, or it is from other data.
    """
    split_dir = join(root, split)
    info = read_info(split_dir)
    if info is None:
        train = read_info(join(root, "train"))
        if train is not None and split not in train.splits:
            return None
        raise _missing(root, split)
    _check_split(root, split, info, data, None)
    dataset = ShardDataset(split_dir, info, _record, shuffle=False)
    return [dataset[i] for i in range(info.num_items)]


def _record(record: Record) -> Record:
    return record


class ShardRecords(Dataset):
    """One written split as a map-style dataset: item i = the i-th stored `Record` (its CRC checked), for data read
    by index in its own order (local chunks are memory-mapped; from an object store litdata fetches each record's
    bytes alone).

    litdata's dataset is opened on first use in each process (a loader worker, a DDP rank), never inherited.
    """

    def __init__(self, split_dir: str, info: ShardInfo) -> None:
        self.split_dir = split_dir
        self.info = info
        self._dataset: ShardDataset | None = None
        self._pid = 0

    def __len__(self) -> int:
        """The number of stored records."""
        return self.info.num_items

    def __getitem__(self, index: int) -> Record:
        """The record at `index`."""
        # A forked worker would inherit litdata's reader with its threads gone: each process opens its own.
        if self._dataset is None or self._pid != os.getpid():
            self._dataset = ShardDataset(self.split_dir, self.info, _record, shuffle=False)
            self._pid = os.getpid()
        return self._dataset[int(index)]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_dataset": None}


@dataclass(frozen=True)
class RecordSplit:
    """A checked split read by index: its records and the per-item metadata of `items.jsonl` (empty without)."""

    records: ShardRecords
    items: list[dict[str, Any]]


def load_record_splits(root: str, data: ShardedData) -> dict[str, RecordSplit]:
    """Open the train, val and (if written) test splits of the shard folder `root` for `data`, after checking their
    fingerprints, chunks and metadata files, and read their metadata.

    Raises:
        ShardError: A missing folder, split, chunk or metadata file, a damaged file, or shards of other data; one
            line naming it.
    """
    splits = {}
    for split, info in _split_infos(root).items():
        _check_split(root, split, info, data, None)
        split_dir = join(root, split)
        items = read_items(split_dir, info) if "items" in info.extra else []
        splits[split] = RecordSplit(ShardRecords(split_dir, info), items)
    return splits
