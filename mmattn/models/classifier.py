"""EncoderClassifier: any modality's input embedding -> prefix tokens -> positions -> Encoder -> pooling -> head."""

from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmattn.modality import InputEmbedding, Tokens, require_embedding
from mmattn.nn import Encoder, LearnedPositionalEmbedding2D, SinCos2DPositionalEmbedding, check_heads

__all__ = ["GRID_POSITIONS", "EncoderClassifier"]

# Position schemes of patch grids: added tables, 2-D rotations inside attention, or none.
GRID_POSITIONS = ("learned", "sincos", "rotary2d", "rotary2d_mixed", "none")
SEQUENCE = ("sinusoidal", "rotary", "alibi", "t5")


class EncoderClassifier(nn.Module):
    """The ViT/AST family built around any input embedding; with `num_classes=0`, the encoder tower of a dual
    encoder (pooled features).

    `embed` is an `mmattn.modality.InputEmbedding`: inputs -> tokens, padding mask and token layout. Embeddings whose
    tokens carry no positions get them here from the layout (a 2-D table over the grid the model is built for,
    resampled for other grids; a sequence is a 1 x n grid); embeddings that place their own (`positioned`, e.g. text)
    get none. Padded tokens are masked in attention and left out of average pooling.

    Args:
        embed: The modality's input embedding.
        num_classes: Classes of the head; 0 leaves the pooled features unprojected.
        dim: Token width D (must equal the embedding's output width).
        depth: Encoder layers.
        num_heads: Attention heads.
        mlp_ratio: Feed-forward width over `dim`.
        qkv_bias: Bias of the query/key/value projections.
        qk_norm: LayerNorm on queries and keys.
        class_token: Prepend a learned class token.
        dist_token: Also prepend a distillation token (DeiT/AST); "cls" pooling then averages both tokens' outputs.
        pool: "cls" (the class token's output) or "avg" (mean over patch tokens).
        pos_embed: "learned" (added, resampled bicubically for another grid), "sincos" (added, fixed 2-D), "rotary2d"
            / "rotary2d_mixed" (queries and keys of patch tokens rotated by their grid cell in every layer, axial or
            with learned mixed frequencies; any grid) or "none".
        layer_scale: Initial LayerScale value, None to disable.
        drop_rate: Dropout before the head and on the residual branches.
        pos_drop_rate: Dropout after adding positions.
        attn_drop_rate: Dropout on attention weights.
        drop_path_rate: Stochastic depth rate of the last layer (linear from 0).
        norm_first: Pre-norm (True) or post-norm layers.
        fc_norm: LayerNorm after pooling instead of before it; defaults to True for average pooling (as timm).
        final_norm: Keep the encoder's final LayerNorm; defaults to "unless fc_norm". AST has both (final_norm and
            fc_norm True: its head is LayerNorm + Linear after the encoder's norm).
        norm_eps: LayerNorm epsilon.
        ffn: Feed-forward kind, "gelu" or "swiglu".

    Raises:
        ValueError: On an unknown `pool`/`pos_embed`, `pool="cls"` without a class token, `num_heads` not dividing
            `dim`, or an embedding that does not implement the modality contract.
    """

    def __init__(
        self,
        embed: InputEmbedding,
        *,
        num_classes: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        class_token: bool = True,
        dist_token: bool = False,
        pool: Literal["cls", "avg"] = "cls",
        pos_embed: Literal["learned", "sincos", "rotary2d", "rotary2d_mixed", "none"] = "learned",
        layer_scale: float | None = None,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_first: bool = True,
        fc_norm: bool | None = None,
        final_norm: bool | None = None,
        norm_eps: float = 1e-6,
        ffn: Literal["gelu", "swiglu"] = "gelu",
    ) -> None:
        super().__init__()
        if pool not in ("cls", "avg"):
            raise ValueError(f"pool must be 'cls' or 'avg', got {pool!r}")
        if pool == "cls" and not class_token:
            raise ValueError("pool='cls' needs class_token=True; use pool='avg' for a model without class token")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        check_heads(dim, num_heads)
        self.embed = require_embedding(embed, "EncoderClassifier embed")
        if embed.dim != dim:
            raise ValueError(f"the {embed.modality} embedding gives {embed.dim}-wide tokens but dim is {dim}")
        self.num_classes = num_classes
        self.dim = dim
        self.pool = pool
        self.grid_size = embed.layout.shape
        self.num_prefix_tokens = int(class_token) + int(dist_token)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if dist_token else None
        if pos_embed not in GRID_POSITIONS:
            hint = " (1-D schemes such as rotary, alibi and t5 serve token sequences)" if pos_embed in SEQUENCE else ""
            raise ValueError(f"pos_embed must be one of {GRID_POSITIONS} for a patch grid, got {pos_embed!r}{hint}")
        rotary = pos_embed in ("rotary2d", "rotary2d_mixed") and not embed.positioned
        self.pos_embed = None
        if embed.positioned or pos_embed in ("none", "rotary2d", "rotary2d_mixed"):
            pass
        elif pos_embed == "learned":
            self.pos_embed = LearnedPositionalEmbedding2D(self.grid_size, dim, num_prefix_tokens=self.num_prefix_tokens)
        else:
            self.pos_embed = SinCos2DPositionalEmbedding(self.grid_size, dim, num_prefix_tokens=self.num_prefix_tokens)
        self.pos_drop = nn.Dropout(pos_drop_rate)
        use_fc_norm = pool == "avg" if fc_norm is None else fc_norm
        self.encoder = Encoder(
            dim,
            depth,
            num_heads,
            mlp_ratio=mlp_ratio,
            ffn=ffn,
            dropout=drop_rate,
            attn_dropout=attn_drop_rate,
            drop_path=drop_path_rate,
            layer_scale=layer_scale,
            qkv_bias=qkv_bias,
            qk_norm=qk_norm,
            norm_first=norm_first,
            norm_eps=norm_eps,
            final_norm=norm_first and (not use_fc_norm if final_norm is None else final_norm),
            relative_position=pos_embed if rotary else None,
        )
        self.fc_norm = nn.LayerNorm(dim, eps=norm_eps) if use_fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Truncated-normal(0.02) linear weights and tables, zero biases, tiny prefix tokens (the ViT recipe)."""
        for m in self.encoder.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if isinstance(self.head, nn.Linear):
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)
        for token in (self.cls_token, self.dist_token):
            if token is not None:
                nn.init.normal_(token, std=1e-6)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that AdamW should not decay."""
        names = {"cls_token", "dist_token", "encoder.relative.*"}
        if isinstance(self.pos_embed, LearnedPositionalEmbedding2D):
            names.add("pos_embed.weight")
        return names

    def example_input(self, batch_size: int) -> Any:
        """A random input of the size the model is built for, from its embedding (for tracing and export)."""
        return self.embed.example_input(batch_size)

    def encode(self, x: Any) -> tuple[Tensor, Tensor | None, Tokens]:
        """Output tokens [B, P + N, D] (P prefix tokens first), their padding mask (None: no padding) and the
        embedded input (its layout is the token grid of this input)."""
        embedded = self.embed(x)
        tokens, mask = embedded.tokens, embedded.padding_mask
        b = tokens.shape[0]
        prefix = [t.expand(b, -1, -1) for t in (self.cls_token, self.dist_token) if t is not None]
        if prefix:
            tokens = torch.cat([*prefix, tokens], dim=1)
            if mask is not None:
                mask = torch.cat([mask.new_zeros(b, self.num_prefix_tokens), mask], dim=1)
        if self.pos_embed is not None:
            tokens = self.pos_embed(tokens, embedded.layout.shape)
        encoded = self.encoder(
            self.pos_drop(tokens),
            key_padding_mask=mask,
            grid_size=tuple(embedded.layout.shape),
            num_prefix_tokens=self.num_prefix_tokens,
        )
        return encoded, mask, embedded

    def forward_features(self, x: Any) -> Tensor:
        """All output tokens [B, P + N, D] (P prefix tokens first)."""
        return self.encode(x)[0]

    def forward_head(self, tokens: Tensor, *, pre_logits: bool = False, padding_mask: Tensor | None = None) -> Tensor:
        """Pool the tokens and apply the head (or return the pooled features with `pre_logits`); average pooling
        leaves out the tokens `padding_mask` marks."""
        if self.pool == "cls":
            pooled = tokens[:, 0] if self.dist_token is None else tokens[:, :2].mean(dim=1)
        elif padding_mask is None:
            pooled = tokens[:, self.num_prefix_tokens :].mean(dim=1)
        else:
            keep = (~padding_mask[:, self.num_prefix_tokens :]).to(tokens.dtype)[..., None]
            pooled = (tokens[:, self.num_prefix_tokens :] * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1)
        pooled = self.head_drop(self.fc_norm(pooled))
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: Any) -> Tensor:
        """Logits [B, num_classes] for the raw input (pooled features [B, dim] when `num_classes` is 0)."""
        tokens, mask, _ = self.encode(x)
        return self.forward_head(tokens, padding_mask=mask)
