"""Transformer encoder and decoder layers, pre-norm (default) or post-norm (Vaswani et al., 2017)."""

from typing import Literal

import torch
from torch import Tensor, nn

from .attention import MultiHeadAttention
from .feedforward import Mlp, SwiGLU
from .kv_cache import KVCache
from .regularization import DropPath, LayerScale
from .rotary import RotaryAngles, RotaryEmbedding

__all__ = ["DecoderLayer", "EncoderLayer", "LayerCache"]


def _ffn(dim: int, mlp_ratio: float, ffn: str, act_layer: type[nn.Module], act_dropout: float, bias: bool) -> nn.Module:
    hidden = int(dim * mlp_ratio)
    if ffn == "gelu":
        return Mlp(dim, hidden, act_layer=act_layer, dropout=act_dropout, bias=bias)
    if ffn == "swiglu":
        # 2/3 of the width keeps the parameter count of a plain MLP of the same ratio (Shazeer, 2020).
        return SwiGLU(dim, int(2 * hidden / 3), dropout=act_dropout, bias=bias)
    raise ValueError(f"ffn must be 'gelu' or 'swiglu', got {ffn!r}")


class _Residual(nn.Module):
    """Shared plumbing of a residual branch: dropout, LayerScale, DropPath."""

    def __init__(self, dim: int, dropout: float, layer_scale: float | None, drop_path: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.ls = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, branch: Tensor) -> Tensor:
        return self.drop_path(self.ls(self.drop(branch)))


class EncoderLayer(nn.Module):
    """Self-attention and a feed-forward block, each wrapped in a residual connection with LayerNorm.

    Pre-norm: x + f(norm(x)). Post-norm (the original paper): norm(x + f(x)).

    Args:
        dim: Token width.
        num_heads: Attention heads.
        mlp_ratio: Feed-forward width over `dim`.
        ffn: "gelu" (Mlp) or "swiglu".
        dropout: Dropout on each residual branch output.
        attn_dropout: Dropout on the attention weights.
        act_dropout: Dropout after the feed-forward activation.
        drop_path: Stochastic depth rate of both branches.
        layer_scale: Initial LayerScale value; None disables it.
        qkv_bias: Bias of the query/key/value projections.
        qk_norm: LayerNorm on queries and keys per head.
        norm_first: Pre-norm (True) or post-norm (False).
        norm_eps: LayerNorm epsilon.
        act_layer: Activation of the "gelu" feed-forward.
        bias: Bias of the feed-forward and output projections.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        ffn: Literal["gelu", "swiglu"] = "gelu",
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        act_dropout: float = 0.0,
        drop_path: float = 0.0,
        layer_scale: float | None = None,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        norm_first: bool = True,
        norm_eps: float = 1e-5,
        act_layer: type[nn.Module] = nn.GELU,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = MultiHeadAttention(
            dim, num_heads, dropout=attn_dropout, bias=qkv_bias, qk_norm=qk_norm, out_bias=bias, norm_eps=norm_eps
        )
        self.res1 = _Residual(dim, dropout, layer_scale, drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = _ffn(dim, mlp_ratio, ffn, act_layer, act_dropout, bias)
        self.res2 = _Residual(dim, dropout, layer_scale, drop_path)

    def forward(
        self,
        x: Tensor,
        *,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        causal: bool = False,
        rope: RotaryEmbedding | RotaryAngles | None = None,
        cache: KVCache | None = None,
    ) -> Tensor:
        """Transform x [B, N, D]; masks and rope as in `MultiHeadAttention`."""
        kw = {
            "key_padding_mask": key_padding_mask,
            "attn_mask": attn_mask,
            "causal": causal,
            "rope": rope,
            "cache": cache,
        }
        if self.norm_first:
            x = x + self.res1(self.attn(self.norm1(x), **kw))
            return x + self.res2(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.res1(self.attn(x, **kw)))
        return self.norm2(x + self.res2(self.mlp(x)))


class LayerCache(nn.Module):
    """The decoding state of one decoder layer: a self-attention cache and, if present, a cross-attention cache."""

    def __init__(self, self_attn: KVCache, cross_attn: KVCache | None = None) -> None:
        super().__init__()
        self.self_attn = self_attn
        self.cross_attn = cross_attn


class DecoderLayer(nn.Module):
    """Causal self-attention, optional cross-attention to an encoder output, and a feed-forward block.

    Arguments as `EncoderLayer`, plus `cross_attention` (False gives a decoder-only layer).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        cross_attention: bool = True,
        mlp_ratio: float = 4.0,
        ffn: Literal["gelu", "swiglu"] = "gelu",
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        act_dropout: float = 0.0,
        drop_path: float = 0.0,
        layer_scale: float | None = None,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        norm_first: bool = True,
        norm_eps: float = 1e-5,
        act_layer: type[nn.Module] = nn.GELU,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        attn_kw = {
            "dropout": attn_dropout,
            "bias": qkv_bias,
            "qk_norm": qk_norm,
            "out_bias": bias,
            "norm_eps": norm_eps,
        }
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.self_attn = MultiHeadAttention(dim, num_heads, **attn_kw)
        self.res1 = _Residual(dim, dropout, layer_scale, drop_path)
        self.cross_attn = None
        if cross_attention:
            self.norm_cross = nn.LayerNorm(dim, eps=norm_eps)
            self.cross_attn = MultiHeadAttention(dim, num_heads, **attn_kw)
            self.res_cross = _Residual(dim, dropout, layer_scale, drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = _ffn(dim, mlp_ratio, ffn, act_layer, act_dropout, bias)
        self.res2 = _Residual(dim, dropout, layer_scale, drop_path)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        causal: bool = True,
        rope: RotaryEmbedding | RotaryAngles | None = None,
        cache: LayerCache | None = None,
    ) -> Tensor:
        """Transform target tokens x [B, N, D] attending to `memory` [B, M, D]."""
        if self.cross_attn is not None and memory is None:
            raise ValueError("this DecoderLayer has cross-attention: pass the encoder output as `memory`")
        self_kw = {
            "key_padding_mask": key_padding_mask,
            "attn_mask": attn_mask,
            "causal": causal,
            "rope": rope,
            "cache": None if cache is None else cache.self_attn,
        }
        cross_kw = {"key_padding_mask": memory_key_padding_mask, "cache": None if cache is None else cache.cross_attn}
        if self.norm_first:
            x = x + self.res1(self.self_attn(self.norm1(x), **self_kw))
            if self.cross_attn is not None:
                x = x + self.res_cross(self.cross_attn(self.norm_cross(x), memory, **cross_kw))
            return x + self.res2(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.res1(self.self_attn(x, **self_kw)))
        if self.cross_attn is not None:
            x = self.norm_cross(x + self.res_cross(self.cross_attn(x, memory, **cross_kw)))
        return self.norm2(x + self.res2(self.mlp(x)))

    def init_cache(
        self,
        batch_size: int,
        max_len: int,
        *,
        memory_len: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> LayerCache:
        """Empty caches for decoding up to `max_len` target positions against `memory_len` source positions."""
        attn = self.self_attn
        kw = {"dtype": dtype, "device": device}
        self_cache = KVCache(batch_size, attn.num_heads, attn.head_dim, max_len, **kw)
        cross_cache = None
        if self.cross_attn is not None:
            if memory_len < 1:
                raise ValueError(f"a cross-attention cache needs memory_len >= 1 (the source length), got {memory_len}")
            cross_cache = KVCache(batch_size, attn.num_heads, attn.head_dim, memory_len, **kw)
        return LayerCache(self_cache, cross_cache)
