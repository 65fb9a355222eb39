"""Vision datamodules: ImageFolder split logic, CIFAR on-disk format, shapes demo, transforms and error messages."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmattn.tasks.vision.data import ImageDecodeError
from mmattn.tasks.vision.datamodules import CIFARDataModule, ImageFolderDataModule, ShapesDataModule
from mmattn.tasks.vision.shapes import SHAPE_CLASSES, make_shapes

FAST = dict(batch_size=4, num_workers=0)


def _write_images(folder: Path, n: int, size: int = 32) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def _image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog", "eel"), n: int = 4) -> Path:
    for name in classes:
        _write_images(root / name, n)
    return root


def _fake_cifar10(root: Path, per_batch: int = 6, n_test: int = 5) -> Path:
    """Five training batches, a test batch and the meta file, in CIFAR-10's real pickle format."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def dump(name: str, obj: dict) -> None:
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f)

    for b, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        dump(b, {"batch_label": b, "data": data, "labels": [int(x) for x in rng.integers(0, 10, n)]})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    dump("batches.meta", {"label_names": names, "num_cases_per_batch": per_batch})
    return root


def _ids(dataset) -> list[int]:
    return list(dataset.indices)


# ImageFolder ---------------------------------------------------------------------------------------------------------


def test_image_folder_with_split_folders(tmp_path: Path) -> None:
    _image_folder(tmp_path / "train", n=4)
    _image_folder(tmp_path / "val", n=2)
    dm = ImageFolderDataModule(tmp_path, img_size=32, **FAST)
    assert dm.num_classes is None and dm.classes is None
    dm.setup("fit")
    assert dm.classes == ["cat", "dog", "eel"] and dm.num_classes == 3
    assert (len(dm.train_set), len(dm.val_set)) == (12, 6)
    assert dm.test_set is dm.val_set, "without test/ the test split is val"
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64

    _image_folder(tmp_path / "test", n=1)
    dm = ImageFolderDataModule(tmp_path, img_size=32, **FAST)
    dm.setup("test")
    assert len(dm.test_set) == 3
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (3, 3, 32, 32)


def test_image_folder_without_splits_is_split_per_class_by_seed(tmp_path: Path) -> None:
    _image_folder(tmp_path, n=8)
    (tmp_path / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes

    def split(seed: int) -> tuple[list[int], list[int]]:
        dm = ImageFolderDataModule(tmp_path, val_fraction=0.25, seed=seed, **FAST)
        dm.setup()
        assert dm.classes == ["cat", "dog", "eel"] and dm.test_set is dm.val_set
        targets = [dm.train_set.dataset.targets[i] for i in _ids(dm.val_set)]
        assert sorted(targets) == [0, 0, 1, 1, 2, 2], "2 of 8 per class go to val"
        return _ids(dm.train_set), _ids(dm.val_set)

    train, val = split(seed=0)
    assert sorted(train + val) == list(range(24)) and not set(train) & set(val)
    assert split(seed=0) == (train, val)
    assert split(seed=1) != (train, val)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no image folder at .*missing; point data.root at an ImageFolder"):
        ImageFolderDataModule(tmp_path / "missing", **FAST).setup()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty holds no class folders"):
        ImageFolderDataModule(tmp_path / "empty", **FAST).setup()
    _image_folder(tmp_path / "one", classes=("cat",))
    (tmp_path / "one" / "dog").mkdir()
    (tmp_path / "one" / "dog" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"class folder .*one/dog holds no images"):
        ImageFolderDataModule(tmp_path / "one", **FAST).setup()


def test_image_folder_split_errors(tmp_path: Path) -> None:
    _image_folder(tmp_path / "train", classes=("cat", "dog"))
    with pytest.raises(FileNotFoundError, match=r"train/ folder but no val/ folder"):
        ImageFolderDataModule(tmp_path, **FAST).setup()
    _image_folder(tmp_path / "val", classes=("cat", "eel"))
    with pytest.raises(ValueError, match=r"differ between .*train and .*val: only in train: \['dog'\].*\['eel'\]"):
        ImageFolderDataModule(tmp_path, **FAST).setup()


def test_num_classes_is_checked(tmp_path: Path) -> None:
    _image_folder(tmp_path)
    with pytest.raises(ValueError, match="num_classes is 5 but the data has 3 classes"):
        ImageFolderDataModule(tmp_path, num_classes=5, **FAST).setup()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(val_fraction=1.0), "val_fraction 1.0"),
        (dict(crop_pct=1.5), "crop_pct 1.5"),
        (dict(scale=(0.08, 1.2)), r"scale \(0.08, 1.2\)"),
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(affine={"degrees": 10, "rotate": 5}), r"data.affine has unknown key\(s\) \['rotate'\]"),
    ],
)
def test_bad_options_raise_at_construction(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ImageFolderDataModule(tmp_path, **kwargs)


def test_transforms(tmp_path: Path) -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    dm = ImageFolderDataModule(tmp_path, img_size=48, auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25)
    for tf in (dm.train_transform, dm.eval_transform):
        out = tf(img)
        assert isinstance(out, torch.Tensor) and out.shape == (3, 48, 48)
    # The eval transform is deterministic and keeps the whole image at crop_pct=1.
    dm = ImageFolderDataModule(tmp_path, img_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    out = dm.eval_transform(img)
    expected = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255 * 2 - 1
    torch.testing.assert_close(out, expected)


def test_affine_moves_the_training_image_only(tmp_path: Path) -> None:
    # A bright 2 x 2 block in an 8 x 8 image: shifts move it, and the eval transform leaves it where it is.
    pixels = np.zeros((8, 8), dtype=np.uint8)
    pixels[3:5, 3:5] = 255
    img = Image.fromarray(pixels, mode="L").convert("RGB")
    options = dict(img_size=8, hflip=0.0, scale=(1.0, 1.0), mean=(0, 0, 0), std=(1, 1, 1))
    dm = ImageFolderDataModule(tmp_path, affine={"translate": [0.25, 0.25]}, **options)
    plain = ImageFolderDataModule(tmp_path, **options)
    torch.manual_seed(0)
    moved = [dm.train_transform(img)[0] for _ in range(20)]
    still = plain.train_transform(img)[0]
    centre = lambda t: (t * torch.arange(8.0)[:, None]).sum() / t.sum()  # noqa: E731 (row of the block's centre)
    # torchvision shifts by whole pixels: up to 2 either way here.
    assert {round(centre(t).item(), 3) for t in moved} == {1.5, 2.5, 3.5, 4.5, 5.5}
    assert centre(still).item() == pytest.approx(3.5) and torch.equal(dm.eval_transform(img), plain.eval_transform(img))


# CIFAR ---------------------------------------------------------------------------------------------------------------


def test_cifar_reads_the_on_disk_format(tmp_path: Path) -> None:
    root = _fake_cifar10(tmp_path / "cifar10")
    dm = CIFARDataModule(root, val_size=5, **FAST)
    assert dm.num_classes == 10 and dm.classes[0] == "airplane"
    dm.prepare_data()  # download=False: must not touch the network
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (25, 5, 5)
    assert not set(_ids(dm.train_set)) & set(_ids(dm.val_set))
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and y.shape == (4,)
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 3, 32, 32)
    again = CIFARDataModule(root, val_size=5, **FAST)
    again.setup()
    assert _ids(again.val_set) == _ids(dm.val_set)


def test_cifar_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 not found at .*nowhere; pass data.download=true"):
        CIFARDataModule(tmp_path / "nowhere", **FAST).setup()
    with pytest.raises(FileNotFoundError, match=r"CIFAR-100 not found"):
        CIFARDataModule(tmp_path / "nowhere", name="cifar100", **FAST).setup()
    with pytest.raises(ValueError, match="val_size 30 must be smaller than the 30 training images"):
        CIFARDataModule(_fake_cifar10(tmp_path / "c"), val_size=30, **FAST).setup()
    with pytest.raises(ValueError, match="name 'mnist' is not a CIFAR dataset"):
        CIFARDataModule(tmp_path, name="mnist")


# Shapes --------------------------------------------------------------------------------------------------------------

SHAPES_SMALL = dict(train_per_class=2, val_per_class=1, test_per_class=1)


def test_shapes_datamodule(tmp_path: Path) -> None:
    dm = ShapesDataModule(tmp_path, **SHAPES_SMALL, **FAST)
    assert dm.num_classes == len(SHAPE_CLASSES) and dm.classes == list(SHAPE_CLASSES)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (20, 10, 10)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and int(y.max()) < len(SHAPE_CLASSES)


def test_shapes_setup_reuses_data_made_elsewhere(tmp_path: Path) -> None:
    # As on a DDP rank other than 0: prepare_data ran in another process, setup() only reads (and checks) the data.
    make_shapes(tmp_path, **SHAPES_SMALL, workers=1)
    marker = (tmp_path / "shapes" / ".complete").stat().st_mtime_ns
    dm = ShapesDataModule(tmp_path, generate=False, **SHAPES_SMALL, **FAST)
    dm.setup()
    assert len(dm.val_set) == 10
    ShapesDataModule(tmp_path, **SHAPES_SMALL, **FAST).setup()
    assert (tmp_path / "shapes" / ".complete").stat().st_mtime_ns == marker, "must not regenerate"


def test_shapes_missing_without_generate(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"not found at .*shapes; pass data.generate=true"):
        ShapesDataModule(tmp_path, generate=False, **FAST).setup()


def test_shapes_other_settings_on_existing_data_are_refused(tmp_path: Path) -> None:
    make_shapes(tmp_path, **SHAPES_SMALL, workers=1)
    with pytest.raises(ValueError, match=r"noise=8.0.*delete it"):
        ShapesDataModule(tmp_path, noise=8.0, **SHAPES_SMALL, **FAST).setup()


def _break(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("num_workers", [0, 1])
def test_unreadable_images_stop_naming_the_file_or_are_skipped(tmp_path: Path, num_workers: int) -> None:
    root = _image_folder(tmp_path / "img", n=4)
    _break(root / "dog" / "1.png")
    (root / "eel" / "2.png").write_bytes(b"not an image at all")
    options = dict(batch_size=4, num_workers=num_workers, drop_last=False, img_size=32, scale=(1.0, 1.0))
    stopping = ImageFolderDataModule(root, val_fraction=0.25, **options)
    stopping.setup()
    with pytest.raises(ImageDecodeError, match=r"cannot read image .*(dog.1|eel.2)\.png .*data.skip_bad_files=true"):
        for _ in stopping.train_dataloader():
            pass
    skipping = ImageFolderDataModule(root, val_fraction=0.25, skip_bad_files=True, **options)
    skipping.setup()
    with pytest.warns(RuntimeWarning, match=r"skipped \d image file\(s\) that could not be read in this pass") as seen:
        train = [y for _, y in skipping.train_dataloader()]
        val = [y for _, y in skipping.val_dataloader()]
    skipped = " ".join(str(w.message) for w in seen)
    assert "1.png" in skipped and "2.png" in skipped
    assert sum(len(y) for y in train + val) == 12 - 2  # every readable image once, the two bad ones dropped


def test_randaugment_at_full_posterize_strength_gives_a_black_image() -> None:
    # timm asks for 0 bits at magnitude 10, which Pillow >= 13 refuses; our op table entry keeps the old meaning.
    from timm.data.auto_augment import AugmentOp

    import mmattn.tasks.vision.datamodules  # noqa: F401  (installs the op)

    img = Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8))
    assert np.asarray(AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=10)(img)).max() == 0
    assert np.asarray(AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=0)(img)).max() == 192  # 4 bits kept
