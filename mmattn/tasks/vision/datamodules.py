"""Image-classification datamodules: any ImageFolder tree, CIFAR-10/100, and the built-in "shapes" demo set."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from timm.data import auto_augment as timm_auto_augment
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import Compose, InterpolationMode, RandomAffine

from mmattn.data import ClassificationDataModule, SkippingDataLoader, collate_skipping
from mmattn.data.shard_data import StreamedData
from mmattn.data.shards import Record, RecordSource
from mmattn.tasks.vision.data import (
    CIFAR10_CLASSES,
    CIFAR10Dataset,
    CIFAR100Dataset,
    TransformedSubset,
    image_folder_splits,
    load_images,
)
from mmattn.tasks.vision.shapes import DEFAULT_NOISE, DEFAULT_SIZE_RANGE, GENERATOR_VERSION, SHAPE_CLASSES, make_shapes
from mmattn.tasks.vision.shards import ArrayImageSource, ImageRecordDecoder, image_folder_sources


def _posterize(img: Any, bits_to_keep: int, **_: Any) -> Any:
    """timm's posterize op, defined for 0 bits too: an all-black image, as Pillow gave before version 13."""
    from PIL import ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits_to_keep)


# timm's RandAugment "PosterizeIncreasing" keeps 4 - 4 * m / 10 bits: 0 at magnitude 10, which mstd0.5 reaches, and
# Pillow >= 13 raises on 0 bits. Without this, `auto_augment: rand-m9-mstd0.5-inc1` stops a run at a random step.
for _name, _op in list(timm_auto_augment.NAME_TO_OP.items()):
    if _op is timm_auto_augment.posterize:
        timm_auto_augment.NAME_TO_OP[_name] = _posterize


AFFINE_KEYS = ("degrees", "translate", "scale", "shear")


def random_affine(options: Mapping[str, Any]) -> RandomAffine:
    """torchvision's `RandomAffine` (bilinear) from `data.affine`, whose keys are checked against `AFFINE_KEYS`."""
    unknown = sorted(set(options) - set(AFFINE_KEYS))
    if unknown:
        raise ValueError(
            f"data.affine has unknown key(s) {unknown}; use {', '.join(AFFINE_KEYS)} (torchvision's RandomAffine)"
        )
    kwargs = {k: tuple(v) if isinstance(v, Sequence) else v for k, v in options.items()}
    kwargs.setdefault("degrees", 0)
    return RandomAffine(**kwargs, interpolation=InterpolationMode.BILINEAR)


class ImageDataLoader(SkippingDataLoader):
    """`mmattn.data.SkippingDataLoader` whose warning calls the skipped files image files."""

    kind = "image"


class ImageClassificationDataModule(StreamedData, ClassificationDataModule):
    """Base image datamodule: timm transforms on top of `mmattn.data.ClassificationDataModule`'s loaders.

    Subclasses implement `_load()`, returning the train/val/test datasets (yielding PIL images) and the class names,
    and, to be written to shards and read back (`format="shards"`), `shard_identity()` and `shard_sources()`.

    Args:
        batch_size: Samples per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        pin_memory: Pin host memory (helps GPU training).
        persistent_workers: Keep workers alive between epochs (only when `num_workers > 0`).
        drop_last: Drop the last incomplete training batch (batch-wise Mixup needs equal, even batches).
        img_size: Side of the square model input.
        auto_augment: timm augmentation policy, e.g. "rand-m9-mstd0.5-inc1" (RandAugment); None disables it.
        affine: Keyword arguments of torchvision's `RandomAffine` (degrees, translate, scale, shear), applied to the
            training image after timm's random-resized crop (at `img_size`); None disables it. Small rotations,
            shifts and shears are the augmentation of small grayscale sets (digits, scans), where flips and colour
            policies do not apply.
        re_prob: Random-erasing probability.
        hflip: Horizontal-flip probability.
        vflip: Vertical-flip probability.
        scale: Area range of the random-resized crop; (1.0, 1.0) only resizes. ImageNet recipes use (0.08, 1.0).
        ratio: Aspect-ratio range of the random-resized crop.
        color_jitter: Colour-jitter strength; None disables it (timm also disables it when auto_augment is on).
        crop_pct: Eval centre-crop fraction; 1.0 keeps the whole image (right for small images).
        interpolation: Resize interpolation ("bilinear", "bicubic", "random" for training).
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation std.
        num_classes: Expected number of classes; checked against the data in `setup()`.
        skip_bad_files: Skip image files that cannot be read (counted in a warning after each epoch) instead of
            stopping with the file's name.
        format: "files" (the dataset's image files) or "shards" (the shard folder `shards`, from `mmattn-shards`).
        shards: Shard folder or object-store URL, for format "shards".
    """

    loader_class = ImageDataLoader
    shard_codec = "image"
    collate_fn = collate_skipping
    # The files `load_inputs` reads (what mmattn-predict takes from a folder).
    extensions = IMG_EXTENSIONS
    # The name of a file in a JSON-lines manifest of mmattn-predict.
    manifest_keys = ("image",)

    def __init__(
        self,
        *,
        batch_size: int = 128,
        num_workers: int = 2,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        drop_last: bool = True,
        img_size: int = 224,
        auto_augment: str | None = None,
        affine: Mapping[str, Any] | None = None,
        re_prob: float = 0.0,
        hflip: float = 0.5,
        vflip: float = 0.0,
        scale: Sequence[float] = (0.8, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        color_jitter: float | None = None,
        crop_pct: float = 1.0,
        interpolation: str = "bilinear",
        mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        std: Sequence[float] = IMAGENET_DEFAULT_STD,
        num_classes: int | None = None,
        skip_bad_files: bool = False,
        format: str = "files",
        shards: str | Path | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers,
            drop_last=drop_last,
            num_classes=num_classes,
            format=format,
            shards=shards,
        )
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct {crop_pct} must be in (0, 1]; 1.0 keeps the whole image")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale {tuple(scale)} must be (low, high) with 0 < low <= high <= 1")
        self.img_size = img_size
        self.skip_bad_files = skip_bad_files
        common = dict(interpolation=interpolation, mean=tuple(map(float, mean)), std=tuple(map(float, std)))
        train_transform = create_transform(
            img_size,
            is_training=True,
            auto_augment=auto_augment,
            re_prob=re_prob,
            hflip=hflip,
            vflip=vflip,
            scale=tuple(map(float, scale)),
            ratio=tuple(map(float, ratio)),
            color_jitter=color_jitter,
            **common,
        )
        if affine:
            # After timm's random-resized crop: shifts and angles act on the image at the model's input size, so
            # an upsampled small image moves by fractions of its own pixels.
            steps = list(train_transform.transforms)
            train_transform = Compose([steps[0], random_affine(affine), *steps[1:]])
        self.train_transform = train_transform
        # "random" interpolation is a training-only choice; evaluation must be deterministic.
        common["interpolation"] = "bilinear" if interpolation == "random" else interpolation
        self.eval_transform = create_transform(img_size, is_training=False, crop_pct=crop_pct, **common)

    def load_inputs(self, paths: Sequence[str | Path]) -> torch.Tensor:
        """Image files as the model sees them in evaluation: [B, 3, img_size, img_size] through the eval transform.

        Images of another size are resized (and center-cropped) by that transform, with a warning naming them.

        Raises:
            FileNotFoundError: A file does not exist.
            ImageDecodeError: A file is no image PIL can read.
        """
        return load_images(paths, self.eval_transform, self.img_size)

    def decode_record(self, train: bool) -> Callable[[Record], Any]:
        """A stored image -> `(tensor, label)` through the training or evaluation transform, as from its file."""
        return ImageRecordDecoder(self.train_transform if train else self.eval_transform, self.skip_bad_files)


class ImageFolderDataModule(ImageClassificationDataModule):
    """Any ImageFolder tree: `root/{train,val[,test]}/<class>/<image>`, or `root/<class>/<image>` split by seed.

    Args:
        root: Dataset folder. With a `train/` subfolder, `val/` is required and `test/` optional (test = val
            without it); otherwise `root` itself is split per class into train/val (test = val).
        val_fraction: Share of each class held out for validation when `root` has no `train/` subfolder.
        seed: Seed of that split.
        **kwargs: Options of `ImageClassificationDataModule` (batch size, transforms, ...).
    """

    def __init__(self, root: str | Path, *, val_fraction: float = 0.1, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction {val_fraction} must be in (0, 1), e.g. 0.1")
        self.root = Path(root).expanduser()
        self.val_fraction = val_fraction
        self.seed = seed
        self.save_hyperparameters(logger=False)

    def shard_identity(self) -> dict[str, Any]:
        """An ImageFolder tree: the options that split it (the folder's own path may differ where shards are read)."""
        return {"dataset": "imagefolder", "val_fraction": self.val_fraction, "seed": self.seed}

    def shard_sources(self) -> tuple[dict[str, list[RecordSource]], list[str]]:
        """Every split's image files, keyed by their path under `root`."""
        splits, classes = image_folder_splits(self.root, self.val_fraction, self.seed)
        sources = {
            split: image_folder_sources(dataset, indices, self.root) for split, (dataset, indices) in splits.items()
        }
        return sources, classes

    def _load(self) -> tuple[Dataset, Dataset, Dataset, list[str]]:
        splits, classes = image_folder_splits(self.root, self.val_fraction, self.seed)
        skip = self.skip_bad_files
        train = TransformedSubset(*splits["train"], self.train_transform, skip)
        val = TransformedSubset(*splits["val"], self.eval_transform, skip)
        test = TransformedSubset(*splits["test"], self.eval_transform, skip) if "test" in splits else val
        return train, val, test, classes


class CIFARDataModule(ImageClassificationDataModule):
    """CIFAR-10/100 from torchvision's on-disk format under `root`; val = `val_size` training images chosen by seed.

    Args:
        root: Folder holding `cifar-10-batches-py/` or `cifar-100-python/`.
        name: "cifar10" or "cifar100".
        download: Download into `root` when missing (in `prepare_data`, i.e. once per node).
        val_size: Training images held out for validation; the official test set is the test split.
        seed: Seed of the validation split.
        **kwargs: Options of `ImageClassificationDataModule`; `img_size` defaults to 32 here.
    """

    def __init__(
        self,
        root: str | Path,
        name: str = "cifar10",
        *,
        download: bool = False,
        val_size: int = 5000,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        if name not in ("cifar10", "cifar100"):
            raise ValueError(f"name {name!r} is not a CIFAR dataset; choose 'cifar10' or 'cifar100'")
        if val_size < 1:
            raise ValueError(f"val_size must be >= 1, got {val_size}")
        kwargs.setdefault("img_size", 32)
        kwargs.setdefault("num_classes", 10 if name == "cifar10" else 100)
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.name = name
        self.download = download
        self.val_size = val_size
        self.seed = seed
        self.classes = list(CIFAR10_CLASSES) if name == "cifar10" else None
        self._dataset_cls = CIFAR10Dataset if name == "cifar10" else CIFAR100Dataset
        self.save_hyperparameters(logger=False)

    def prepare_data(self) -> None:
        """Download the dataset if `download=True` (Lightning calls this on one process per node; not for shards)."""
        if self.download and self.format == "files":
            for train in (True, False):
                self._dataset_cls(self.root, train=train, download=True)

    def _splits(self) -> tuple[Any, Any, dict[str, list[int] | None]]:
        """The train and test files and the indices of each split into them (val is drawn from train by seed)."""
        if not (self.root / self._dataset_cls.base_folder).is_dir():
            pretty = "CIFAR-10" if self.name == "cifar10" else "CIFAR-100"
            raise FileNotFoundError(f"{pretty} not found at {self.root}; pass data.download=true to download it")
        train_full = self._dataset_cls(self.root, train=True)
        test_full = self._dataset_cls(self.root, train=False)
        n = len(train_full)
        if self.val_size >= n:
            raise ValueError(f"val_size {self.val_size} must be smaller than the {n} training images; lower val_size")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        indices = {"train": sorted(perm[self.val_size :]), "val": sorted(perm[: self.val_size]), "test": None}
        return train_full, test_full, indices

    def _load(self) -> tuple[Dataset, Dataset, Dataset, list[str]]:
        train_full, test_full, indices = self._splits()
        train = TransformedSubset(train_full, indices["train"], self.train_transform)
        val = TransformedSubset(train_full, indices["val"], self.eval_transform)
        test = TransformedSubset(test_full, indices["test"], self.eval_transform)
        return train, val, test, list(train_full.classes)

    def shard_identity(self) -> dict[str, Any]:
        """CIFAR-10/100 and the options that draw the validation split."""
        return {"dataset": self.name, "val_size": self.val_size, "seed": self.seed}

    def shard_sources(self) -> tuple[dict[str, list[RecordSource]], list[str]]:
        """Every split's images as lossless PNGs, keyed `<train|test>/<index in that file set>`."""
        train_full, test_full, indices = self._splits()
        sources: dict[str, list[RecordSource]] = {}
        for split, full, part in (
            ("train", train_full, "train"),
            ("val", train_full, "train"),
            ("test", test_full, "test"),
        ):
            chosen = range(len(full)) if indices[split] is None else indices[split]
            sources[split] = [ArrayImageSource(f"{part}/{i}", int(full.targets[i]), full.data[i]) for i in chosen]
        return sources, list(train_full.classes)


class ShapesDataModule(ImageFolderDataModule):
    """The built-in "shapes" demo set: generated once under `root/shapes`, then read as an ImageFolder tree.

    Args:
        root: Data directory; the dataset lives in `root/shapes`.
        img_size: Image side of the generated images and of the model input.
        generate: Generate the data when missing; if False, a missing folder is an error.
        train_per_class: Generated training images per class.
        val_per_class: Generated validation images per class.
        test_per_class: Generated test images per class.
        seed: Seed of the generated images.
        size_range: Shape diameter as fractions (low, high) of the image side; lower = harder.
        noise: Std of the Gaussian pixel noise (0-255 scale); higher = harder.
        **kwargs: Options of `ImageClassificationDataModule`.
    """

    def __init__(
        self,
        root: str | Path,
        img_size: int = 32,
        *,
        generate: bool = True,
        train_per_class: int = 600,
        val_per_class: int = 100,
        test_per_class: int = 100,
        seed: int = 0,
        size_range: Sequence[float] = DEFAULT_SIZE_RANGE,
        noise: float = DEFAULT_NOISE,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("num_classes", len(SHAPE_CLASSES))
        super().__init__(Path(root).expanduser() / "shapes", img_size=img_size, **kwargs)
        self.data_root = Path(root).expanduser()
        self.generate = generate
        self.gen_kwargs = dict(
            img_size=img_size,
            train_per_class=train_per_class,
            val_per_class=val_per_class,
            test_per_class=test_per_class,
            seed=seed,
            size_range=tuple(map(float, size_range)),
            noise=float(noise),
        )
        self.classes = list(SHAPE_CLASSES)
        self.save_hyperparameters(logger=False)

    def prepare_data(self) -> None:
        """Generate the dataset if it is missing (write-once and process-safe, see `ensure_dataset`); not for shards."""
        if self.generate and self.format == "files":
            make_shapes(self.data_root, **self.gen_kwargs)

    def shard_identity(self) -> dict[str, Any]:
        """The generator's version and settings: they fix every image."""
        return {"dataset": "shapes", "generator": GENERATOR_VERSION, **self.gen_kwargs}

    def shard_sources(self) -> tuple[dict[str, list[RecordSource]], list[str]]:
        """The generated image files (generated first if missing), keyed by their path under `root/shapes`."""
        self._ensure_generated()
        return super().shard_sources()

    def _load(self) -> tuple[Dataset, Dataset, Dataset, list[str]]:
        self._ensure_generated()
        return super()._load()

    def _ensure_generated(self) -> None:
        # prepare_data may have run in another process (DDP rank 0), or not at all (plain use outside a Trainer):
        # make_shapes returns at once when the finished tree is there, and checks that it matches our settings.
        if self.generate:
            make_shapes(self.data_root, **self.gen_kwargs)
        elif not self.root.is_dir():
            raise FileNotFoundError(f"shapes demo data not found at {self.root}; pass data.generate=true to create it")
