"""DecoderOnly: a GPT-style language model from the shared decoder layers, without cross-attention.

Why the decoder stack and not a causal `Encoder`: `Decoder` already owns the incremental-decoding state
(`DecoderCache` of `KVCache`s, rotary/ALiBi offsets for the cached positions), so sampling reuses exactly the cache
that translation's greedy and beam search use; an `Encoder` run with `causal=True` would compute the same function in
training but would need that cache plumbing a second time. `DecoderLayer(cross_attention=False)` is self-attention +
feed-forward, the GPT block.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from mmattn.nn import Decoder, DecoderCache, RandomPositions, check_heads

from .encoder_decoder import (
    _ACTIVATIONS,
    ABSOLUTE,
    RELATIVE,
    Positions,
    TokenEmbedding,
    _example_ids,
    cache_positions,
    check_sequence_positions,
    next_positions,
)

__all__ = ["DecoderOnly"]


class DecoderOnly(nn.Module):
    """Token ids [B, T] -> next-token logits [B, T, V] through causal self-attention layers.

    Args:
        vocab_size: Vocabulary (embedding rows and output classes).
        dim: Model width.
        depth: Decoder layers.
        num_heads: Attention heads.
        context_length: Longest sequence the model attends over (the learned position table's rows; prompts are
            cut to it when sampling).
        mlp_ratio: Feed-forward width over `dim` (GPT-2: 4).
        activation: Feed-forward activation, "gelu", "gelu_tanh" (GPT-2's tanh approximation), "relu" or "silu".
        ffn: "gelu" (a two-layer MLP with `activation`) or "swiglu".
        dropout: Dropout on embeddings and residual branches.
        attn_dropout: Dropout on attention weights.
        positions: "learned" (GPT-2) or "sinusoidal" (added to the embeddings), "rotary", "alibi" or "t5" (relative,
            inside attention), or "none" (NoPE: causal attention alone).
        random_positions: Randomised positions (Ruoss et al., 2023): each sequence gets a sorted random subset of
            0..random_positions-1 (>= context_length) as positions; null: 0, 1, 2, ...
        t5_buckets: Buckets of the T5 bias.
        t5_max_distance: Distance where the T5 bias's last bucket starts.
        tie_embeddings: Share the token embedding with the output projection (GPT-2 does).
        scale_embeddings: Multiply token embeddings by sqrt(dim) (the Transformer paper; GPT-2 does not).
        norm_first: Pre-norm (GPT-2) or post-norm layers.
        norm_eps: LayerNorm epsilon.
        qk_norm: LayerNorm on queries and keys per head.
        pad_id: Padding id (its embedding row stays zero and gets no gradient); None when every id is a real token
            (GPT-2: id 0 is "!" and no id is spare, so an imported GPT-2 has no padding row).

    Raises:
        ValueError: `num_heads` not dividing `dim`, a non-positive `context_length`, or an unknown option.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        context_length: int = 1024,
        mlp_ratio: float = 4.0,
        activation: str = "gelu",
        ffn: Literal["gelu", "swiglu"] = "gelu",
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        positions: Positions = "learned",
        random_positions: int | None = None,
        t5_buckets: int = 32,
        t5_max_distance: int = 128,
        tie_embeddings: bool = True,
        scale_embeddings: bool = False,
        norm_first: bool = True,
        norm_eps: float = 1e-5,
        qk_norm: bool = False,
        pad_id: int | None = 0,
    ) -> None:
        super().__init__()
        check_heads(dim, num_heads)
        if context_length < 1:
            raise ValueError(f"context_length must be >= 1, got {context_length}")
        table = context_length if random_positions is None else random_positions
        check_sequence_positions(
            "positions", positions, max_positions=table, random_positions=random_positions, causal=True
        )
        if random_positions is not None and random_positions < context_length:
            raise ValueError(
                f"random_positions={random_positions} cannot place {context_length} tokens (context_length); "
                f"raise it to at least {context_length}"
            )
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.vocab_size = vocab_size
        self.tgt_vocab_size = vocab_size  # the name Seq2SeqModule-style checks look for
        self.context_length = context_length
        self.dim = dim
        self.pad_id = pad_id
        self.embed = TokenEmbedding(
            vocab_size,
            dim,
            pad_id=pad_id,
            positions=positions if positions in ABSOLUTE else "none",
            max_positions=table,
            scale=scale_embeddings,
            dropout=dropout,
        )
        self.decoder = Decoder(
            dim,
            depth,
            num_heads,
            cross_attention=False,
            mlp_ratio=mlp_ratio,
            ffn=ffn,
            dropout=dropout,
            attn_dropout=attn_dropout,
            act_layer=_ACTIVATIONS[activation],
            qk_norm=qk_norm,
            norm_first=norm_first,
            norm_eps=norm_eps,
            relative_position=positions if positions in RELATIVE else None,
            t5_buckets=t5_buckets,
            t5_max_distance=t5_max_distance,
        )
        self.random_positions = None if random_positions is None else RandomPositions(random_positions)
        self.output = nn.Linear(dim, vocab_size, bias=False)
        self._init_weights(depth)
        if tie_embeddings:
            self.output.weight = self.embed.embed.weight

    def _init_weights(self, depth: int) -> None:
        # GPT-2's scheme: N(0, 0.02) everywhere, residual output projections scaled by 1/sqrt(2 * depth) so the
        # residual stream's variance does not grow with depth.
        for name, m in self.decoder.named_modules():
            if isinstance(m, nn.Linear):
                std = 0.02 / (2 * depth) ** 0.5 if name.endswith(("out_proj", "fc2")) else 0.02
                nn.init.normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.output.weight, std=0.02)
        nn.init.normal_(self.embed.embed.weight, std=0.02)
        if self.pad_id is not None:
            with torch.no_grad():
                self.embed.embed.weight[self.pad_id].zero_()

    @classmethod
    def from_hf(cls, model: nn.Module) -> DecoderOnly:
        """Build ours from a transformers `GPT2LMHeadModel` (its config and weights); logits match to 1e-4 in fp32."""
        from ._hf_gpt2 import gpt2_from_hf

        return gpt2_from_hf(cls, model)

    def example_input(self, batch_size: int, length: int = 8) -> Tensor:
        """Random token ids [batch_size, length] (no padding id among them), for tests and tracing."""
        return _example_ids(batch_size, min(length, self.context_length), self.vocab_size, self.pad_id)

    def forward(self, ids: Tensor, *, cache: DecoderCache | None = None, positions: Tensor | None = None) -> Tensor:
        """Logits [B, T, V] for ids [B, T] (all positions, or the new ones after those in `cache`).

        `positions` [T] places the tokens explicitly (default: 0, 1, ..., a randomised draw, or the cache's next).

        Raises:
            ValueError: More positions than `context_length`.
        """
        offset = 0 if cache is None else cache.length
        if offset + ids.shape[1] > self.context_length:
            raise ValueError(
                f"{offset + ids.shape[1]} positions exceed the model's context_length {self.context_length}; "
                "cut the input from the left (sampling does this with a warning)"
            )
        n = ids.shape[1]
        pos = next_positions(self.random_positions, cache, n, ids.device) if positions is None else positions
        h = self.decoder(self.embed(ids, offset=offset, positions=pos), cache=cache, positions=pos)
        return self.output(h)

    def init_cache(
        self, batch_size: int, max_len: int, *, dtype: torch.dtype = torch.float32, device: torch.device | None = None
    ) -> DecoderCache:
        """Empty self-attention caches for `batch_size` sequences of up to `max_len` positions."""
        positions = cache_positions(self.random_positions, max_len, device or torch.device("cpu"))
        return self.decoder.init_cache(batch_size, max_len, dtype=dtype, device=device, positions=positions)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that AdamW should not decay (the embedding tables)."""
        return {"embed.embed.weight", "output.weight", "embed.positions.*", "decoder.relative.*"}
