"""What the importers of foreign models share (transformers' GPT-2, Marian, ViT and AST; timm's ViT): activation
names, feed-forward widths, strict key placement, the renaming of transformers' ViT-style encoders, strict loading."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["build_strict", "convert_vit_style", "hf_activation", "mlp_ratio", "place", "unsupported"]

# The layers of transformers' ViT-style encoders (ViT, AST): attention with separate q/k/v projections, pre-norm.
_VIT_STYLE_LAYER = {
    "attention.o_proj.": "attn.out_proj.",
    "layernorm_before.": "norm1.",
    "layernorm_after.": "norm2.",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
}

# transformers' ACT2FN names whose function one of ours computes (up to float rounding).
_HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


def unsupported(family: str, what: str, fix: str) -> ValueError:
    """A ValueError naming the feature of a transformers model that mmattn lacks, and what to do instead."""
    return ValueError(f"transformers {family} uses {what}, which mmattn does not implement; {fix}")


def hf_activation(family: str, name: str) -> str:
    """Our `activation` name for a transformers `activation_function` / `hidden_act`.

    Raises:
        ValueError: An activation we do not implement.
    """
    if name not in _HF_ACTIVATIONS:
        raise unsupported(family, f"activation {name!r}", f"use one of {sorted(_HF_ACTIVATIONS)}")
    return _HF_ACTIVATIONS[name]


def mlp_ratio(family: str, dim: int, width: int) -> float:
    """`mlp_ratio` giving a feed-forward of exactly `width` channels (our layers build `int(dim * mlp_ratio)`).

    Raises:
        ValueError: No float ratio reproduces `width` (never for integer ratios).
    """
    ratio = width / dim
    if int(dim * ratio) != width:
        raise unsupported(
            family, f"a feed-forward width {width} for dim {dim}", "use a width that is a multiple of dim"
        )
    return ratio


def place(out: dict[str, torch.Tensor], key: str, value: torch.Tensor, source: str) -> None:
    """Put `value` at `key`; a key reached twice (tied weights under two names) must carry the same tensor.

    Raises:
        ValueError: Two different tensors claim the same place.
    """
    if key in out and not torch.equal(out[key], value):
        raise ValueError(f"{source} and another tensor both map to {key!r} but differ; untie them or drop one")
    out[key] = value


def convert_vit_style(
    state_dict: Mapping[str, torch.Tensor], *, prefix: str, renames: Mapping[str, str], family: str
) -> dict[str, torch.Tensor]:
    """Rename a transformers (>= 5) ViT-style state dict (ViT, AST) to our `EncoderClassifier` names.

    The layers' q/k/v projections are packed into one `qkv`; keys outside the layers go through `renames`
    (`{their prefix: ours}`), after `prefix` (e.g. "vit.") is dropped.

    Raises:
        ValueError: A key with no counterpart, naming it.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for source, value in state_dict.items():
        key = source.removeprefix(prefix)
        mapping, target = renames, ""
        if key.startswith("layers."):
            _, index, key = key.split(".", 2)
            if key.startswith("attention.") and key.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                _, proj, param = key.split(".")
                qkv.setdefault((int(index), param), {})[proj[0]] = value
                continue
            mapping, target = _VIT_STYLE_LAYER, f"encoder.layers.{index}."
        old = next((old for old in mapping if key.startswith(old)), None)
        if old is None:
            raise ValueError(f"HF {family} key {source!r} has no counterpart in mmattn's {family} (transformers >= 5)")
        out[target + mapping[old] + key[len(old) :]] = value
    for (index, param), parts in sorted(qkv.items()):
        out[f"encoder.layers.{index}.attn.qkv.{param}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def build_strict(
    cls: type,
    config: Mapping[str, Any],
    reference: nn.Module,
    filter_fn: Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]],
    before_load: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """`cls(**config)` with `reference`'s weights, every tensor in its place (`filter_fn` renames them), in the
    reference's dtype; `before_load(model)` runs first (e.g. to name a position table's source grid)."""
    ours = cls(**config)
    if before_load is not None:
        before_load(ours)
    ours.load_state_dict(filter_fn(reference.state_dict(), ours), strict=True)
    return ours.to(next(reference.parameters()).dtype)
