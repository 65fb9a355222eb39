"""Image data written to shards and read back: the same tensors and labels as from the files (augmentation off), for
the shapes demo, ImageFolder trees and CIFAR; unreadable images stored in shards are named or skipped as files are."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmattn.data.shard_data import write_shards
from mmattn.data.shards import ShardError, read_info
from mmattn.data.streaming import read_records
from mmattn.tasks.vision.data import ImageDecodeError
from mmattn.tasks.vision.datamodules import CIFARDataModule, ImageFolderDataModule, ShapesDataModule
from mmattn.tasks.vision.shapes import SHAPE_CLASSES

# Deterministic training transform: no flip, the whole image (the random-resized crop keeps all of a square image).
PLAIN = dict(batch_size=4, num_workers=0, hflip=0.0, scale=(1.0, 1.0))
SHAPES = dict(train_per_class=3, val_per_class=2, test_per_class=1, **PLAIN)


def _same_items(files, shards, root: Path) -> None:
    """Every split read from shards equals the files' split: eval splits item by item, training by key."""
    files.setup()
    shards.setup()
    assert shards.classes == files.classes
    for split in ("val_set", "test_set"):
        a, b = getattr(files, split), getattr(shards, split)
        assert len(a) == len(b)
        for i in range(len(a)):
            assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1], (split, i)
    records = read_records(str(shards.shards), "train", shards)
    assert len(records) == len(files.train_set)
    decode = shards.decode_record(train=True)
    by_key = {}
    for i in range(len(files.train_set)):
        base = files.train_set.dataset
        key = Path(base.samples[files.train_set.indices[i]][0]).relative_to(root).as_posix()
        by_key[key] = files.train_set[i]
    for record in records:
        x, y = decode(record)
        assert torch.equal(x, by_key[record.key][0]) and y == by_key[record.key][1], record.key


def test_shapes_from_shards_equal_shapes_from_files(tmp_path: Path) -> None:
    files = ShapesDataModule(tmp_path / "data", **SHAPES)
    files.prepare_data()
    out = tmp_path / "shards"
    written = write_shards(files, str(out))
    assert [(s.split, s.num_items) for s in written] == [("train", 30), ("val", 20), ("test", 10)]
    shards = ShapesDataModule(tmp_path / "elsewhere", format="shards", shards=out, **SHAPES)
    shards.prepare_data()  # no generation for shards: the data folder stays untouched
    assert not (tmp_path / "elsewhere").exists()
    _same_items(files, shards, files.root)
    info = read_info(str(out / "train"))
    assert info.classes == list(SHAPE_CLASSES) and info.codec == "image"
    assert info.identity["dataset"] == "shapes" and info.identity["train_per_class"] == 3
    # The encoded PNGs as they are on disk: the shards are the size of the data.
    png_bytes = sum(p.stat().st_size for p in (files.root / "train").rglob("*.png"))
    assert info.num_bytes == png_bytes
    x, y = next(iter(shards.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and y.dtype == torch.int64


def test_shapes_shards_for_other_settings_or_other_data_are_refused(tmp_path: Path) -> None:
    files = ShapesDataModule(tmp_path / "data", **SHAPES)
    files.prepare_data()
    write_shards(files, str(tmp_path / "shards"))
    more = ShapesDataModule(tmp_path, format="shards", shards=tmp_path / "shards", **{**SHAPES, "train_per_class": 4})
    with pytest.raises(ShardError, match="train_per_class is 3 in the shards but 4 in the config"):
        more.setup()
    folder = ImageFolderDataModule(tmp_path, img_size=32, format="shards", shards=tmp_path / "shards", **PLAIN)
    with pytest.raises(ShardError, match="dataset is 'shapes' in the shards but 'imagefolder' in the config"):
        folder.setup()


def _image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog", "eel"), n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)  # square: the crop keeps all of it
            Image.fromarray(pixels).save(root / name / f"{i}.{'jpg' if i % 2 else 'png'}")
    return root


def test_image_folder_split_by_seed_from_shards(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "img")
    options = dict(val_fraction=0.25, img_size=32, **PLAIN)
    files = ImageFolderDataModule(root, **options)
    write_shards(files, str(tmp_path / "shards"))
    shards = ImageFolderDataModule(tmp_path / "moved", format="shards", shards=tmp_path / "shards", **options)
    _same_items(files, shards, root)
    # Keyed by path under the root, in the files' order, so a moved tree still reads as the same data.
    val_keys = [Path(files.val_set.dataset.samples[i][0]).relative_to(root).as_posix() for i in files.val_set.indices]
    assert [r.key for r in read_records(str(tmp_path / "shards"), "val", shards)] == val_keys
    other_seed = ImageFolderDataModule(root, format="shards", shards=tmp_path / "shards", **{**options, "seed": 1})
    with pytest.raises(ShardError, match="seed is 0 in the shards but 1 in the config"):
        other_seed.setup()


def test_unreadable_images_in_shards_stop_naming_them_or_are_skipped(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "img")
    (root / "eel" / "2.png").write_bytes(b"not an image at all")
    options = dict(val_fraction=0.25, img_size=32, drop_last=False, **PLAIN)
    write_shards(ImageFolderDataModule(root, **options), str(tmp_path / "shards"))
    stopping = ImageFolderDataModule(root, format="shards", shards=tmp_path / "shards", **options)
    stopping.setup()
    with pytest.raises(
        ImageDecodeError, match=r"cannot read image eel/2.png in .*shards/(train|val) \(.*skip_bad_files"
    ):
        list(stopping.train_dataloader()) + list(stopping.val_dataloader())
    skipping = ImageFolderDataModule(root, format="shards", shards=tmp_path / "shards", skip_bad_files=True, **options)
    skipping.setup()
    with pytest.warns(
        RuntimeWarning, match=r"skipped 1 image file\(s\) that could not be read in this pass: eel/2.png"
    ):
        labels = [y for loader in (skipping.train_dataloader(), skipping.val_dataloader()) for _, y in loader]
    assert sum(len(y) for y in labels) == 12 - 1


def _fake_cifar10(root: Path, per_batch: int = 4, n_test: int = 5) -> Path:
    """Five training batches, a test batch and the meta file, in CIFAR-10's real pickle format."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return root


def test_cifar_arrays_are_stored_as_lossless_pngs(tmp_path: Path) -> None:
    root = _fake_cifar10(tmp_path / "cifar")
    files = CIFARDataModule(root, val_size=4, **PLAIN)
    write_shards(files, str(tmp_path / "shards"))
    shards = CIFARDataModule(tmp_path, val_size=4, format="shards", shards=tmp_path / "shards", **PLAIN)
    files.setup()
    shards.setup()
    assert shards.classes == files.classes and (len(shards.train_set), len(shards.val_set)) == (16, 4)
    for split in ("val_set", "test_set"):
        a, b = getattr(files, split), getattr(shards, split)
        for i in range(len(a)):
            assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
    assert read_info(str(tmp_path / "shards" / "test")).identity == {"dataset": "cifar10", "val_size": 4, "seed": 0}
