"""Residual-branch helpers: stochastic depth and per-channel scaling."""

import torch
from torch import Tensor, nn

__all__ = ["DropPath", "LayerScale"]


class DropPath(nn.Module):
    """Stochastic depth (Huang et al., 2016): drop a residual branch for whole samples, rescale the kept ones."""

    def __init__(self, p: float = 0.0, *, scale_by_keep: bool = True) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {p}")
        self.p = p
        self.scale_by_keep = scale_by_keep

    def forward(self, x: Tensor) -> Tensor:
        """Zero the branch `x` [B, ...] for a random p of the samples while training."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * (mask / keep if self.scale_by_keep else mask)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerScale(nn.Module):
    """Learned per-channel scale of a residual branch (Touvron et al., 2021, CaiT), initialised small."""

    def __init__(self, dim: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        """Scale the channels of x [..., dim]."""
        return x * self.gamma
