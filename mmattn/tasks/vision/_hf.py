"""Import of transformers `ViTForImageClassification` instances: read their config, convert their state dict.

HF's ViT is the pre-norm ViT with a class token (`layernorm_before` / `layernorm_after` in each layer, a final
`layernorm`, the classifier on the class token's output), separate q/k/v projections (packed here into `qkv`) and
LayerNorm epsilon 1e-12 by default.

Other image sizes: transformers resamples the position table only when called with `interpolate_pos_encoding=True`,
bicubically without antialiasing; our models resample at run time as timm does (bicubic with antialiasing), which gives
other numbers. `from_hf(model, img_size=...)` therefore resamples the table once, on import, by transformers' rule:
the result equals transformers' `model(x, interpolate_pos_encoding=True)` at that size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmattn.models.hf_import import build_strict, convert_vit_style
from mmattn.nn import resample_pos_embed

__all__ = ["checkpoint_filter_fn", "hf_vit_config", "vit_from_hf"]

_HF_PREFIX = "vit."
_RENAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed.weight",
    "embeddings.patch_embeddings.projection.": "embed.proj.",
    "layernorm.": "encoder.norm.",
    "classifier.": "head.",
}


def _pair(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def hf_vit_config(model: nn.Module) -> dict[str, Any]:
    """The `ViT(...)` keyword arguments equivalent to a transformers `ViTForImageClassification`.

    Raises:
        ValueError: Not a ViT classification model, or it uses a feature we do not implement.
    """
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "vit" or not hasattr(model, "classifier"):
        raise ValueError(f"from_hf expects a transformers ViTForImageClassification, got {type(model).__name__}")
    if config.hidden_act != "gelu":
        raise ValueError(f"HF ViT uses hidden_act={config.hidden_act!r}; mmattn's ViT implements exact 'gelu' only")
    dim, width = config.hidden_size, config.intermediate_size
    if int(dim * (width / dim)) != width:
        raise ValueError(f"HF ViT intermediate_size {width} is not reachable from hidden_size {dim} by a float ratio")
    return {
        "img_size": _pair(config.image_size),
        "patch_size": _pair(config.patch_size),
        "in_chans": config.num_channels,
        "num_classes": model.classifier.out_features if isinstance(model.classifier, nn.Linear) else 0,
        "dim": dim,
        "depth": config.num_hidden_layers,
        "num_heads": config.num_attention_heads,
        "mlp_ratio": width / dim,
        "qkv_bias": config.qkv_bias,
        "class_token": True,
        "pool": "cls",
        "pos_embed": "learned",
        "fc_norm": False,
        "drop_rate": config.hidden_dropout_prob,
        "attn_drop_rate": config.attention_probs_dropout_prob,
        "norm_eps": config.layer_norm_eps,
    }


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Turn an HF ViT state dict into one `model` loads; ours passes through unchanged.

    An HF table on another grid (`model.pos_embed.checkpoint_grid_size`, set by `vit_from_hf`) is resampled here by
    HF's rule (bicubic, no antialiasing), before loading; the table's own resampling on load would use ours.
    """
    if not any(k.startswith(_HF_PREFIX) for k in state_dict):
        return state_dict
    state_dict = convert_vit_style(state_dict, prefix=_HF_PREFIX, renames=_RENAMES, family="ViT")
    hf_grid = getattr(model.pos_embed, "checkpoint_grid_size", None)
    grid = tuple(model.embed.grid_size)
    if hf_grid is not None and tuple(hf_grid) != grid:
        state_dict["pos_embed.weight"] = resample_pos_embed(
            state_dict["pos_embed.weight"], grid, tuple(hf_grid), num_prefix_tokens=1, antialias=False
        )
    return state_dict


def vit_from_hf(cls: type, model: nn.Module, *, img_size: int | tuple[int, int] | None = None) -> nn.Module:
    """Build `cls` from an HF ViT and load its weights strictly; another `img_size` resamples positions as HF does."""
    config = hf_vit_config(model)
    hf_grid = None
    if img_size is not None and _pair(img_size) != config["img_size"]:
        hf_grid = tuple(s // p for s, p in zip(config["img_size"], config["patch_size"]))
        config["img_size"] = _pair(img_size)

    def name_grid(ours: nn.Module) -> None:
        ours.pos_embed.checkpoint_grid_size = hf_grid

    return build_strict(cls, config, model, checkpoint_filter_fn, name_grid)
