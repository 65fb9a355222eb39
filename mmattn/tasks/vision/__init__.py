"""Vision adapter: patch embedding, ViT, image datamodules, the built-in shapes demo."""

from .data import ImageDecodeError, read_image
from .datamodules import CIFARDataModule, ImageClassificationDataModule, ImageFolderDataModule, ShapesDataModule
from .embed import ImagePatchEmbed, ImageRenderer
from .pretrained import vit_from_timm_hub
from .shapes import SHAPE_CLASSES, make_shapes
from .vit import ViT

__all__ = [
    "ImageDecodeError",
    "ImagePatchEmbed",
    "ImageRenderer",
    "read_image",
    "ViT",
    "vit_from_timm_hub",
    "CIFARDataModule",
    "ImageClassificationDataModule",
    "ImageFolderDataModule",
    "ShapesDataModule",
    "SHAPE_CLASSES",
    "make_shapes",
]
