"""Rotary position embedding (Su et al., 2021, RoFormer): rotate q/k channel pairs by position-dependent angles."""

import torch
from torch import Tensor, nn

__all__ = ["RotaryEmbedding"]


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

    def rotate(self, x: Tensor, *, offset: int = 0) -> Tensor:
        """Rotate `x` [..., N, d] whose first token sits at position `offset`."""
        n = x.shape[-2]
        if offset + n > self.cos.shape[0]:
            self._build(max(offset + n, 2 * self.cos.shape[0]))
        cos = self.cos[offset : offset + n].to(x.dtype)
        sin = self.sin[offset : offset + n].to(x.dtype)
        if self.interleaved:
            x1, x2 = x[..., 0::2], x[..., 1::2]
            out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
            return out.flatten(-2)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)

    def forward(self, q: Tensor, k: Tensor, *, offset: int = 0) -> tuple[Tensor, Tensor]:
        """Rotate queries and keys that start at position `offset`."""
        return self.rotate(q, offset=offset), self.rotate(k, offset=offset)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}, interleaved={self.interleaved}"
