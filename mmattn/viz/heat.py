"""Heat maps over tokens, for modality renderers: one value per token of a `TokenLayout`, drawn over an input."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from mmattn.modality import TokenLayout

__all__ = ["heat_grid", "overlay_heat"]


def heat_grid(heat: Tensor, layout: TokenLayout) -> Tensor:
    """Token values [N] (row-major) as the layout's grid [rows, cols] of floats on the CPU.

    Raises:
        ValueError: `heat` does not hold one value per token of the layout.
    """
    if heat.numel() != layout.num_tokens:
        raise ValueError(f"{heat.numel()} heat values for a {layout.rows} x {layout.cols} token layout")
    return heat.detach().float().cpu().reshape(layout.rows, layout.cols)


def overlay_heat(
    ax: Any,
    heat: Tensor,
    layout: TokenLayout,
    extent: tuple[float, float, float, float],
    *,
    origin: str = "upper",
    alpha: float = 0.5,
    cmap: str = "jet",
) -> None:
    """Draw token values over `extent` (left, right, bottom, top) of an axes, interpolated and half-transparent."""
    ax.imshow(
        heat_grid(heat, layout).numpy(),
        cmap=cmap,
        alpha=alpha,
        extent=extent,
        origin=origin,
        aspect="auto",
        interpolation="bilinear",
    )
