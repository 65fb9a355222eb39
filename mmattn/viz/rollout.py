"""Attention rollout (Abnar & Zuidema, 2020): how much each output token draws on each input token through all layers.

Each layer's attention, averaged (or max-ed) over heads, gets the residual connection as an identity term,
A_hat = 0.5 * A + 0.5 * I, rows renormalised; the rollout is the product A_hat_L ... A_hat_1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

__all__ = ["attention_rollout"]


def attention_rollout(
    maps: Sequence[Tensor], *, head_fusion: Literal["mean", "max", "min"] = "mean", residual: bool = True
) -> Tensor:
    """Roll attention out through the layers, first to last: weights [B, H, N, N] per layer -> [B, N, N].

    Row i of the result says how output token i mixes the input tokens (rows sum to 1).

    Args:
        maps: Self-attention weights of consecutive layers, in forward order (e.g. from `capture_attention`).
        head_fusion: How the heads of a layer are combined.
        residual: Add the identity for the residual connection (the paper's 0.5 A + 0.5 I).

    Raises:
        ValueError: No maps, maps of different shapes, non-square maps, or an unknown head fusion.
    """
    if not maps:
        raise ValueError("attention_rollout needs the attention weights of at least one layer")
    shape = maps[0].shape
    if len(shape) != 4 or shape[-1] != shape[-2] or any(m.shape != shape for m in maps):
        got = [tuple(m.shape) for m in maps]
        raise ValueError(f"attention_rollout needs self-attention weights [B, H, N, N] of one shape, got {got}")
    fuse = {"mean": lambda a: a.mean(1), "max": lambda a: a.amax(1), "min": lambda a: a.amin(1)}
    if head_fusion not in fuse:
        raise ValueError(f"head_fusion must be one of {sorted(fuse)}, got {head_fusion!r}")
    eye = torch.eye(shape[-1], dtype=torch.float64, device=maps[0].device)
    rollout = eye.expand(shape[0], -1, -1)
    for weights in maps:
        a = fuse[head_fusion](weights.double())
        if residual:
            a = 0.5 * a + 0.5 * eye
        a = a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        rollout = a @ rollout
    return rollout.to(maps[0].dtype)
