"""Multi-head attention on `F.scaled_dot_product_attention`, with an explicit path that returns the weights.

Shape legend: B batch, N queries, M keys, H heads, d = dim / H channels per head, D = dim.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import use_fused_attn
from .kv_cache import KVCache
from .masks import merge_masks
from .rotary import RotaryAngles, RotaryEmbedding

__all__ = ["MultiHeadAttention", "check_heads"]


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


def check_heads(dim: int, num_heads: int) -> None:
    """Raise a ValueError listing the valid head counts unless `num_heads` >= 1 divides `dim`."""
    if num_heads < 1 or dim % num_heads != 0:
        raise ValueError(f"num_heads ({num_heads}) must divide dim ({dim}); choose num_heads in {_divisors(dim)}")


class MultiHeadAttention(nn.Module):
    """softmax(Q K^T / sqrt(d)) V in H heads, concatenated and projected; self- or cross-attention.

    Args:
        dim: Model width D (input and output channels).
        num_heads: Number of heads H; must divide `dim`.
        dropout: Dropout on the attention weights (training only).
        bias: Bias in the query/key/value projections.
        qk_norm: LayerNorm over the channels of each head's queries and keys before the dot product.
        out_bias: Bias in the output projection.
        norm_eps: Epsilon of the qk-norm LayerNorms.

    Raises:
        ValueError: `num_heads` does not divide `dim`, or `dropout` is outside [0, 1).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        qk_norm: bool = False,
        out_bias: bool = True,
        norm_eps: float = 1e-6,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_heads(dim, num_heads)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        dd = {"device": device, "dtype": dtype}
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.fused_attn = use_fused_attn()
        # One packed projection: a single matmul for self-attention; cross-attention slices it into q and kv.
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias, **dd)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps, **dd) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps, **dd) if qk_norm else nn.Identity()
        self.out_proj = nn.Linear(dim, dim, bias=out_bias, **dd)
        # Set by `mmattn.nn.capture_attention` while it records this layer's weights; None (no cost) otherwise.
        self.record = None

    def _split_heads(self, t: Tensor) -> Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, n, d]

    def _project(self, x: Tensor, context: Tensor | None, cache: KVCache | None) -> tuple[Tensor, Tensor, Tensor]:
        """Queries from `x`; keys/values from `x` (self) or `context` (cross), or from a filled cross cache."""
        b, n, _ = x.shape
        if context is None:
            qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            # unbind, not indexing: its backward is one stack instead of three zero-filled [3, B, H, N, d] copies.
            q, k, v = qkv.unbind(0)  # each [B, H, N, d]
            return q, k, v
        w, bias = self.qkv.weight, self.qkv.bias
        q = self._split_heads(F.linear(x, w[: self.dim], None if bias is None else bias[: self.dim]))
        if cache is not None and cache.size > 0:
            return q, None, None  # cross-attention keys/values are computed once per sequence
        m = context.shape[1]
        kv = F.linear(context, w[self.dim :], None if bias is None else bias[self.dim :])
        kv = kv.view(b, m, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        return q, k, v

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        rope: RotaryEmbedding | RotaryAngles | None = None,
        cache: KVCache | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend from `x` [B, N, D] to itself or to `context` [B, M, D].

        Args:
            x: Queries' input tokens.
            context: Keys' and values' input tokens for cross-attention; None for self-attention.
            key_padding_mask: Bool [B, M], True marks padded keys. With a cache, M counts all cached keys.
            attn_mask: Bool (True = may attend) or float (added to the scores), broadcastable to [B, H, N, M].
            causal: Query i attends to keys at positions <= its own (positions continue after a cache's content).
            need_weights: Also return the attention weights [B, H, N, M] (explicit path; rows sum to 1).
            rope: Rotary embedding applied to queries and keys (self-attention), positions offset by the cache; or
                `RotaryAngles` already placed at the new tokens' positions.
            cache: Self-attention: appends this step's keys/values. Cross-attention (`context` given): filled on the
                first call from `context`, reused afterwards without projecting `context` again.

        Returns:
            The output [B, N, D], or `(output, weights)` with `need_weights=True`.
        """
        b, n, _ = x.shape
        cross = context is not None
        q, k, v = self._project(x, context, cache)
        offset = 0 if cross or cache is None else cache.size
        q = self.q_norm(q)
        if k is not None:
            k = self.k_norm(k)
        if rope is not None:
            if cross:
                raise ValueError("rope applies to self-attention only; cross-attention keys have no shared positions")
            q, k = rope(q, k, offset=offset)
        if cache is not None:
            k, v = cache.cached() if k is None else cache.update(k, v)
        m = k.shape[2]
        mask, dead = merge_masks(
            b,
            self.num_heads,
            n,
            m,
            key_padding_mask=key_padding_mask,
            attn_mask=attn_mask,
            causal=causal and not (n == m and offset == 0 and attn_mask is None and key_padding_mask is None),
            offset=offset,
            dtype=q.dtype,
            device=q.device,
        )
        # Plain causal self-attention without other masks goes to SDPA as is_causal (fused kernels, no mask tensor).
        is_causal = causal and mask is None and n == m and offset == 0
        p = self.dropout if self.training else 0.0
        weights = None
        record = self.record
        if need_weights or not self.fused_attn or record is not None:
            out, weights = self._explicit(q, k, v, mask, is_causal, p)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal)
        if dead is not None:
            out = out.masked_fill(dead, 0.0)
            if weights is not None:
                weights = weights.masked_fill(dead, 0.0)
        if record is not None:
            record(weights)
        out = self.out_proj(out.transpose(1, 2).reshape(b, n, self.dim))  # [B, H, N, d] -> [B, N, D]
        return (out, weights) if need_weights else out

    def _explicit(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool, p: float
    ) -> tuple[Tensor, Tensor]:
        """The textbook computation; returns the pre-dropout weights [B, H, N, M] as well."""
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        if is_causal:
            n, m = scores.shape[-2:]
            mask = torch.ones(n, m, dtype=torch.bool, device=q.device).tril()
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        # softmax in fp32 even for half inputs: this path serves attention maps, not speed.
        weights = scores.float().softmax(dim=-1).to(q.dtype)
        attn = F.dropout(weights, p) if p > 0 else weights
        return attn @ v, weights
