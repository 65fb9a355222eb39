"""Vision adapter: patch embedding, ViT, image datamodules, the built-in shapes demo."""

from .vit import ViT

__all__ = ["ViT"]
