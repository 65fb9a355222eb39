"""The modality-free half of a classification datamodule: class bookkeeping, split checks and loaders."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
from torch.utils.data import DataLoader, Dataset

from mmattn.data.resumable import ResumableDataLoader, order_seed, train_loader
from mmattn.data.shard_data import DATA_FORMATS, StreamedData, check_format

__all__ = ["DATA_FORMATS", "ClassificationDataModule"]


class ClassificationDataModule(L.LightningDataModule, ABC):
    """Base of every `(inputs, labels)` datamodule that `mmattn.lit.ClassificationModule` trains on.

    Subclasses implement `_load()`, returning the train/val/test datasets and the class names; this class checks them
    against `num_classes` and builds the loaders. `loader_class` and `collate_fn` let a modality use its own loader.

    Args:
        batch_size: Samples per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        pin_memory: Pin host memory (helps GPU training).
        persistent_workers: Keep workers alive between epochs (only when `num_workers > 0`).
        drop_last: Drop the last incomplete training batch (batch-wise Mixup needs equal, even batches).
        num_classes: Expected number of classes; checked against the data in `setup()`.
        format: "files" reads the dataset's files; "shards" reads the shard folder `shards` written from them by
            `mmattn-shards` (the subclass must implement `mmattn.data.shard_data.StreamedData`).
        shards: The shard folder or object-store URL (`s3://...`), for format "shards".

    Raises:
        ValueError: A non-positive `batch_size` or negative `num_workers`, an unknown `format` or one this data
            cannot read; in `setup()`, a class-count mismatch or an empty split.
    """

    loader_class: ClassVar[type[ResumableDataLoader]] = ResumableDataLoader
    collate_fn: ClassVar[Callable[[list[Any]], Any] | None] = None

    def __init__(
        self,
        *,
        batch_size: int,
        num_workers: int,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        drop_last: bool = True,
        num_classes: int | None = None,
        format: str = "files",
        shards: str | Path | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.shards = check_format(self, format, shards, StreamedData)
        self.format = format
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.drop_last = drop_last
        self.num_classes = num_classes
        self.classes: list[str] | None = None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @abstractmethod
    def _load(self) -> tuple[Dataset, Dataset, Dataset | None, list[str]]:
        """Return (train, val, test or None, class names); a missing test split is tested on val."""

    def setup(self, stage: str | None = None) -> None:
        """Load the datasets (once) and set `classes` and `num_classes`."""
        if self.train_set is not None:
            return
        train, val, test, classes = self._load_shards() if self.format == "shards" else self._load()
        if self.num_classes is not None and self.num_classes != len(classes):
            raise ValueError(
                f"num_classes is {self.num_classes} but the data has {len(classes)} classes; "
                f"set num_classes to {len(classes)} (or leave it unset)"
            )
        for split, dataset in (("train", train), ("val", val), ("test", test)):
            if dataset is not None and len(dataset) == 0:  # type: ignore[arg-type]
                raise ValueError(f"the {split} split of {type(self).__name__} is empty; check the data folder")
        self.classes, self.num_classes = list(classes), len(classes)
        self.train_set, self.val_set, self.test_set = train, val, val if test is None else test

    def _load_shards(self) -> tuple[Dataset, Dataset, Dataset | None, list[str]]:
        from mmattn.data.streaming import load_shard_splits

        # Lightning's seed_everything exports the run's seed; shards then shuffle as reproducibly as files do.
        seed = order_seed()
        splits, classes = load_shard_splits(
            str(self.shards),
            self,
            seed=seed,
            drop_last=self.drop_last,
            classes=self.classes,  # type: ignore[arg-type]
        )
        return splits["train"], splits["val"], splits.get("test"), classes

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders are requested")
        if self.format == "shards":
            return self._shard_loader(dataset)
        options = {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
            "collate_fn": type(self).collate_fn,
        }
        if train:
            return train_loader(
                dataset,
                getattr(self, "trainer", None),
                batch_size=self.batch_size,
                drop_last=self.drop_last,
                loader_class=self.loader_class,
                **options,
            )
        return self.loader_class(dataset, batch_size=self.batch_size, **options)

    def _shard_loader(self, dataset: Dataset) -> DataLoader:
        from mmattn.data.skipping import SkippingDataLoader
        from mmattn.data.streaming import shard_loader

        # litdata hands out whole batches per rank and worker (the dataset's drop_last), so no DataLoader drop_last.
        skipping = issubclass(self.loader_class, SkippingDataLoader)
        return shard_loader(
            dataset,  # type: ignore[arg-type]
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=type(self).collate_fn,
            skipping_kind=self.loader_class.kind if skipping else None,  # type: ignore[attr-defined]
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (training transforms)."""
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches (evaluation transforms)."""
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches (evaluation transforms)."""
        return self._loader(self.test_set, train=False)
