"""Encoder and decoder stacks with optional rotary or ALiBi positions inside attention."""

from typing import Literal

import torch
from torch import Tensor, nn

from .alibi import ALiBi
from .layers import DecoderLayer, EncoderLayer, LayerCache
from .rotary import RotaryEmbedding

__all__ = ["Decoder", "DecoderCache", "Encoder"]

RelativePosition = Literal["rotary", "alibi"] | None


def _drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic depth grows linearly from 0 at the first layer to `rate` at the last (Huang et al., 2016)."""
    if depth == 1:
        return [rate]
    return [rate * i / (depth - 1) for i in range(depth)]


def _relative(kind: RelativePosition, dim: int, num_heads: int, rope_base: float) -> tuple[nn.Module | None, ...]:
    if kind is None:
        return None, None
    if kind == "rotary":
        return RotaryEmbedding(dim // num_heads, base=rope_base), None
    if kind == "alibi":
        return None, ALiBi(num_heads)
    raise ValueError(f"relative_position must be None, 'rotary' or 'alibi', got {kind!r}")


def _with_alibi(alibi: ALiBi | None, attn_mask: Tensor | None, n: int, m: int, offset: int, dtype) -> Tensor | None:
    if alibi is None:
        return attn_mask
    bias = alibi(n, m, offset=offset).to(dtype)  # [H, N, M]
    if attn_mask is None:
        return bias
    if attn_mask.dtype == torch.bool:
        return bias.masked_fill(~attn_mask, float("-inf"))
    return bias + attn_mask


class Encoder(nn.Module):
    """A stack of `EncoderLayer`s with a final LayerNorm (pre-norm stacks need it; post-norm ones already end in one).

    Args:
        dim: Token width.
        depth: Number of layers.
        num_heads: Attention heads.
        drop_path: Largest stochastic depth rate, reached at the last layer.
        final_norm: Apply a LayerNorm after the last layer; defaults to `norm_first`.
        relative_position: None, "rotary" (rotate q/k in every layer) or "alibi" (distance bias on the scores).
        rope_base: Base of the rotary frequencies.
        **layer_kwargs: Passed to every `EncoderLayer` (mlp_ratio, ffn, dropout, qk_norm, norm_first, ...).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        *,
        drop_path: float = 0.0,
        final_norm: bool | None = None,
        relative_position: RelativePosition = None,
        rope_base: float = 10000.0,
        norm_first: bool = True,
        norm_eps: float = 1e-5,
        **layer_kwargs,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.layers = nn.ModuleList(
            EncoderLayer(dim, num_heads, drop_path=r, norm_first=norm_first, norm_eps=norm_eps, **layer_kwargs)
            for r in _drop_path_rates(drop_path, depth)
        )
        final_norm = norm_first if final_norm is None else final_norm
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if final_norm else nn.Identity()
        self.rope, self.alibi = _relative(relative_position, dim, num_heads, rope_base)

    def forward(
        self,
        x: Tensor,
        *,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        """Encode x [B, N, D]; `key_padding_mask` [B, N] True marks padding."""
        n = x.shape[1]
        attn_mask = _with_alibi(self.alibi, attn_mask, n, n, 0, x.dtype)
        for layer in self.layers:
            x = layer(x, key_padding_mask=key_padding_mask, attn_mask=attn_mask, causal=causal, rope=self.rope)
        return self.norm(x)


class DecoderCache(nn.Module):
    """Per-layer caches of a `Decoder` for incremental decoding; `length` positions are cached so far."""

    def __init__(self, layers: list[LayerCache]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    @property
    def length(self) -> int:
        """Target positions decoded so far."""
        return self.layers[0].self_attn.size

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows `index` in every cache (beam search)."""
        for layer in self.layers:
            layer.self_attn.reorder(index)
            if layer.cross_attn is not None:
                layer.cross_attn.reorder(index)

    def reset(self) -> None:
        """Empty every cache, keeping the buffers."""
        for layer in self.layers:
            layer.self_attn.reset()
            if layer.cross_attn is not None:
                layer.cross_attn.reset()


class Decoder(nn.Module):
    """A stack of `DecoderLayer`s (causal self-attention, cross-attention unless `cross_attention=False`).

    Arguments as `Encoder`, plus `cross_attention`.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        *,
        cross_attention: bool = True,
        drop_path: float = 0.0,
        final_norm: bool | None = None,
        relative_position: RelativePosition = None,
        rope_base: float = 10000.0,
        norm_first: bool = True,
        norm_eps: float = 1e-5,
        **layer_kwargs,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.layers = nn.ModuleList(
            DecoderLayer(
                dim,
                num_heads,
                cross_attention=cross_attention,
                drop_path=r,
                norm_first=norm_first,
                norm_eps=norm_eps,
                **layer_kwargs,
            )
            for r in _drop_path_rates(drop_path, depth)
        )
        final_norm = norm_first if final_norm is None else final_norm
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if final_norm else nn.Identity()
        self.rope, self.alibi = _relative(relative_position, dim, num_heads, rope_base)

    def init_cache(
        self,
        batch_size: int,
        max_len: int,
        *,
        memory_len: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> DecoderCache:
        """Empty caches for `batch_size` sequences of up to `max_len` target tokens and `memory_len` source tokens."""
        return DecoderCache(
            [
                layer.init_cache(batch_size, max_len, memory_len=memory_len, dtype=dtype, device=device)
                for layer in self.layers
            ]
        )

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        causal: bool = True,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        """Decode x [B, N, D] (all target tokens, or the new ones after those in `cache`) against `memory`."""
        offset = 0 if cache is None else cache.length
        n = x.shape[1]
        attn_mask = _with_alibi(self.alibi, attn_mask, n, offset + n, offset, x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer(
                x,
                memory,
                key_padding_mask=key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                attn_mask=attn_mask,
                causal=causal,
                rope=self.rope,
                cache=None if cache is None else cache.layers[i],
            )
        return self.norm(x)
