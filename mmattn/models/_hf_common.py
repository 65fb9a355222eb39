"""Small pieces shared by the transformers importers: activation names, feed-forward widths, strict key placement."""

from __future__ import annotations

import torch

__all__ = ["hf_activation", "mlp_ratio", "place", "unsupported"]

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
