"""ViTs that start from pretrained weights: a timm model name, fetched through `timm.create_model(pretrained=True)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmattn.models.pretrained import load_pretrained, record_init_config

from ._timm import checkpoint_filter_fn, timm_vit_config
from .vit import ViT

__all__ = ["vit_from_timm_hub"]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def vit_from_timm_hub(
    name: str,
    *,
    num_classes: int,
    img_size: int | None = None,
    checkpoint_path: str | Path | None = None,
    **overrides: Any,
) -> ViT:
    """Our ViT with the pretrained weights of timm's `name`, for `num_classes` classes at `img_size`.

    timm fetches the weights (the Hugging Face Hub cache) or reads `checkpoint_path`, a local file of them. The head
    is new when the class count differs and the position table is resampled for another image size; what loaded,
    resampled or stayed new is logged (`mmattn.models.pretrained.load_pretrained`). The model records its
    architecture (`init_config`), so a run's checkpoints rebuild it without fetching the weights again.

    Args:
        name: A timm ViT/DeiT name with pretrained weights, e.g. "vit_small_patch16_224.augreg_in21k_ft_in1k".
        num_classes: Classes of the new task.
        img_size: Image side of the new task (None = the pretrained one).
        checkpoint_path: A local file of timm weights instead of a download.
        **overrides: Other `ViT` arguments that do not change the weights' shapes (drop_path_rate, ...).

    Raises:
        ValueError: `name` is no ViT mmattn implements.
    """
    import timm

    overlay = {"file": str(checkpoint_path), "source": ""} if checkpoint_path is not None else None
    reference = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
    config = {k: _plain(v) for k, v in timm_vit_config(reference).items()}
    config.update(num_classes=num_classes, **({"img_size": img_size} if img_size is not None else {}), **overrides)
    model = ViT(**config)
    load_pretrained(model, checkpoint_filter_fn(reference.state_dict(), model), source=f"timm {name}")
    return record_init_config(model, "mmattn.tasks.vision.ViT", **config)
