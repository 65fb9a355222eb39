"""Rotary position embedding (Su et al., 2021, RoFormer): rotate q/k channel pairs by position-dependent angles.

`RotaryEmbedding` rotates by 1-D positions; `RotaryEmbedding2D` rotates patch tokens by their (row, column) on a grid,
"axial" (half of the pairs by the column, half by the row) or "mixed" (learned per-head frequencies over both
coordinates; Heo et al., 2024, "Rotary Position Embedding for Vision Transformer").
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["RotaryAngles", "RotaryEmbedding", "RotaryEmbedding2D", "apply_rotary"]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor, *, interleaved: bool = True) -> Tensor:
    """Rotate channel pairs of x [..., N, d] by angles whose cos/sin [..., N, d/2] broadcast against it."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class RotaryAngles:
    """Rotation angles already placed at given positions: cos/sin [N, d/2] (or [H, N, d/2] per head).

    Attention calls it as `rope(q, k, offset=...)` like a `RotaryEmbedding`; the offset is ignored because the
    positions were chosen when the angles were built (a stack computes them once per forward for all its layers).
    """

    def __init__(self, cos: Tensor, sin: Tensor, *, interleaved: bool = True) -> None:
        self.cos, self.sin, self.interleaved = cos, sin, interleaved

    def __call__(self, q: Tensor, k: Tensor, *, offset: int = 0) -> tuple[Tensor, Tensor]:
        """Rotate queries and keys [B, H, N, d] that stand at this object's positions."""
        n = q.shape[-2]
        if self.cos.shape[-2] != n or k.shape[-2] != n:
            raise ValueError(
                f"rotary angles for {self.cos.shape[-2]} positions applied to {n} queries and {k.shape[-2]} keys"
            )
        return (
            apply_rotary(q, self.cos, self.sin, interleaved=self.interleaved),
            apply_rotary(k, self.cos, self.sin, interleaved=self.interleaved),
        )


class RotaryEmbedding(nn.Module):
    """Rotates pairs of channels of q and k [B, H, N, d] by angle p * theta_i, theta_i = base**(-2i/d).

    Because both q and k are rotated by their own positions, q_p . k_r depends only on p - r (relative position).

    Args:
        head_dim: Channels per head d (even).
        base: The wavelength base, 10000 in the paper.
        interleaved: Pairs (x[2i], x[2i+1]) as in the paper; False pairs (x[i], x[i + d/2]) (GPT-NeoX layout).
        max_len: Positions precomputed up front; longer inputs extend the table on the fly.

    Raises:
        ValueError: `head_dim` is odd.
    """

    def __init__(self, head_dim: int, *, base: float = 10000.0, interleaved: bool = True, max_len: int = 2048) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head_dim, got {head_dim}")
        self.head_dim = head_dim
        self.base = base
        self.interleaved = interleaved
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)
        self._build(max_len)

    def _build(self, length: int) -> None:
        positions = torch.arange(length, dtype=torch.float64, device=self.inv_freq.device)
        angles = positions[:, None] * self.inv_freq.double()[None, :]  # [L, d/2]
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def _tables(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """cos/sin rows [..., N, d/2] for integer `positions` [..., N]."""
        top = int(positions.max()) + 1 if positions.numel() else 0
        if top > self.cos.shape[0]:
            self._build(max(top, 2 * self.cos.shape[0]))
        return self.cos[positions], self.sin[positions]

    def angles(self, positions: Tensor) -> RotaryAngles:
        """The rotation for tokens at integer `positions` [N] (any increasing or not), for all layers of a stack."""
        cos, sin = self._tables(positions)
        return RotaryAngles(cos, sin, interleaved=self.interleaved)

    def angles_range(self, offset: int, n: int) -> RotaryAngles:
        """The rotation for tokens at positions offset..offset+n-1 (slices the table: no data-dependent shapes, so
        models export)."""
        if offset + n > self.cos.shape[0]:
            self._build(max(offset + n, 2 * self.cos.shape[0]))
        cos, sin = self.cos[offset : offset + n], self.sin[offset : offset + n]
        return RotaryAngles(cos, sin, interleaved=self.interleaved)

    def rotate(self, x: Tensor, *, offset: int = 0) -> Tensor:
        """Rotate `x` [..., N, d] whose first token sits at position `offset`."""
        angles = self.angles_range(offset, x.shape[-2])
        return apply_rotary(x, angles.cos, angles.sin, interleaved=self.interleaved)

    def forward(self, q: Tensor, k: Tensor, *, offset: int = 0) -> tuple[Tensor, Tensor]:
        """Rotate queries and keys that start at position `offset`."""
        return self.rotate(q, offset=offset), self.rotate(k, offset=offset)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}, interleaved={self.interleaved}"


def grid_coordinates(grid_size: tuple[int, int], *, device: torch.device | None = None) -> Tensor:
    """(row, column) of every cell of an h x w grid in row-major order, float [h*w, 2]."""
    h, w = grid_size
    rows, cols = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=1).float()


class RotaryEmbedding2D(nn.Module):
    """Rotary positions for patch tokens on a grid; prefix tokens (class, distillation) are left unrotated.

    "axial": the first d/4 channel pairs turn by column * theta_t, the others by row * theta_t, with
    theta_t = base**(-t / (d/4)) (RoPE-ViT's axial form; base 100 there). "mixed": pair t of head h turns by
    column * f_x[h, t] + row * f_y[h, t], frequencies learned per layer and head, initialised with the axial
    magnitudes in a random direction per head (RoPE-ViT's mixed form; base 10 there), so diagonals are expressible.
    Either way q_p . k_r depends only on the grid offset p - r.

    Args:
        head_dim: Channels per head (divisible by 4 for "axial", by 2 for "mixed").
        num_heads: Heads (the mixed form learns frequencies per head).
        mode: "axial" or "mixed".
        depth: Layers of the stack (the mixed form learns frequencies per layer).
        base: Frequency base.
        generator: Random source of the mixed form's initial directions (default: torch's).

    Raises:
        ValueError: An unknown mode or a head width the mode cannot split.
    """

    def __init__(
        self,
        head_dim: int,
        num_heads: int,
        *,
        mode: Literal["axial", "mixed"] = "axial",
        depth: int = 1,
        base: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("axial", "mixed"):
            raise ValueError(f"2-D rotary mode must be 'axial' or 'mixed', got {mode!r}")
        need = 4 if mode == "axial" else 2
        if head_dim % need:
            raise ValueError(f"{mode} 2-D rotary needs head_dim divisible by {need}, got {head_dim}")
        self.head_dim, self.num_heads, self.mode, self.depth = head_dim, num_heads, mode, depth
        self.base = (100.0 if mode == "axial" else 10.0) if base is None else base
        if mode == "axial":
            quarter = head_dim // 4
            inv_freq = self.base ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
            self.register_buffer("inv_freq", inv_freq.float(), persistent=False)
            self.freqs = None
        else:
            pairs = head_dim // 2
            magnitude = self.base ** (-torch.arange(pairs, dtype=torch.float64) / pairs)
            direction = torch.rand(depth, num_heads, 1, dtype=torch.float64, generator=generator) * 2 * math.pi
            # [depth, H, d/2, 2]: frequency along (row, column) for every pair.
            freqs = torch.stack([magnitude * direction.sin(), magnitude * direction.cos()], dim=-1)
            self.freqs = nn.Parameter(freqs.float())

    def angles(
        self, grid_size: tuple[int, int], *, num_prefix_tokens: int = 0, device: torch.device | None = None
    ) -> list[RotaryAngles]:
        """One `RotaryAngles` per layer for P prefix tokens followed by an h x w grid in row-major order."""
        coords = grid_coordinates(tuple(grid_size), device=device)  # [N, 2] (row, column)
        if self.mode == "axial":
            by_col = coords[:, 1:] * self.inv_freq
            by_row = coords[:, :1] * self.inv_freq
            theta = torch.cat([by_col, by_row], dim=-1)  # [N, d/2]
            layers = [self._pad(theta, num_prefix_tokens)] * self.depth
        else:
            theta = torch.einsum("nc,lhtc->lhnt", coords, self.freqs)  # [depth, H, N, d/2]
            layers = [self._pad(t, num_prefix_tokens) for t in theta.unbind(0)]
        return [RotaryAngles(t.cos(), t.sin(), interleaved=True) for t in layers]

    @staticmethod
    def _pad(theta: Tensor, num_prefix_tokens: int) -> Tensor:
        """Prefix tokens get angle 0 (no rotation): they carry no grid position."""
        if not num_prefix_tokens:
            return theta
        pad = theta.new_zeros(*theta.shape[:-2], num_prefix_tokens, theta.shape[-1])
        return torch.cat([pad, theta], dim=-2)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, mode={self.mode}, base={self.base}, depth={self.depth}"
