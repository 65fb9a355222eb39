"""The modality's side of mmattn's contract: a sensor window [B, channels, T] -> a sequence of patch tokens, and how
a window is drawn (the channels as curves, attention as a band over time)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmattn.modality import InputEmbedding, Renderer, TokenLayout, Tokens
from mmattn.viz.heat import overlay_heat


class SensorRenderer:
    """Draws a window [channels, T] as one curve per channel, with the token heat as a band over time."""

    def draw(
        self, ax: Any, example: Tensor, heat: Tensor | None, layout: TokenLayout, *, tokenizer: Any = None
    ) -> None:
        """Curves on `ax`, with `heat` [T / patch_len] behind them when given."""
        series = example.detach().float().cpu().numpy()
        low, high = float(series.min()), float(series.max())
        if heat is not None:
            overlay_heat(ax, heat, layout, (0, series.shape[-1], low, high), origin="lower", alpha=0.4)
        for channel in series:
            ax.plot(channel, lw=0.8)
        ax.set_xlim(0, series.shape[-1])
        ax.set_xlabel("time step", fontsize=8)


class SensorPatchEmbed(InputEmbedding):
    """Cut a multichannel window into non-overlapping time patches and project each to `dim` (a strided Conv1d).

    A sensor window is a sequence: `layout` is one row of `seq_len / patch_len` tokens, which the model families
    give positions (they carry none here).

    Args:
        in_chans: Sensor channels (3 for a 3-axis accelerometer).
        seq_len: Samples per window.
        patch_len: Samples per token.
        dim: Token width.

    Raises:
        ValueError: `seq_len` not divisible by `patch_len`, or an input of another shape.
    """

    modality = "sensor window"

    def __init__(self, in_chans: int, seq_len: int, patch_len: int, dim: int) -> None:
        super().__init__()
        if seq_len % patch_len:
            raise ValueError(f"seq_len {seq_len} is not divisible by patch_len {patch_len}")
        self.in_chans, self.seq_len, self.dim = in_chans, seq_len, dim
        self.proj = nn.Conv1d(in_chans, dim, kernel_size=patch_len, stride=patch_len)

    @property
    def layout(self) -> TokenLayout:
        """One row of seq_len / patch_len tokens."""
        return TokenLayout.sequence(self.seq_len // self.proj.stride[0])

    def embed(self, x: Tensor) -> Tokens:
        """Tokens [B, T / patch_len, dim] of windows x [B, in_chans, seq_len] (no padding)."""
        if x.ndim != 3 or x.shape[1:] != (self.in_chans, self.seq_len):
            raise ValueError(
                f"SensorPatchEmbed expects windows [batch, {self.in_chans}, {self.seq_len}], got {tuple(x.shape)}"
            )
        tokens = self.proj(x).transpose(1, 2)
        return Tokens(tokens, None, TokenLayout.sequence(tokens.shape[1]))

    def example_input(self, batch_size: int) -> Tensor:
        """Random windows [batch_size, in_chans, seq_len]."""
        return torch.randn(batch_size, self.in_chans, self.seq_len)

    def renderer(self) -> Renderer:
        """Draws the channels as curves."""
        return SensorRenderer()
