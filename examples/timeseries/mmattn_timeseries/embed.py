"""The modality's input embedding: a sensor window [B, channels, T] -> a token grid [B, 1, T / patch_len, dim]."""

from __future__ import annotations

from torch import Tensor, nn


class SensorPatchEmbed(nn.Module):
    """Cut a multichannel window into non-overlapping time patches and project each to `dim` (a strided Conv1d).

    `mmattn.models.EncoderClassifier` takes any embedding that returns a token grid [B, h, w, D] and says its
    `grid_size`; a sequence is a 1 x (T / patch_len) grid.

    Args:
        in_chans: Sensor channels (3 for a 3-axis accelerometer).
        seq_len: Samples per window.
        patch_len: Samples per token.
        dim: Token width.

    Raises:
        ValueError: `seq_len` not divisible by `patch_len`, or an input of another shape.
    """

    def __init__(self, in_chans: int, seq_len: int, patch_len: int, dim: int) -> None:
        super().__init__()
        if seq_len % patch_len:
            raise ValueError(f"seq_len {seq_len} is not divisible by patch_len {patch_len}")
        self.in_chans, self.seq_len = in_chans, seq_len
        self.grid_size = (1, seq_len // patch_len)
        self.proj = nn.Conv1d(in_chans, dim, kernel_size=patch_len, stride=patch_len)

    def forward(self, x: Tensor) -> Tensor:
        """Tokens [B, 1, T / patch_len, dim] of windows x [B, in_chans, seq_len]."""
        if x.ndim != 3 or x.shape[1:] != (self.in_chans, self.seq_len):
            raise ValueError(
                f"SensorPatchEmbed expects windows [batch, {self.in_chans}, {self.seq_len}], got {tuple(x.shape)}"
            )
        return self.proj(x).transpose(1, 2).unsqueeze(1)
