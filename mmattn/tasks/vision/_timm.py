"""Import of timm `VisionTransformer` instances: read their configuration, convert their state dict."""

from typing import Any

import torch
from torch import nn

from mmattn.models.hf_import import build_strict

__all__ = ["checkpoint_filter_fn", "timm_vit_config", "vit_from_timm"]


def _unsupported(what: str) -> ValueError:
    return ValueError(f"timm model uses {what}, which mmattn's ViT does not implement; pick a plain ViT/DeiT variant")


def timm_vit_config(model: nn.Module) -> dict[str, Any]:
    """The `ViT(...)` keyword arguments equivalent to a timm `VisionTransformer`.

    Raises:
        ValueError: The model uses a feature we do not implement (register tokens, attention pooling, ...).
    """
    from timm.layers import LayerScale as TimmLayerScale
    from timm.layers import Mlp as TimmMlp
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise ValueError(f"from_timm expects a timm VisionTransformer, got {type(model).__name__}")
    if getattr(model, "reg_token", None) is not None:
        raise _unsupported("register tokens")
    if getattr(model, "no_embed_class", False):
        raise _unsupported("no_embed_class (class token without position)")
    if getattr(model, "attn_pool", None) is not None or model.global_pool not in ("token", "avg"):
        raise _unsupported(f"global_pool={model.global_pool!r}")
    if not isinstance(model.norm_pre, nn.Identity):
        raise _unsupported("a pre-encoder norm (norm_pre)")
    if model.pos_embed is None:
        raise _unsupported("no absolute position embedding")
    pe = model.patch_embed
    if not isinstance(getattr(pe, "norm", nn.Identity()), nn.Identity):
        raise _unsupported("a norm inside the patch embedding")
    block = model.blocks[0]
    attn, mlp = block.attn, block.mlp
    if type(mlp) is not TimmMlp or type(mlp.act) is not nn.GELU or mlp.act.approximate != "none":
        raise _unsupported(f"a {type(mlp).__name__} feed-forward with {type(getattr(mlp, 'act', None)).__name__}")
    if not isinstance(getattr(attn, "norm", nn.Identity()), nn.Identity) or not isinstance(
        getattr(mlp, "norm", nn.Identity()), nn.Identity
    ):
        raise _unsupported("scale norms inside attention/MLP")
    if attn.proj.bias is None or mlp.fc1.bias is None:
        raise _unsupported("projection or MLP layers without bias")
    dim = model.embed_dim
    return {
        "img_size": tuple(pe.img_size),
        "patch_size": tuple(pe.patch_size),
        "in_chans": pe.proj.in_channels,
        "num_classes": model.num_classes,
        "dim": dim,
        "depth": len(model.blocks),
        "num_heads": attn.num_heads,
        "mlp_ratio": mlp.fc1.out_features / dim,
        "qkv_bias": attn.qkv.bias is not None,
        "qk_norm": not isinstance(attn.q_norm, nn.Identity),
        "class_token": model.cls_token is not None,
        "pool": "cls" if model.global_pool == "token" else "avg",
        "pos_embed": "learned",
        "layer_scale": 1.0 if isinstance(block.ls1, TimmLayerScale) else None,
        "fc_norm": not isinstance(model.fc_norm, nn.Identity),
        "norm_eps": block.norm1.eps,
    }


def _convert_timm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename timm ViT keys to ours; a pure function of the state dict."""
    renames = (
        ("patch_embed.", "embed."),
        ("blocks.", "encoder.layers."),
        (".attn.proj.", ".attn.out_proj."),
        (".ls1.gamma", ".res1.ls.gamma"),
        (".ls2.gamma", ".res2.ls.gamma"),
    )
    out = {}
    for key, value in state_dict.items():
        if key == "pos_embed":
            key = "pos_embed.weight"
        elif key.startswith("norm."):
            key = "encoder." + key
        for old, new in renames:
            key = key.replace(old, new)
        out[key] = value
    return out


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Turn a timm ViT state dict into one `model` loads; position tables of another grid are resampled on load."""
    if "pos_embed" in state_dict and "blocks.0.norm1.weight" in state_dict:
        state_dict = _convert_timm(state_dict)
    if isinstance(model.encoder.norm, nn.Identity):
        # A fc_norm model has no final encoder norm; timm keeps an Identity there, so no key to drop.
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("encoder.norm.")}
    return state_dict


def vit_from_timm(cls: type, model: nn.Module) -> nn.Module:
    """Build `cls` from a timm VisionTransformer and load its weights (strict: every tensor must find its place)."""
    return build_strict(cls, timm_vit_config(model), model, checkpoint_filter_fn)
