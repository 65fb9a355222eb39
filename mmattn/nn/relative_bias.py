"""T5's relative position bias (Raffel et al., 2020): a learned score bias per head and bucket of key - query offset."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["T5RelativeBias", "relative_position_bucket"]


def relative_position_bucket(
    relative: Tensor, *, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
) -> Tensor:
    """Bucket of each offset key - query: exact buckets for small distances, log-spaced ones up to `max_distance`,
    everything farther in the last bucket. Bidirectional attention gives half the buckets to keys after the query;
    causal attention only sees keys at or before it and uses all buckets for those."""
    bucket = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (relative > 0).long() * num_buckets
        distance = relative.abs()
    else:
        distance = (-relative).clamp_min(0)
    exact = num_buckets // 2
    # Distances >= exact share log-spaced buckets; the clamp keeps log() finite for the exact ones it does not serve.
    log_bucket = (
        exact
        + (
            torch.log(distance.float().clamp_min(exact) / exact)
            / math.log(max_distance / exact)
            * (num_buckets - exact)
        ).long()
    )
    log_bucket = log_bucket.clamp_max(num_buckets - 1)
    return bucket + torch.where(distance < exact, distance, log_bucket)


class T5RelativeBias(nn.Module):
    """Score bias [H, N, M] = table[bucket(k_pos - q_pos), h], one learned scalar per head and bucket.

    T5 computes it once and adds it in every layer of a stack; it depends on positions only through their
    difference, so it extends to any length (distances past `max_distance` share the last bucket).

    Args:
        num_heads: Heads (one bias per head and bucket).
        bidirectional: Encoder (keys on both sides) or causal decoder buckets.
        num_buckets: Buckets (32 in T5).
        max_distance: Distance where the last bucket starts (128 in T5).

    Raises:
        ValueError: Too few buckets for the exact/log split, or `max_distance` not beyond the exact buckets.
    """

    def __init__(
        self, num_heads: int, *, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
    ) -> None:
        super().__init__()
        side = num_buckets // 2 if bidirectional else num_buckets
        if side < 2:
            raise ValueError(f"T5 bias needs at least {4 if bidirectional else 2} buckets, got {num_buckets}")
        if max_distance <= side // 2:
            raise ValueError(f"T5 bias max_distance {max_distance} must exceed the {side // 2} exact buckets")
        self.num_heads, self.bidirectional = num_heads, bidirectional
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.table = nn.Embedding(num_buckets, num_heads)
        nn.init.trunc_normal_(self.table.weight, std=0.02)

    def bias(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        """Bias [H, N, M] for queries at integer positions `q_pos` [N] and keys at `k_pos` [M]."""
        relative = k_pos[None, :].long() - q_pos[:, None].long()
        buckets = relative_position_bucket(
            relative, bidirectional=self.bidirectional, num_buckets=self.num_buckets, max_distance=self.max_distance
        )
        return self.table(buckets).permute(2, 0, 1)  # [N, M, H] -> [H, N, M]

    def forward(self, num_queries: int, num_keys: int, *, offset: int = 0) -> Tensor:
        """Bias [H, N, M] for queries at positions offset..offset+N-1 and keys at 0..M-1."""
        device = self.table.weight.device
        return self.bias(torch.arange(num_queries, device=device) + offset, torch.arange(num_keys, device=device))

    def extra_repr(self) -> str:
        return (
            f"num_heads={self.num_heads}, bidirectional={self.bidirectional}, num_buckets={self.num_buckets}, "
            f"max_distance={self.max_distance}"
        )
