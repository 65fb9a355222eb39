"""ALiBi (Press et al., 2022): a per-head linear distance penalty added to the attention scores."""

import math

import torch
from torch import Tensor, nn

__all__ = ["ALiBi", "alibi_slopes"]


def alibi_slopes(num_heads: int) -> Tensor:
    """The paper's head slopes: a geometric sequence starting at 2**(-8/n); heads beyond a power of two interleave."""

    def powers(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if num_heads < 1:
        raise ValueError(f"num_heads must be >= 1, got {num_heads}")
    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = powers(closest)
    if closest < num_heads:
        slopes += powers(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes)


class ALiBi(nn.Module):
    """Score bias -m_h * |i - j| for query position i and key position j, one slope m_h per head.

    Pass the output as the float `attn_mask` of attention; with a causal mask it equals the paper's bias.
    """

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def forward(self, num_queries: int, num_keys: int, *, offset: int = 0) -> Tensor:
        """Bias [H, N, M] for queries at positions offset..offset+N-1 and keys at 0..M-1."""
        q_pos = torch.arange(num_queries, device=self.slopes.device) + offset
        return self.bias(q_pos, torch.arange(num_keys, device=self.slopes.device))

    def bias(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        """Bias [H, N, M] for queries at positions `q_pos` [N] and keys at `k_pos` [M] (any integers)."""
        distance = (q_pos[:, None] - k_pos[None, :]).abs().to(self.slopes.dtype)
        return -self.slopes[:, None, None] * distance

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"
