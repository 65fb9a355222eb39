"""EncoderDecoder (Vaswani et al., 2017): source adapter -> Encoder -> Decoder with cross-attention -> output layer."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmattn.modality import InputEmbedding, require_embedding
from mmattn.nn import (
    Decoder,
    DecoderCache,
    Encoder,
    LearnedPositionalEmbedding,
    LearnedPositionalEmbedding2D,
    RandomPositions,
    SinCos2DPositionalEmbedding,
    SinusoidalPositionalEncoding,
    check_heads,
)

__all__ = ["SEQUENCE_POSITIONS", "EncoderDecoder", "TokenEmbedding"]

Positions = Literal["sinusoidal", "learned", "rotary", "alibi", "t5", "none"]
# Position schemes of token sequences: added to the embeddings (absolute) or applied inside attention (relative);
# "none" is NoPE (Kazemnejad et al., 2023): causal attention alone tells a token how many came before it.
ABSOLUTE = ("sinusoidal", "learned")
RELATIVE = ("rotary", "alibi", "t5")
SEQUENCE_POSITIONS = (*ABSOLUTE, *RELATIVE, "none")


def check_sequence_positions(
    name: str, scheme: str, *, max_positions: int | None, random_positions: int | None, causal: bool
) -> None:
    """Raise one line naming `scheme` and the limit when it cannot serve a token sequence this way."""
    if scheme not in SEQUENCE_POSITIONS:
        raise ValueError(f"{name} must be one of {SEQUENCE_POSITIONS}, got {scheme!r}")
    if scheme == "none" and not causal:
        raise ValueError(
            f"{name}='none' (NoPE) cannot order the tokens of a bidirectional encoder (it sees a bag of tokens); "
            "NoPE serves causal decoders only: choose another encoder scheme (e.g. encoder_positions=rotary)"
        )
    if random_positions is None:
        return
    if random_positions < 1:
        raise ValueError(f"random_positions must be a positive range of positions or null, got {random_positions}")
    if scheme == "none":
        raise ValueError("random_positions draws positions for a scheme to encode; positions='none' (NoPE) has none")
    if scheme == "learned" and max_positions is not None and random_positions > max_positions:
        raise ValueError(
            f"random_positions={random_positions} draws positions up to {random_positions - 1}, beyond the learned "
            f"table of {max_positions} positions; raise max_positions to {random_positions} or lower random_positions"
        )


class _GELUTanh(nn.GELU):
    """GELU with the tanh approximation (Hendrycks & Gimpel, 2016): GPT-2's "gelu_new"."""

    def __init__(self) -> None:
        super().__init__(approximate="tanh")


_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "gelu_tanh": _GELUTanh, "silu": nn.SiLU}


class TokenEmbedding(nn.Module):
    """Token ids [B, N] -> [B, N, D]: embedding * sqrt(D) + absolute positions, then dropout (the paper's input).

    Args:
        vocab_size: Rows of the table.
        dim: Token width D.
        pad_id: Padding id (its row starts at zero and gets no gradient); None: no padding row, every id is a
            real token (GPT-2's vocabulary has no spare id).
        positions: "sinusoidal" (fixed), "learned" (a table of `max_positions`) or "none" (rotary in attention).
        max_positions: Rows of a learned table (sinusoidal tables grow on demand).
        scale: Multiply embeddings by sqrt(D).
        dropout: Dropout on the sum.
        sinusoidal_layout: Channel order of the sinusoidal table, "interleaved" (the paper) or "halves" (Marian).
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        *,
        pad_id: int | None = 0,
        positions: Literal["sinusoidal", "learned", "none"] = "sinusoidal",
        max_positions: int = 1024,
        scale: bool = True,
        dropout: float = 0.0,
        sinusoidal_layout: Literal["interleaved", "halves"] = "interleaved",
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        # N(0, D^-1/2) keeps the scaled embedding at unit variance, on the scale of the positions.
        nn.init.normal_(self.embed.weight, std=dim**-0.5)
        if pad_id is not None:
            with torch.no_grad():
                self.embed.weight[pad_id].zero_()
        self.scale = math.sqrt(dim) if scale else 1.0
        if positions == "sinusoidal":
            self.positions: nn.Module | None = SinusoidalPositionalEncoding(
                dim, max_positions, layout=sinusoidal_layout
            )
        elif positions == "learned":
            self.positions = LearnedPositionalEmbedding(max_positions, dim)
        elif positions == "none":
            self.positions = None
        else:
            raise ValueError(f"positions must be 'sinusoidal', 'learned' or 'none', got {positions!r}")
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: Tensor, *, offset: int = 0, positions: Tensor | None = None) -> Tensor:
        """Embed ids [B, N] standing at positions offset, offset+1, ... (or at the integer `positions` [N])."""
        x = self.embed(ids) * self.scale
        if self.positions is not None:
            x = self.positions(x, offset=offset, positions=positions)
        return self.dropout(x)


class EncoderDecoder(nn.Module):
    """The Transformer of "Attention is all you need" on the shared core, for any source feeding a text decoder.

    The source is token ids [B, S] (padding = `pad_id`) unless a `source` is given: any modality's
    `mmattn.modality.InputEmbedding` (speech, image patches, ...). A source whose tokens carry no positions gets them
    from its layout (`source_positions`: a fixed 2-D sin-cos table or a learned one over its grid).

    Args:
        src_vocab_size: Source vocabulary (ignored with a `source` module).
        tgt_vocab_size: Target vocabulary.
        dim: Model width (d_model).
        encoder_depth: Encoder layers.
        decoder_depth: Decoder layers.
        num_heads: Attention heads.
        mlp_ratio: Feed-forward width over `dim` (2048 / 512 = 4 in the paper).
        activation: Feed-forward activation, "relu" (the paper), "gelu" or "silu".
        dropout: Dropout on embeddings and residual branches (0.1 in the paper).
        attn_dropout: Dropout on attention weights.
        act_dropout: Dropout after the feed-forward activation.
        positions: Token positions of both stacks: "sinusoidal" (the paper) or "learned" (added to the embeddings),
            "rotary", "alibi" or "t5" (relative, inside self-attention; cross-attention is by content), or "none"
            (NoPE: the decoder's causal attention alone; the encoder then needs `encoder_positions`).
        max_positions: Size of learned position tables.
        encoder_positions: The encoder's scheme when it differs from `positions` (null: the same).
        random_positions: Randomised positions (Ruoss et al., 2023): every sequence gets a sorted random subset of
            0..random_positions-1 as positions, in training and (seeded) in evaluation; null: 0, 1, 2, ...
        t5_buckets: Buckets of the T5 bias.
        t5_max_distance: Distance where the T5 bias's last bucket starts.
        share_embeddings: "none"; "decoder" ties the target embedding and the output projection; "all" also shares
            them with the source embedding (needs one joint vocabulary).
        norm_first: Pre-norm (default) or post-norm (the paper) layers.
        norm_eps: LayerNorm epsilon.
        pad_id: Padding id of both vocabularies.
        source: Optional input embedding of another modality replacing the source token embedding.
        source_positions: Positions added to a `source` whose tokens carry none: "sincos" (fixed 2-D, any grid),
            "learned" (a table over the source's layout, resampled for other grids) or "none".
        ctc: Add a CTC head on the encoder output (`ctc_logits`) for joint CTC/attention training and CTC greedy
            decoding; `Seq2SeqModule` uses the pad id, which no target contains, as CTC's blank.
        scale_embeddings: Multiply token embeddings by sqrt(dim) (the paper; Marian's `scale_embedding`).
        output_bias: A learned bias on the output logits (Marian's `final_logits_bias`), starting at zero.
        sinusoidal_layout: Channel order of sinusoidal positions, "interleaved" (the paper) or "halves" (Marian).

    Raises:
        ValueError: `num_heads` not dividing `dim`, `share_embeddings="all"` with two vocabulary sizes, or an unknown
            option.
    """

    def __init__(
        self,
        *,
        src_vocab_size: int,
        tgt_vocab_size: int,
        dim: int = 512,
        encoder_depth: int = 6,
        decoder_depth: int = 6,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        activation: str = "relu",
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        act_dropout: float = 0.0,
        positions: Positions = "sinusoidal",
        max_positions: int = 1024,
        encoder_positions: Positions | None = None,
        random_positions: int | None = None,
        t5_buckets: int = 32,
        t5_max_distance: int = 128,
        share_embeddings: Literal["none", "decoder", "all"] = "decoder",
        norm_first: bool = True,
        norm_eps: float = 1e-5,
        pad_id: int = 0,
        source: InputEmbedding | None = None,
        source_positions: Literal["sincos", "learned", "none"] = "sincos",
        ctc: bool = False,
        scale_embeddings: bool = True,
        output_bias: bool = False,
        sinusoidal_layout: Literal["interleaved", "halves"] = "interleaved",
    ) -> None:
        super().__init__()
        check_heads(dim, num_heads)
        encoder_positions = positions if encoder_positions is None else encoder_positions
        check_sequence_positions(
            "positions", positions, max_positions=max_positions, random_positions=random_positions, causal=True
        )
        if source is None:
            check_sequence_positions(
                "encoder_positions",
                encoder_positions,
                max_positions=max_positions,
                random_positions=random_positions,
                causal=False,
            )
        elif encoder_positions not in SEQUENCE_POSITIONS:
            raise ValueError(f"encoder_positions must be one of {SEQUENCE_POSITIONS}, got {encoder_positions!r}")
        if share_embeddings not in ("none", "decoder", "all"):
            raise ValueError(f"share_embeddings must be 'none', 'decoder' or 'all', got {share_embeddings!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if share_embeddings == "all" and source is None and src_vocab_size != tgt_vocab_size:
            raise ValueError(
                f"share_embeddings='all' needs one joint vocabulary, but src_vocab_size={src_vocab_size} and "
                f"tgt_vocab_size={tgt_vocab_size}; train a joint tokenizer or use share_embeddings='decoder'"
            )
        self.dim = dim
        self.pad_id = pad_id
        self.src_vocab_size = src_vocab_size
        self.tgt_vocab_size = tgt_vocab_size
        self.random_positions = None if random_positions is None else RandomPositions(random_positions)
        embed_kw = dict(
            pad_id=pad_id,
            max_positions=max_positions,
            scale=scale_embeddings,
            dropout=dropout,
            sinusoidal_layout=sinusoidal_layout,
        )
        absolute = positions if positions in ABSOLUTE else "none"
        self.tgt_embed = TokenEmbedding(tgt_vocab_size, dim, positions=absolute, **embed_kw)
        self.source = None if source is None else require_embedding(source, "EncoderDecoder source")
        self.source_pos: nn.Module | None = None
        if source is not None and source.dim != dim:
            raise ValueError(f"the {source.modality} source gives {source.dim}-wide tokens but dim is {dim}")
        if source is not None and not source.positioned:
            if source_positions == "sincos":
                self.source_pos = SinCos2DPositionalEmbedding(source.layout.shape, dim)
            elif source_positions == "learned":
                self.source_pos = LearnedPositionalEmbedding2D(source.layout.shape, dim)
            elif source_positions != "none":
                raise ValueError(f"source_positions must be 'sincos', 'learned' or 'none', got {source_positions!r}")
        self.src_embed: TokenEmbedding | None = None
        if source is None:
            src_absolute = encoder_positions if encoder_positions in ABSOLUTE else "none"
            self.src_embed = TokenEmbedding(src_vocab_size, dim, positions=src_absolute, **embed_kw)
            if share_embeddings == "all":
                self.src_embed.embed = self.tgt_embed.embed
        stack_kw = dict(
            mlp_ratio=mlp_ratio,
            dropout=dropout,
            attn_dropout=attn_dropout,
            act_dropout=act_dropout,
            act_layer=_ACTIVATIONS[activation],
            norm_first=norm_first,
            norm_eps=norm_eps,
            t5_buckets=t5_buckets,
            t5_max_distance=t5_max_distance,
        )
        self.encoder = Encoder(
            dim,
            encoder_depth,
            num_heads,
            relative_position=encoder_positions if encoder_positions in RELATIVE else None,
            **stack_kw,
        )
        self.decoder = Decoder(
            dim, decoder_depth, num_heads, relative_position=positions if positions in RELATIVE else None, **stack_kw
        )
        self.output = nn.Linear(dim, tgt_vocab_size, bias=output_bias)
        if output_bias:
            nn.init.zeros_(self.output.bias)
        if share_embeddings in ("decoder", "all"):
            self.output.weight = self.tgt_embed.embed.weight
        else:
            nn.init.normal_(self.output.weight, std=dim**-0.5)
        # Its own projection, not the tied output layer: CTC's blank and per-frame labels are a different task.
        self.ctc_head = nn.Linear(dim, tgt_vocab_size) if ctc else None
        for stack in (self.encoder, self.decoder):
            for m in stack.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    @classmethod
    def from_hf(cls, model: nn.Module) -> EncoderDecoder:
        """Build ours from a transformers `MarianMTModel` (its config and weights); logits match to 1e-4 in fp32.

        Marian starts decoding from its pad id: pass `bos_id=config.decoder_start_token_id` to `greedy_decode` /
        `beam_search` (see `mmattn.models._hf_marian` for the generate settings that give the same outputs).
        """
        from ._hf_marian import marian_from_hf

        return marian_from_hf(cls, model)

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Encoder output [B, S, D] and its padding mask [B, S] (True = padding) for a source batch."""
        if self.source is not None:
            embedded = self.source(src)
            tokens = embedded.tokens
            if self.source_pos is not None:
                tokens = self.source_pos(tokens, embedded.layout.shape)
            mask = src_padding_mask if src_padding_mask is not None else embedded.padding_mask
            pos = next_positions(self.random_positions, None, tokens.shape[1], tokens.device)
        else:
            mask = src == self.pad_id if src_padding_mask is None else src_padding_mask
            pos = next_positions(self.random_positions, None, src.shape[1], src.device)
            tokens = self.src_embed(src, positions=pos)
        # An all-False mask costs a masked attention kernel for nothing.
        mask = mask if mask is not None and bool(mask.any()) else None
        return self.encoder(tokens, key_padding_mask=mask, positions=pos), mask

    @property
    def position_limit(self) -> tuple[int, str] | None:
        """The most positions a sequence can take and the config key that sets it (a learned table's rows or the
        randomised range), or None when any length works."""
        limits = []
        for embed in (self.src_embed, self.tgt_embed):
            if embed is not None and isinstance(embed.positions, LearnedPositionalEmbedding):
                limits.append((embed.positions.num_positions, "model.max_positions"))
        if self.random_positions is not None:
            limits.append((self.random_positions.max_len, "model.random_positions"))
        return min(limits) if limits else None

    def encode_padded(self, src: Any) -> tuple[Tensor, Tensor]:
        """`encode` with the padding mask always a tensor (no data-dependent branch, so it exports)."""
        if self.random_positions is not None:
            raise ValueError("a model with random_positions draws positions at run time and cannot be exported")
        if self.source is None:
            mask = src == self.pad_id
            tokens = self.src_embed(src)
        else:
            tokens, mask = self.source.padded_tokens(src)
            if self.source_pos is not None:
                tokens = self.source_pos(tokens, self.source.layout.shape)
        return self.encoder(tokens, key_padding_mask=mask), mask

    def decode(
        self,
        tgt_in: Tensor,
        memory: Tensor,
        memory_padding_mask: Tensor | None = None,
        *,
        cache: DecoderCache | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        """Next-token logits [B, T, V] for target inputs [B, T] (all of them, or the new ones after `cache`);
        `positions` [T] places them explicitly (default: 0, 1, ..., a randomised draw, or the cache's next).

        Target padding needs no mask: padding only follows the real tokens, which causal attention keeps from seeing
        it, and the loss ignores the padded positions.
        """
        n = tgt_in.shape[1]
        offset = 0 if cache is None else cache.length
        pos = next_positions(self.random_positions, cache, n, tgt_in.device) if positions is None else positions
        y = self.tgt_embed(tgt_in, offset=offset, positions=pos)
        h = self.decoder(y, memory, memory_key_padding_mask=memory_padding_mask, cache=cache, positions=pos)
        return self.output(h)

    def example_input(self, batch_size: int, length: int = 8) -> tuple[Any, Tensor]:
        """Random `(src, tgt_in)` arguments of `forward` (source from its embedding, or ids), for tests and tracing."""
        tgt = _example_ids(batch_size, length, self.tgt_vocab_size, self.pad_id)
        if self.source is not None:
            return self.source.example_input(batch_size), tgt
        return _example_ids(batch_size, length, self.src_vocab_size, self.pad_id), tgt

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits [B, T, V] for source ids [B, S] and target inputs [B, T] (bos + target[:-1])."""
        memory, mask = self.encode(src)
        return self.decode(tgt_in, memory, mask)

    def ctc_logits(self, memory: Tensor) -> Tensor:
        """Per-frame CTC logits [B, S, V] of an encoder output [B, S, D].

        Raises:
            ValueError: The model was built without `ctc=True`.
        """
        if self.ctc_head is None:
            raise ValueError("this EncoderDecoder has no CTC head; build it with ctc=true (model.ctc=true)")
        return self.ctc_head(memory)

    def init_cache(self, batch_size: int, max_len: int, memory: Tensor) -> DecoderCache:
        """Empty decoder caches for `batch_size` rows, `max_len` target tokens and this encoder output."""
        return self.decoder.init_cache(
            batch_size,
            max_len,
            memory_len=memory.shape[1],
            dtype=memory.dtype,
            device=memory.device,
            positions=cache_positions(self.random_positions, max_len, memory.device),
        )

    def no_weight_decay(self) -> set[str]:
        """Parameter names that AdamW should not decay (embedding tables)."""
        names = {"tgt_embed.embed.weight", "output.weight", "encoder.relative.*", "decoder.relative.*"}
        if isinstance(self.source_pos, LearnedPositionalEmbedding2D):
            names.add("source_pos.weight")
        if self.src_embed is not None:
            names.add("src_embed.embed.weight")
        return names


def next_positions(
    random: RandomPositions | None, cache: DecoderCache | None, n: int, device: torch.device
) -> Tensor | None:
    """Positions of n new tokens: the cache's next ones, a randomised draw without a cache, or None (0, 1, 2, ...)."""
    if cache is not None:
        return None if cache.positions is None else cache.positions[cache.length : cache.length + n]
    return None if random is None else random.draw(n, device=device)


def cache_positions(random: RandomPositions | None, max_len: int, device: torch.device) -> Tensor | None:
    """Positions of a decoding cache's steps: one randomised draw for all of them (steps beyond the drawn range
    continue after it), or None for 0, 1, 2, ..."""
    if random is None:
        return None
    drawn = random.draw(min(max_len, random.max_len), device=device)
    beyond = torch.arange(random.max_len, random.max_len + max_len - drawn.shape[0], device=device)
    return torch.cat([drawn, beyond])


def _example_ids(batch_size: int, length: int, vocab_size: int, pad_id: int | None) -> Tensor:
    """Random token ids [batch_size, length] with no padding id among them."""
    ids = torch.randint(0, vocab_size, (batch_size, length))
    if pad_id is not None and vocab_size > 1:
        ids[ids == pad_id] = (pad_id + 1) % vocab_size
    return ids
