"""Key/value cache for incremental decoding."""

import torch
from torch import Tensor, nn

__all__ = ["KVCache"]


class KVCache(nn.Module):
    """Pre-allocated keys and values of one attention layer, [B, H, max_len, head_dim].

    Self-attention appends the keys/values of each new step; cross-attention fills it once from the encoder output
    and reuses it. Buffers are non-persistent: a cache is decoding state, never part of a checkpoint.

    Args:
        batch_size: Number of sequences decoded together (batch x beams for beam search).
        num_heads: Attention heads of the layer.
        head_dim: Channels per head.
        max_len: Largest number of positions the cache can hold.
    """

    def __init__(
        self,
        batch_size: int,
        num_heads: int,
        head_dim: int,
        max_len: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        shape = (batch_size, num_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.size = 0

    @property
    def max_len(self) -> int:
        """Capacity in positions."""
        return self.k.shape[2]

    def reset(self) -> None:
        """Forget the cached positions (the buffers are reused)."""
        self.size = 0

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append `k`, `v` [B, H, n, head_dim] and return all cached keys and values so far."""
        n = k.shape[2]
        end = self.size + n
        if end > self.max_len:
            raise ValueError(f"KVCache overflow: {self.size} cached + {n} new positions > max_len {self.max_len}")
        if k.shape[0] != self.k.shape[0]:
            raise ValueError(f"KVCache holds batch {self.k.shape[0]}, got keys for batch {k.shape[0]}")
        self.k[:, :, self.size : end] = k
        self.v[:, :, self.size : end] = v
        self.size = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def cached(self) -> tuple[Tensor, Tensor]:
        """Keys and values cached so far."""
        return self.k[:, :, : self.size], self.v[:, :, : self.size]

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search keeps the surviving hypotheses); `index` is a LongTensor [B']."""
        self.k = self.k.index_select(0, index)
        self.v = self.v.index_select(0, index)
