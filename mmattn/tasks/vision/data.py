"""Image datasets and checks behind the vision datamodules: ImageFolder trees, CIFAR files, transformed views, and
the records of their shards.

Both ways of reading an item share its two steps: the bytes of an image file (from the file, or stored in a shard)
are decoded by `decode_image`, then `transform_item` applies the split's transform (or yields a `BadFile`).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100, ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from mmattn.data import BadFile, stratified_split

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class ImageDecodeError(ValueError):
    """An image file that PIL cannot read; the message names the file, PIL's error and the way to skip such files.

    One positional argument, so that a DataLoader worker's exception is re-raised in the main process as this type.
    """

    def __init__(self, message: str, path: str | Path = "") -> None:
        super().__init__(message)
        self.path = str(path)


def _decode_error(name: str | Path, error: BaseException) -> ImageDecodeError:
    return ImageDecodeError(
        f"cannot read image {name} ({error or type(error).__name__}); replace or delete it, or set "
        "data.skip_bad_files=true to skip unreadable files (counted in a warning after each epoch)",
        name,
    )


def decode_image(data: bytes, name: str | Path) -> Image.Image:
    """Encoded image bytes (a PNG, JPEG, ... file's content) as RGB, fully decoded; errors name `name`.

    Raises:
        ImageDecodeError: PIL cannot read them.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")
    # PIL reports unknown formats as UnidentifiedImageError (an OSError), truncated data as OSError, some broken
    # headers as SyntaxError or ValueError.
    except (OSError, SyntaxError, ValueError) as e:
        raise _decode_error(name, e) from e


def read_image(path: str | Path) -> Image.Image:
    """The image at `path` as RGB, fully decoded (a truncated file fails here, not later in a transform).

    Raises:
        FileNotFoundError: `path` does not exist.
        ImageDecodeError: PIL cannot read it.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"image file {path} does not exist") from e
    except OSError as e:  # a folder or an unreadable file where an image was listed
        raise _decode_error(path, e) from e
    return decode_image(data, path)


def transform_item(
    load: Callable[[], tuple[Image.Image, int]], transform: Callable | None, skip_bad_files: bool
) -> tuple[Any, int] | BadFile:
    """`(transform(image), target)` of one loaded item; a `BadFile` for an unreadable image with `skip_bad_files`."""
    try:
        img, target = load()
    except ImageDecodeError as e:
        if not skip_bad_files:
            raise
        return BadFile(e.path, str(e.__cause__ or e))
    return (transform(img) if transform is not None else img), target


def load_images(paths: Sequence[str | Path], transform: Callable[[Image.Image], Tensor], img_size: int) -> Tensor:
    """Image files as one batch [B, 3, img_size, img_size] through `transform` (normally an evaluation transform).

    Images of another size are resized by that transform, with a warning naming them.

    Raises:
        FileNotFoundError: A file does not exist.
        ImageDecodeError: A file is no image PIL can read.
    """
    out = []
    for path in paths:
        rgb = read_image(path)
        if rgb.size != (img_size, img_size):
            size = f"{rgb.size[0]} x {rgb.size[1]} px"
            warnings.warn(f"{path} is {size}; resized for the model's {img_size} px", stacklevel=3)
        out.append(transform(rgb))
    return torch.stack(out)


class TransformedSubset(Dataset):
    """A view of `dataset` (which yields PIL images) restricted to `indices`, with its own `transform`.

    With `skip_bad_files`, an image that cannot be read gives a `mmattn.data.BadFile` (for `collate_skipping` to
    drop) instead of raising `ImageDecodeError`.
    """

    def __init__(
        self,
        dataset: Dataset,
        indices: Sequence[int] | None,
        transform: Callable | None,
        skip_bad_files: bool = False,
    ) -> None:
        self.dataset = dataset
        self.indices = list(range(len(dataset))) if indices is None else list(indices)  # type: ignore[arg-type]
        self.transform = transform
        self.skip_bad_files = skip_bad_files

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int] | BadFile:
        return transform_item(lambda: self.dataset[self.indices[i]], self.transform, self.skip_bad_files)


class ImageFolderDataset(ImageFolder):
    """ImageFolder that ignores hidden folders (`.ipynb_checkpoints`, ...), matching `check_image_folder`, and reads
    with `read_image` (errors name the file)."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(str(root), loader=read_image)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = _class_dirs(Path(directory))
        return classes, {c: i for i, c in enumerate(classes)}


def _class_dirs(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def check_image_folder(path: Path, option: str = "data.root") -> list[str]:
    """Check that `path` is a usable ImageFolder tree (`path/<class>/<image>`) and return its sorted class names.

    Raises:
        FileNotFoundError: `path` is not a folder; the message names `option`, the setting that points at it.
        ValueError: `path` has no class folders, or a class folder holds no image.
    """
    if not path.is_dir():
        raise FileNotFoundError(
            f"no image folder at {path}; point {option} at an ImageFolder tree (root/<class>/<image>)"
        )
    classes = _class_dirs(path)
    if not classes:
        raise ValueError(f"{path} holds no class folders; an ImageFolder tree looks like {path}/<class>/<image>")
    for name in classes:
        files = (f for _, _, fs in os.walk(path / name, followlinks=True) for f in fs)
        if not any(f.lower().endswith(IMG_EXTENSIONS) for f in files):
            raise ValueError(f"class folder {path / name} holds no images (extensions {', '.join(IMG_EXTENSIONS)})")
    return classes


def image_folder_splits(
    root: Path, val_fraction: float = 0.1, seed: int = 0
) -> tuple[dict[str, tuple[Dataset, list[int] | None]], list[str]]:
    """Find the train/val[/test] splits of an ImageFolder tree.

    With `root/train`, the splits are `root/{train,val[,test]}`, which must hold the same class folders; otherwise
    `root` itself is split per class into train/val by `val_fraction` and `seed`.

    Returns:
        `{split: (dataset, indices)}` (indices None = all; no "test" key without a test split) and the class names.

    Raises:
        FileNotFoundError: `root` (or `root/val` next to `root/train`) does not exist.
        ValueError: A split is empty or the splits disagree on the class folders.
    """
    if not (root / "train").is_dir():
        classes = check_image_folder(root)
        full = ImageFolderDataset(root)
        train_idx, val_idx = stratified_split(full.targets, val_fraction, seed)
        return {"train": (full, train_idx), "val": (full, val_idx)}, classes

    paths = {split: root / split for split in ("train", "val", "test") if (root / split).is_dir()}
    if "val" not in paths:
        raise FileNotFoundError(f"{root} has a train/ folder but no val/ folder; add {root / 'val'}/<class>/<image>")
    found = {split: check_image_folder(path) for split, path in paths.items()}
    for split, classes in found.items():
        if classes != found["train"]:
            only_train = sorted(set(found["train"]) - set(classes))
            only_here = sorted(set(classes) - set(found["train"]))
            raise ValueError(
                f"class folders differ between {paths['train']} and {paths[split]}: only in train: {only_train}, "
                f"only in {split}: {only_here}; both need the same class folders"
            )
    return {split: (ImageFolderDataset(path), None) for split, path in paths.items()}, found["train"]


# torchvision checks the md5 of every CIFAR file on each construction. We keep its file-existence check but drop the
# sums: download still verifies the archive's md5, re-hashing 180 MB on every setup of every rank buys little over the
# unpickling that follows, and the sums reject small fixtures written in the same on-disk format.
class CIFAR10Dataset(CIFAR10):
    """torchvision's CIFAR10 reader without per-file md5 checks."""

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


class CIFAR100Dataset(CIFAR100):
    """torchvision's CIFAR100 reader without per-file md5 checks."""

    train_list = [[name, None] for name, _ in CIFAR100.train_list]
    test_list = [[name, None] for name, _ in CIFAR100.test_list]
    meta = {**CIFAR100.meta, "md5": None}
