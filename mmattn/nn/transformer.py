"""Encoder and decoder stacks with optional relative positions inside attention: rotary (1-D or on a patch grid),
ALiBi or T5's bucketed bias."""

from typing import Literal

import torch
from torch import Tensor, nn

from .alibi import ALiBi
from .layers import DecoderLayer, EncoderLayer, LayerCache
from .relative_bias import T5RelativeBias
from .rotary import RotaryAngles, RotaryEmbedding, RotaryEmbedding2D

__all__ = ["RELATIVE_POSITIONS", "Decoder", "DecoderCache", "Encoder"]

RelativePosition = Literal["rotary", "alibi", "t5", "rotary2d", "rotary2d_mixed"] | None
# What each stack can serve: 2-D rotary needs a patch grid, which only an encoder's input has.
RELATIVE_POSITIONS = {
    "encoder": (None, "rotary", "alibi", "t5", "rotary2d", "rotary2d_mixed"),
    "decoder": (None, "rotary", "alibi", "t5"),
}


def _drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic depth grows linearly from 0 at the first layer to `rate` at the last (Huang et al., 2016)."""
    if depth == 1:
        return [rate]
    return [rate * i / (depth - 1) for i in range(depth)]


class _RelativePositions(nn.Module):
    """The relative-position part of a stack: a rotation of q/k, or a score bias, computed once per forward."""

    def __init__(
        self, kind: RelativePosition, stack: str, dim: int, num_heads: int, depth: int, rope_base: float, **bias_kw
    ) -> None:
        super().__init__()
        if kind not in RELATIVE_POSITIONS[stack]:
            raise ValueError(
                f"relative_position {kind!r} cannot serve a {stack} stack; choose one of {RELATIVE_POSITIONS[stack]}"
                + (" (2-D rotary needs a patch grid, which only an encoder input has)" if "2d" in str(kind) else "")
            )
        self.kind = kind
        head_dim = dim // num_heads
        self.rope = RotaryEmbedding(head_dim, base=rope_base) if kind == "rotary" else None
        self.rope2d = None
        if kind in ("rotary2d", "rotary2d_mixed"):
            mode = "axial" if kind == "rotary2d" else "mixed"
            self.rope2d = RotaryEmbedding2D(head_dim, num_heads, mode=mode, depth=depth)
        self.alibi = ALiBi(num_heads) if kind == "alibi" else None
        self.t5 = T5RelativeBias(num_heads, bidirectional=stack == "encoder", **bias_kw) if kind == "t5" else None

    def rotations(
        self,
        q_pos: Tensor | None,
        offset: int,
        n: int,
        depth: int,
        grid_size: tuple[int, int] | None = None,
        num_prefix_tokens: int = 0,
        device: torch.device | None = None,
    ) -> list[RotaryAngles | None]:
        """Per-layer rotations for n tokens at `q_pos` (None: offset..offset+n-1) or on `grid_size` (2-D)."""
        if self.rope is not None:
            angles = self.rope.angles_range(offset, n) if q_pos is None else self.rope.angles(q_pos)
            return [angles] * depth
        if self.rope2d is not None:
            if grid_size is None:
                raise ValueError(f"{self.kind} positions need the token grid: pass grid_size=(h, w) to the encoder")
            if num_prefix_tokens + grid_size[0] * grid_size[1] != n:
                raise ValueError(
                    f"{self.kind}: {n} tokens do not make {num_prefix_tokens} prefix tokens + a "
                    f"{grid_size[0]}x{grid_size[1]} grid"
                )
            return self.rope2d.angles(grid_size, num_prefix_tokens=num_prefix_tokens, device=device)
        return [None] * depth

    def with_bias(
        self,
        attn_mask: Tensor | None,
        q_pos: Tensor | None,
        k_pos: Tensor | None,
        offset: int,
        n: int,
        x: Tensor,
    ) -> Tensor | None:
        """`attn_mask` with the ALiBi or T5 bias [H, N, M] folded in (a float mask); positions default to
        offset..offset+n-1 for the queries and 0..offset+n-1 for the keys."""
        module = self.alibi if self.alibi is not None else self.t5
        if module is None:
            return attn_mask
        if q_pos is None:
            q_pos = torch.arange(offset, offset + n, device=x.device)
        if k_pos is None:
            k_pos = torch.arange(offset + n, device=x.device)
        bias = module.bias(q_pos, k_pos).to(x.dtype)
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
        relative_position: None; "rotary" (rotate q/k in every layer); "alibi" (distance bias on the scores); "t5"
            (T5's learned bucketed bias, shared by the layers); "rotary2d" / "rotary2d_mixed" (rotate patch tokens
            by their grid cell, axial or with learned mixed frequencies: pass `grid_size` to forward).
        rope_base: Base of the rotary frequencies.
        t5_buckets: Buckets of the T5 bias.
        t5_max_distance: Distance where the T5 bias's last bucket starts.
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
        t5_buckets: int = 32,
        t5_max_distance: int = 128,
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
        t5 = {"num_buckets": t5_buckets, "max_distance": t5_max_distance}
        self.relative = _RelativePositions(relative_position, "encoder", dim, num_heads, depth, rope_base, **t5)

    def forward(
        self,
        x: Tensor,
        *,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        causal: bool = False,
        positions: Tensor | None = None,
        grid_size: tuple[int, int] | None = None,
        num_prefix_tokens: int = 0,
    ) -> Tensor:
        """Encode x [B, N, D]; `key_padding_mask` [B, N] True marks padding.

        `positions` [N] are the tokens' integer positions for 1-D relative schemes (default 0..N-1; randomised
        positions pass their draw); 2-D rotary takes `grid_size` (h, w) of the patch tokens after
        `num_prefix_tokens` unrotated prefix tokens.
        """
        n = x.shape[1]
        attn_mask = self.relative.with_bias(attn_mask, positions, positions, 0, n, x)
        ropes = self.relative.rotations(
            positions, 0, n, len(self.layers), grid_size, num_prefix_tokens, device=x.device
        )
        for layer, rope in zip(self.layers, ropes, strict=True):
            x = layer(x, key_padding_mask=key_padding_mask, attn_mask=attn_mask, causal=causal, rope=rope)
        return self.norm(x)


class DecoderCache(nn.Module):
    """Per-layer caches of a `Decoder` for incremental decoding; `length` positions are cached so far.

    `positions` [max_len] holds the position of every target step when a model placed them (randomised positions);
    None means 0, 1, 2, ...: relative biases need the cached keys' positions.
    """

    def __init__(self, layers: list[LayerCache], positions: Tensor | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        # None: steps sit at 0, 1, 2, ... and are sliced by offset (what exported decoders compute).
        self.register_buffer("positions", positions, persistent=False)

    def place(self, offset: int, positions: Tensor) -> None:
        """Record `positions` [n] as the positions of steps offset..offset+n-1."""
        if self.positions is None:
            max_len = self.layers[0].self_attn.max_len
            self.positions = torch.arange(max_len, device=positions.device)
        if offset + positions.shape[0] > self.positions.shape[0]:
            raise ValueError(
                f"decoder cache overflow: {offset} cached + {positions.shape[0]} new > {self.positions.shape[0]}"
            )
        self.positions[offset : offset + positions.shape[0]] = positions

    @property
    def length(self) -> int:
        """Target positions decoded so far."""
        return self.layers[0].self_attn.size

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows `index` in every cache (beam search); positions are shared by the rows."""
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

    Arguments as `Encoder` (relative positions apply to self-attention only: target and source positions share no
    axis, so cross-attention is by content, as in T5), plus `cross_attention`.
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
        t5_buckets: int = 32,
        t5_max_distance: int = 128,
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
        t5 = {"num_buckets": t5_buckets, "max_distance": t5_max_distance}
        self.relative = _RelativePositions(relative_position, "decoder", dim, num_heads, depth, rope_base, **t5)

    def init_cache(
        self,
        batch_size: int,
        max_len: int,
        *,
        memory_len: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
        positions: Tensor | None = None,
    ) -> DecoderCache:
        """Empty caches for `batch_size` sequences of up to `max_len` target tokens and `memory_len` source tokens;
        `positions` [max_len] are the target steps' positions (default 0..max_len-1)."""
        return DecoderCache(
            [
                layer.init_cache(batch_size, max_len, memory_len=memory_len, dtype=dtype, device=device)
                for layer in self.layers
            ],
            positions,
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
        positions: Tensor | None = None,
    ) -> Tensor:
        """Decode x [B, N, D] (all target tokens, or the new ones after those in `cache`) against `memory`.

        `positions` [N] are the new tokens' integer positions (default: the cache's next ones, or 0..N-1); with a
        cache they are recorded in it.
        """
        n = x.shape[1]
        offset = 0 if cache is None else cache.length
        q_pos = k_pos = positions
        if cache is not None:
            if positions is not None:
                cache.place(offset, positions)
            if cache.positions is not None:
                k_pos = cache.positions[: offset + n]
                q_pos = k_pos[offset:]
        attn_mask = self.relative.with_bias(attn_mask, q_pos, k_pos, offset, n, x)
        ropes = self.relative.rotations(q_pos, offset, n, len(self.layers), device=x.device)
        for i, layer in enumerate(self.layers):
            x = layer(
                x,
                memory,
                key_padding_mask=key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                attn_mask=attn_mask,
                causal=causal,
                rope=ropes[i],
                cache=None if cache is None else cache.layers[i],
            )
        return self.norm(x)
