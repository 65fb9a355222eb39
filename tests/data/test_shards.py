"""Shard folders, modality-free: a toy datamodule of byte files written with `write_shards` and read back through
`ClassificationDataModule(format="shards")`; every way a shard folder can be wrong stops with one line naming it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset

from mmattn.data import ClassificationDataModule
from mmattn.data.shard_data import ShardedData, StreamedData, write_shards
from mmattn.data.shards import FileSource, Record, RecordSource, ShardError, read_info
from mmattn.data.streaming import ShardDataset

CLASSES = ("ant", "bee", "cat")


def _item(data: bytes, label: int) -> tuple[torch.Tensor, int]:
    return torch.tensor(list(data[:8]), dtype=torch.uint8), label


class _Decode:
    def __call__(self, record: Record) -> tuple[torch.Tensor, int]:
        return _item(record.data, record.label)


class _Files(Dataset):
    def __init__(self, files: list[tuple[Path, int]]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[i]
        return _item(path.read_bytes(), label)


class ToyData(StreamedData, ClassificationDataModule):
    """Files `root/<split>/<class>/<n>.bin`, an item being the first 8 bytes of a file and its class."""

    shard_codec = "bytes"

    def __init__(self, root: Path, *, variant: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("batch_size", 4)
        kwargs.setdefault("num_workers", 0)
        super().__init__(**kwargs)
        self.root, self.variant = root, variant

    def _files(self) -> dict[str, list[tuple[Path, int]]]:
        classes = sorted(p.name for p in (self.root / "train").iterdir())
        return {
            split: [
                (f, classes.index(c.name)) for c in sorted((self.root / split).iterdir()) for f in sorted(c.iterdir())
            ]
            for split in ("train", "val", "test")
            if (self.root / split).is_dir()
        }

    def _load(self) -> tuple[Dataset, Dataset, Dataset | None, list[str]]:
        files = self._files()
        test = _Files(files["test"]) if "test" in files else None
        return (
            _Files(files["train"]),
            _Files(files["val"]),
            test,
            sorted(p.name for p in (self.root / "train").iterdir()),
        )

    def shard_identity(self) -> dict[str, Any]:
        return {"dataset": "toy", "variant": self.variant}

    def shard_sources(self) -> tuple[dict[str, list[RecordSource]], list[str]]:
        sources = {
            split: [FileSource(f.relative_to(self.root).as_posix(), label, str(f)) for f, label in files]
            for split, files in self._files().items()
        }
        return sources, sorted(p.name for p in (self.root / "train").iterdir())

    def decode_record(self, train: bool) -> Callable[[Record], Any]:
        return _Decode()


def _toy_tree(root: Path, classes: tuple[str, ...] = CLASSES, per_class: dict[str, int] | None = None) -> Path:
    counts = per_class or {"train": 6, "val": 2, "test": 2}
    for split, n in counts.items():
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                # 600 bytes each: several chunks at chunk_bytes=2000.
                (root / split / name / f"{i}.bin").write_bytes(bytes([c, i, len(split)]) + os.urandom(597))
    return root


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Path, Path]:
    """A toy tree and its shards (small chunks, so a split spans several chunk files)."""
    root = _toy_tree(tmp_path / "toy")
    out = tmp_path / "shards"
    write_shards(ToyData(root), str(out), chunk_bytes=2000)
    return root, out


def _shards(out: Path, **kwargs: Any) -> ToyData:
    data = ToyData(out.parent / "elsewhere", format="shards", shards=out, **kwargs)
    data.setup()
    return data


def test_items_from_shards_equal_items_from_files(toy: tuple[Path, Path]) -> None:
    root, out = toy
    files, shards = ToyData(root), _shards(out)
    files.setup()
    assert shards.classes == files.classes == list(CLASSES)
    for split in ("val_set", "test_set"):  # stored in the data's order
        a, b = getattr(files, split), getattr(shards, split)
        assert len(a) == len(b) == 6
        for i in range(len(a)):
            assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
    # Training is stored in a seeded random order: the same items, mixed.
    stored = sorted((tuple(x.tolist()), y) for x, y in (shards.train_set[i] for i in range(18)))
    assert stored == sorted((tuple(x.tolist()), y) for x, y in (files.train_set[i] for i in range(18)))
    assert [shards.train_set[i][1] for i in range(6)] != [0] * 6
    info = read_info(str(out / "train"))
    assert (info.num_items, info.classes, info.codec, info.order) == (18, list(CLASSES), "bytes", "shuffled:0")
    assert info.identity == {"dataset": "toy", "variant": 0} and info.splits == ["train", "val", "test"]
    assert len([p for p in (out / "train").iterdir() if p.suffix == ".bin"]) > 1


@pytest.mark.parametrize("num_workers", [0, 1])
def test_loader_length_is_the_number_of_batches(toy: tuple[Path, Path], num_workers: int) -> None:
    data = _shards(toy[1], num_workers=num_workers, batch_size=4)
    train, val = data.train_dataloader(), data.val_dataloader()
    batches = list(train)
    # drop_last: 18 items give 4 whole batches of 4, every batch full.
    assert len(train) == len(batches) == 4 and all(len(y) == 4 for _, y in batches)
    assert len(val) == len(list(val)) == 2 and sum(len(y) for _, y in val) == 6
    # Reshuffled each epoch.
    assert [y.tolist() for _, y in batches] != [y.tolist() for _, y in train]


def test_writing_again_keeps_what_is_up_to_date_and_refuses_other_data(toy: tuple[Path, Path]) -> None:
    root, out = toy
    mtime = (out / "train" / "index.json").stat().st_mtime_ns
    assert all(s.up_to_date for s in write_shards(ToyData(root), str(out), chunk_bytes=2000))
    assert (out / "train" / "index.json").stat().st_mtime_ns == mtime
    with pytest.raises(
        ShardError,
        match=r"shards/train already holds shards of other data \(variant 0 there, 1 now\); pass overwrite=true",
    ):
        write_shards(ToyData(root, variant=1), str(out))
    written = write_shards(ToyData(root, variant=1), str(out), overwrite=True)
    assert not any(s.up_to_date for s in written) and read_info(str(out / "val")).identity["variant"] == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_shards_of_other_data_stop_naming_the_difference(toy: tuple[Path, Path], tmp_path: Path) -> None:
    root, out = toy
    with pytest.raises(
        ShardError,
        match=r"shards/train was written from other data: variant is 0 in the shards but 2 in the config; write",
    ):
        _shards(out, variant=2)
    with pytest.raises(ValueError, match="num_classes is 4 but the data has 3 classes"):
        _shards(out, num_classes=4)
    # Another class list: shards of a tree whose classes differ, read where the config knows its classes.
    other = write_shards(ToyData(_toy_tree(tmp_path / "other", ("ant", "bee", "dog"))), str(tmp_path / "o"))
    assert other
    data = ToyData(tmp_path, format="shards", shards=tmp_path / "o")
    data.classes = list(CLASSES)
    with pytest.raises(
        ShardError,
        match=r"3 classes but the config expects 3 \(only in the shards: \['dog'\], only in the config: \['cat'\]\)",
    ):
        data.setup()
    # Records of another codec.
    info = json.loads((out / "train" / "mmattn.json").read_text())
    (out / "train" / "mmattn.json").write_text(json.dumps({**info, "codec": "image"}))
    with pytest.raises(ShardError, match="holds image records but this data reads bytes"):
        _shards(out)


def test_missing_folders_and_files_are_named(toy: tuple[Path, Path], tmp_path: Path) -> None:
    root, out = toy
    with pytest.raises(ShardError, match=r"no shards at .*nowhere; write them with `mmattn-shards"):
        _shards(tmp_path / "nowhere")
    chunk = sorted((out / "val").glob("chunk-*.bin"))[-1]
    chunk.unlink()
    with pytest.raises(
        ShardError, match=rf"chunk .*val/{chunk.name} is missing \(\d chunks are listed in index.json\)"
    ):
        _shards(out)
    # Writing the same data again repairs it (no overwrite needed); the intact splits are kept.
    written = {s.split: s.up_to_date for s in write_shards(ToyData(root), str(out), chunk_bytes=2000)}
    assert written == {"train": True, "val": False, "test": True} and chunk.is_file()
    (out / "train" / "index.json").unlink()
    with pytest.raises(ShardError, match=r"train/index.json is missing: the shards were not finished or not copied"):
        _shards(out)
    shutil.rmtree(out / "test")
    with pytest.raises(ShardError, match=r"shards/test holds no shards \(test/mmattn.json is missing\)"):
        _shards(out)


def test_damaged_chunks_are_named(toy: tuple[Path, Path]) -> None:
    _, out = toy
    chunk = sorted((out / "val").glob("chunk-*.bin"))[0]
    size = chunk.stat().st_size
    with open(chunk, "r+b") as f:
        f.truncate(size - 100)
    with pytest.raises(
        ShardError, match=rf"{chunk.name} is {size - 100} bytes but index.json records {size} \(truncated"
    ):
        _shards(out)
    with open(chunk, "r+b") as f:
        f.seek(0, 2)
        f.write(b"\0" * 100)
    data = _shards(out)
    # Garbled inside a record's bytes: its CRC names the record.
    with open(chunk, "r+b") as f:
        f.seek(size - 50)
        f.write(b"garbage!")
    with pytest.raises(
        ShardError, match=r"record '.*\.bin' in .*val is damaged \(its bytes do not match their CRC-32\)"
    ):
        list(data.val_dataloader())
    # Garbled in the chunk's header: litdata's own error, with the folder and what to do.
    with open(chunk, "r+b") as f:
        f.write(b"\xff" * 16)
    with pytest.raises(
        ShardError, match=r"cannot read the shards in .*val \(RuntimeError: .*\); if a chunk is damaged"
    ):
        list(_shards(out).val_dataloader())


def test_format_needs_shards_and_a_datamodule_that_reads_them(tmp_path: Path) -> None:
    class Plain(ClassificationDataModule):
        def _load(self):  # pragma: no cover - never set up
            raise AssertionError

    with pytest.raises(ValueError, match="Plain cannot read shards .*; set data.format=files"):
        Plain(batch_size=2, num_workers=0, format="shards", shards=tmp_path)
    with pytest.raises(ValueError, match="format=shards needs shards=<the folder or URL"):
        ToyData(tmp_path, format="shards")
    with pytest.raises(ValueError, match=r"format must be one of \['files', 'shards'\], got 'streaming'"):
        ToyData(tmp_path, format="streaming")


def test_shard_dataset_index_is_checked(toy: tuple[Path, Path]) -> None:
    data = _shards(toy[1])
    assert isinstance(data.val_set, ShardDataset)
    with pytest.raises(IndexError, match="index 6 is out of range for the 6 records"):
        data.val_set[6]


def test_a_run_resumed_inside_an_epoch_continues_that_epoch_to_the_bit(tmp_path: Path) -> None:
    # Lightning stores litdata's loader state in the checkpoint: the resumed run sees exactly the batches that the
    # uninterrupted run saw after the checkpoint, with the same augmentation draws and the same draws in the step.
    import lightning as L

    root = _toy_tree(tmp_path / "toy", per_class={"train": 10, "val": 2, "test": 2})
    write_shards(ToyData(root), str(tmp_path / "shards"), chunk_bytes=2000)
    seen: list[tuple[list[int], list[float], float]] = []

    class Augmented(ToyData):
        def decode_record(self, train: bool) -> Callable[[Record], Any]:
            def decode(record: Record) -> tuple[torch.Tensor, int]:
                x, y = _item(record.data, record.label)
                return torch.cat([x.float(), torch.rand(1)]), y  # a random "augmentation" per item

            return decode

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(9, 3)

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            x, y = batch
            # each item's own number, its augmentation draw, and a draw of the step (dropout would make one)
            seen.append((x[:, 1].int().tolist(), x[:, -1].tolist(), torch.rand(()).item()))
            return torch.nn.functional.cross_entropy(self.layer(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class SaveAtStep3(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
            if trainer.global_step == 3:
                trainer.save_checkpoint(tmp_path / "mid.ckpt")

    def fit(ckpt: Path | None = None, callbacks: list[L.Callback] | None = None) -> list:
        seen.clear()
        trainer = L.Trainer(
            max_epochs=1,
            callbacks=callbacks,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            limit_val_batches=0,
        )
        torch.manual_seed(1)  # the process's RNG before training differs between the runs
        trainer.fit(Probe(), Augmented(tmp_path, format="shards", shards=tmp_path / "shards"), ckpt_path=ckpt)
        return list(seen)

    whole = fit(callbacks=[SaveAtStep3()])
    assert len(whole) == 7  # 30 items in batches of 4
    torch.manual_seed(2)
    assert fit(tmp_path / "mid.ckpt") == whole[3:]


class IndexedToy(ShardedData):
    """Files read by index in their own order, each with metadata known without reading the records."""

    shard_codec = "bytes"
    shard_shuffle = False

    def __init__(self, root: Path, *, variant: int = 0) -> None:
        self.root, self.variant = root, variant

    def shard_identity(self) -> dict[str, Any]:
        return {"dataset": "indexed toy"}

    def shard_sources(self) -> tuple[dict[str, list[RecordSource]], list[str]]:
        files = {split: sorted((self.root / split).rglob("*.bin")) for split in ("train", "val")}
        sources = {
            split: [
                FileSource(
                    f.name, 0, str(f), meta={"size": f.stat().st_size, "first": f.read_bytes()[0] + self.variant}
                )
                for f in found
            ]
            for split, found in files.items()
        }
        return sources, []


def test_records_read_by_index_in_source_order_with_their_metadata(tmp_path: Path) -> None:
    from mmattn.data.streaming import ShardRecords, load_record_splits

    root = _toy_tree(tmp_path / "toy", per_class={"train": 6, "val": 2})
    data = IndexedToy(root)
    write_shards(data, str(tmp_path / "shards"), chunk_bytes=2000)
    sources, _ = data.shard_sources()
    splits = load_record_splits(str(tmp_path / "shards"), data)
    assert set(splits) == {"train", "val"}  # written without a test split
    train = splits["train"]
    assert isinstance(train.records, ShardRecords) and len(train.records) == 18
    assert read_info(str(tmp_path / "shards" / "train")).order == "source"
    # Index i is source i (no shuffle), with its metadata in items.jsonl.
    for i in (0, 7, 17):
        assert train.records[i].key == sources["train"][i].key
        assert train.records[i].data == Path(sources["train"][i].path).read_bytes()
    assert train.items[7] == {"key": sources["train"][7].key, **sources["train"][7].meta}
    # A loader worker gets the dataset without litdata's reader (it opens its own).
    import pickle

    assert pickle.loads(pickle.dumps(train.records))[3].key == sources["train"][3].key
    # Other metadata is other data; a cut items.jsonl is found by its size before training.
    with pytest.raises(ShardError, match=r"already holds shards of other data \(other files\)"):
        write_shards(IndexedToy(root, variant=1), str(tmp_path / "shards"))
    items = tmp_path / "shards" / "val" / "items.jsonl"
    items.write_bytes(items.read_bytes()[:-10])
    with pytest.raises(ShardError, match=r"val/items.jsonl is \d+ bytes but mmattn.json records \d+ \(truncated"):
        load_record_splits(str(tmp_path / "shards"), data)
