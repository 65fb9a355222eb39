"""Absolute position encodings: sinusoidal (1-D), learned (1-D and 2-D with resampling), 2-D sin-cos."""

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LearnedPositionalEmbedding",
    "LearnedPositionalEmbedding2D",
    "RandomPositions",
    "SinCos2DPositionalEmbedding",
    "SinusoidalPositionalEncoding",
    "resample_pos_embed",
    "sincos_2d_table",
    "sinusoidal_table",
]


def sinusoidal_table(
    num_positions: int, dim: int, *, base: float = 10000.0, layout: Literal["interleaved", "halves"] = "interleaved"
) -> Tensor:
    """PE[p, 2i] = sin(p / base**(2i/dim)), PE[p, 2i+1] = cos(p / base**(2i/dim)) (Vaswani et al., 2017).

    Sine and cosine interleave over channel pairs. `layout="halves"` keeps the same frequencies but puts every sine
    first and every cosine after them, PE[p, i] = sin(p w_i), PE[p, dim/2 + i] = cos(p w_i) (Marian's table, as
    transformers' `MarianSinusoidalPositionalEmbedding` stores it). Computed in float64, returned as float32
    [num_positions, dim].

    Raises:
        ValueError: An odd `dim` or an unknown `layout`.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal_table needs an even dim, got {dim}")
    if layout not in ("interleaved", "halves"):
        raise ValueError(f"layout must be 'interleaved' or 'halves', got {layout!r}")
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]
    inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # 1 / base**(2i/dim)
    if layout == "halves":
        angle = position * inv_freq  # [num_positions, dim / 2]
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1).float()
    table = torch.empty(num_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Adds `sinusoidal_table` rows offset..offset+N-1 to x [B, N, D]; the table grows on demand.

    `layout` is the channel order of `sinusoidal_table`: "interleaved" (the paper) or "halves" (Marian).
    """

    def __init__(
        self,
        dim: int,
        max_len: int = 1024,
        *,
        base: float = 10000.0,
        layout: Literal["interleaved", "halves"] = "interleaved",
    ) -> None:
        super().__init__()
        self.dim = dim
        self.base = base
        self.layout = layout
        self.register_buffer("table", sinusoidal_table(max_len, dim, base=base, layout=layout), persistent=False)

    def forward(self, x: Tensor, *, offset: int = 0, positions: Tensor | None = None) -> Tensor:
        """Return x plus the encoding of positions offset, offset+1, ... (or of the integer `positions` [N])."""
        n = x.shape[1]
        top = offset + n if positions is None else int(positions.max()) + 1
        if top > self.table.shape[0]:
            grown = sinusoidal_table(max(top, 2 * self.table.shape[0]), self.dim, base=self.base, layout=self.layout)
            self.table = grown.to(self.table.device)
        rows = self.table[offset : offset + n] if positions is None else self.table[positions]
        return x + rows.to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """A learned table [num_positions, D] added to x [B, N, D] from position `offset` on."""

    def __init__(self, num_positions: int, dim: int, *, init_std: float = 0.02) -> None:
        super().__init__()
        self.num_positions = num_positions
        self.weight = nn.Parameter(torch.empty(num_positions, dim))
        nn.init.trunc_normal_(self.weight, std=init_std)

    def forward(self, x: Tensor, *, offset: int = 0, positions: Tensor | None = None) -> Tensor:
        """Return x plus the learned rows for positions offset, offset+1, ... (or for the integer `positions` [N])."""
        n = x.shape[1]
        top = offset + n if positions is None else int(positions.max()) + 1
        if top > self.num_positions:
            raise ValueError(
                f"position {top - 1} is beyond the learned table of {self.num_positions} positions; "
                "raise num_positions (max_positions) in the model config or crop the input"
            )
        rows = self.weight[offset : offset + n] if positions is None else self.weight[positions]
        return x + rows.to(x.dtype)


class RandomPositions(nn.Module):
    """Randomised positions (Ruoss et al., 2023): N tokens get a sorted random subset of 0..max_len-1 as positions.

    A model trained on short sequences then sees every position of the range and every gap between positions, so
    longer test sequences fall inside what it learned. One subset serves the whole batch (as in the paper). In
    training the draw uses torch's random state (seeded runs repeat it); in evaluation a generator seeded with
    `eval_seed` and the length, so evaluation is repeatable. A decoder's KV cache draws its positions once for its
    whole length (`draw`), so incremental decoding equals full decoding at those positions.

    Args:
        max_len: Size of the range drawn from; the longest sequence the model can take.
        eval_seed: Seed of the evaluation draws.

    Raises:
        ValueError: `max_len` < 1.
    """

    def __init__(self, max_len: int, *, eval_seed: int = 0) -> None:
        super().__init__()
        if max_len < 1:
            raise ValueError(f"random positions need max_len >= 1, got {max_len}")
        self.max_len = max_len
        self.eval_seed = eval_seed

    def draw(self, n: int, *, device: torch.device | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Sorted distinct positions [n] from 0..max_len-1 (`generator` overrides the training/evaluation source)."""
        if n > self.max_len:
            raise ValueError(
                f"random positions draw {n} positions from a range of {self.max_len}; raise random_positions to at "
                f"least {n} (the longest sequence) or crop the input"
            )
        if generator is None and not self.training:
            generator = torch.Generator().manual_seed(self.eval_seed * 1_000_003 + n)
        return torch.randperm(self.max_len, generator=generator)[:n].sort().values.to(device)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}"


def sincos_2d_table(grid_size: tuple[int, int], dim: int, *, temperature: float = 10000.0) -> Tensor:
    """Fixed 2-D table [h*w, dim], row-major over the grid: [sin(x w), cos(x w), sin(y w), cos(y w)].

    Each quarter uses frequencies w_i = temperature**(-i / (dim/4 - 1)), i < dim/4 (Beyer et al., 2022, "Better
    plain ViT baselines"); x is the column and y the row of the patch.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos position embedding needs dim divisible by 4, got {dim}")
    h, w = grid_size
    quarter = dim // 4
    omega = torch.arange(quarter, dtype=torch.float64) / max(quarter - 1, 1)
    omega = temperature ** (-omega)
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    x = x.flatten()[:, None] * omega[None, :]
    y = y.flatten()[:, None] * omega[None, :]
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1).float()


class SinCos2DPositionalEmbedding(nn.Module):
    """Adds `sincos_2d_table` to patch tokens; prefix tokens (class, distillation) get zeros. Any grid size works."""

    def __init__(self, grid_size: tuple[int, int], dim: int, *, num_prefix_tokens: int = 0) -> None:
        super().__init__()
        self.grid_size = tuple(grid_size)
        self.dim = dim
        self.num_prefix_tokens = num_prefix_tokens
        self.register_buffer("table", sincos_2d_table(self.grid_size, dim), persistent=False)

    def forward(self, x: Tensor, grid_size: tuple[int, int] | None = None) -> Tensor:
        """x [B, P + h*w, D] with P prefix tokens first; `grid_size` (h, w) when it differs from construction."""
        table = self.table
        if grid_size is not None and tuple(grid_size) != self.grid_size:
            table = sincos_2d_table(tuple(grid_size), self.dim).to(x.device)
        p = self.num_prefix_tokens
        return torch.cat([x[:, :p], x[:, p:] + table.to(x.dtype)], dim=1)


def resample_pos_embed(
    pos_embed: Tensor,
    new_size: tuple[int, int],
    old_size: tuple[int, int],
    *,
    num_prefix_tokens: int = 0,
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> Tensor:
    """Resample a learned table [1, P + h*w, D] from grid `old_size` to `new_size`; prefix rows are kept.

    Interpolates in float32 (as timm does) and returns the input dtype. Non-square grids (spectrograms) are fine.
    """
    new_size, old_size = tuple(new_size), tuple(old_size)
    p = num_prefix_tokens
    if pos_embed.shape[1] != p + old_size[0] * old_size[1]:
        raise ValueError(
            f"pos_embed has {pos_embed.shape[1]} rows, expected {p} prefix + {old_size[0]}x{old_size[1]} grid"
        )
    if new_size == old_size:
        return pos_embed
    prefix, grid = pos_embed[:, :p], pos_embed[:, p:]
    dim, dtype = grid.shape[-1], grid.dtype
    grid = grid.reshape(1, old_size[0], old_size[1], dim).permute(0, 3, 1, 2).float()  # [1, D, h, w]
    grid = F.interpolate(grid, size=new_size, mode=interpolation, antialias=antialias, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_size[0] * new_size[1], dim).to(dtype)
    return torch.cat([prefix, grid], dim=1)


class LearnedPositionalEmbedding2D(nn.Module):
    """A learned table [1, P + h*w, D] for P prefix tokens and an h x w grid of patches.

    Inputs on another grid use a bicubic resampling of the table; a checkpoint table of another grid is resampled on
    load (square grids are inferred; set `checkpoint_grid_size` for others).
    """

    def __init__(
        self, grid_size: tuple[int, int], dim: int, *, num_prefix_tokens: int = 0, init_std: float = 0.02
    ) -> None:
        super().__init__()
        self.grid_size = tuple(grid_size)
        self.num_prefix_tokens = num_prefix_tokens
        self.checkpoint_grid_size: tuple[int, int] | None = None
        self.weight = nn.Parameter(torch.empty(1, num_prefix_tokens + self.grid_size[0] * self.grid_size[1], dim))
        nn.init.trunc_normal_(self.weight, std=init_std)

    def table(self, grid_size: tuple[int, int] | None = None) -> Tensor:
        """The table for `grid_size`, resampled when it differs from the stored grid."""
        if grid_size is None or tuple(grid_size) == self.grid_size:
            return self.weight
        return resample_pos_embed(
            self.weight, tuple(grid_size), self.grid_size, num_prefix_tokens=self.num_prefix_tokens
        )

    def forward(self, x: Tensor, grid_size: tuple[int, int] | None = None) -> Tensor:
        """x [B, P + h*w, D] plus the table for its grid."""
        return x + self.table(grid_size).to(x.dtype)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        key = prefix + "weight"
        table = state_dict.get(key)
        if table is not None and table.shape != self.weight.shape and table.shape[-1] == self.weight.shape[-1]:
            rows = table.shape[1] - self.num_prefix_tokens
            old = self.checkpoint_grid_size
            if old is None:
                side = math.isqrt(rows)
                if side * side != rows:
                    raise ValueError(
                        f"{key}: cannot infer the grid of a {rows}-patch table; set checkpoint_grid_size=(h, w)"
                    )
                old = (side, side)
            state_dict[key] = resample_pos_embed(table, self.grid_size, old, num_prefix_tokens=self.num_prefix_tokens)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
