"""The vision task's shard records: image files written as their bytes (CIFAR's arrays as lossless PNGs), decoded
back by `ImageRecordDecoder` with the same decoder and transforms as the file datasets.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torchvision.datasets import ImageFolder

from mmattn.data.shards import FileSource, Record, RecordSource
from mmattn.data.skipping import BadFile

from .data import decode_image, transform_item

__all__ = ["ArrayImageSource", "ImageRecordDecoder", "image_folder_sources"]


@dataclass(frozen=True)
class ArrayImageSource(RecordSource):
    """An image held as an array (CIFAR's pickled batches), stored as a lossless PNG: decoded back, it is the same
    RGB image, so the transforms see the same pixels as from the array."""

    key: str
    label: int
    pixels: np.ndarray

    def read(self) -> bytes:
        """The PNG encoding of the pixels."""
        out = io.BytesIO()
        Image.fromarray(self.pixels).save(out, format="PNG")
        return out.getvalue()


class ImageRecordDecoder:
    """A shard record -> `(transform(image), label)` (or a `BadFile`): the file datasets' decoder and transform."""

    def __init__(self, transform: Callable | None, skip_bad_files: bool = False) -> None:
        self.transform = transform
        self.skip_bad_files = skip_bad_files

    def __call__(self, record: Record) -> tuple[Any, int] | BadFile:
        """Decode and transform one record."""
        return transform_item(
            lambda: (decode_image(record.data, record.name), record.label), self.transform, self.skip_bad_files
        )


def image_folder_sources(dataset: ImageFolder, indices: Sequence[int] | None, root: Path) -> list[RecordSource]:
    """The files of an ImageFolder split (all, or `indices`) as shard sources keyed by their path under `root`."""
    chosen = range(len(dataset.samples)) if indices is None else indices
    out: list[RecordSource] = []
    for i in chosen:
        path, target = dataset.samples[i]
        out.append(FileSource(Path(os.path.relpath(path, root)).as_posix(), int(target), str(path)))
    return out
