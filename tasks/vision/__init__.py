"""Vision adapter: patch embedding, ViT, image datamodules, the built-in shapes demo."""

from .datamodules import CIFARDataModule, ImageClassificationDataModule, ImageFolderDataModule, ShapesDataModule
from .shapes import SHAPE_CLASSES, make_shapes
from .vit import ViT

__all__ = [
    "ViT",
    "CIFARDataModule",
    "ImageClassificationDataModule",
    "ImageFolderDataModule",
    "ShapesDataModule",
    "SHAPE_CLASSES",
    "make_shapes",
]
