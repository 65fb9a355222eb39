"""FusionEncoder: several inputs, each through its own modality's embedding, fused into one shared Encoder (early
fusion), then a class-token head."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmattn.modality import InputEmbedding, TokenLayout, Tokens, require_embedding
from mmattn.nn import Encoder, LearnedPositionalEmbedding2D, SinCos2DPositionalEmbedding, check_heads

__all__ = ["EncoderTokens", "FusionEncoder", "PRESENT_KEY", "encoder_tokens_from_checkpoint"]

log = logging.getLogger(__name__)

# The optional entry of an input mapping that marks, per member, which rows hold that input (bool [B]).
PRESENT_KEY = "present"


class FusionEncoder(nn.Module):
    """Early fusion of any modalities: each member's tokens get positions by its layout and a learned type embedding
    (which input they come from), all are concatenated behind a class token into one shared `Encoder`, and the class
    token's output feeds a linear head.

    Inputs are a mapping `{member name: that member's input batch}`, optionally with `"present": {name: bool [B]}`.
    A member left out of the mapping is absent in every row; a row marked absent has that member's tokens masked
    (attention never sees them), so a batch with a missing input is classified from the others, never crashed.

    Args:
        members: `{name: InputEmbedding}`, any modalities (at least two; each gives `dim`-wide tokens).
        num_classes: Classes of the head; 0 returns the pooled features.
        dim: Token width.
        depth: Encoder layers.
        num_heads: Attention heads.
        mlp_ratio: Feed-forward width over `dim`.
        pos_embed: Positions of members whose tokens carry none: "learned" (a table over each member's layout,
            resampled for other grids) or "sincos".
        drop_rate: Dropout on residual branches and before the head.
        drop_path_rate: Stochastic depth of the last layer.

    Raises:
        ValueError: Fewer than two members, a member that does not implement the modality contract, a member of
            another width, a reserved member name, or bad options.
    """

    def __init__(
        self,
        members: Mapping[str, InputEmbedding],
        *,
        num_classes: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        pos_embed: Literal["learned", "sincos"] = "learned",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        check_heads(dim, num_heads)
        if len(members) < 2:
            raise ValueError(f"FusionEncoder fuses at least two inputs, got members {sorted(members)}")
        if PRESENT_KEY in members:
            raise ValueError(f"{PRESENT_KEY!r} is reserved for the presence flags; rename that member")
        if pos_embed not in ("learned", "sincos"):
            raise ValueError(f"pos_embed must be 'learned' or 'sincos', got {pos_embed!r}")
        for name, member in members.items():
            require_embedding(member, f"FusionEncoder member {name!r}")
            if member.dim != dim:
                raise ValueError(f"member {name!r} ({member.modality}) gives {member.dim}-wide tokens, dim is {dim}")
        self.names = list(members)
        self.members = nn.ModuleDict(dict(members))
        self.num_classes, self.dim = num_classes, dim
        positions: dict[str, nn.Module] = {}
        for name, member in members.items():
            if not member.positioned:
                kind = LearnedPositionalEmbedding2D if pos_embed == "learned" else SinCos2DPositionalEmbedding
                positions[name] = kind(member.layout.shape, dim)
        self.positions = nn.ModuleDict(positions)
        self.type_embed = nn.Parameter(torch.zeros(len(self.names), dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder = Encoder(dim, depth, num_heads, mlp_ratio=mlp_ratio, dropout=drop_rate, drop_path=drop_path_rate)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.encoder.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.type_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def no_weight_decay(self) -> set[str]:
        """Class token, type embeddings and learned position tables."""
        names = {"cls_token", "type_embed"}
        names |= {
            f"positions.{n}.weight" for n, p in self.positions.items() if isinstance(p, LearnedPositionalEmbedding2D)
        }
        return names

    def example_input(self, batch_size: int) -> dict[str, Any]:
        """Every member's example input."""
        return {name: self.members[name].example_input(batch_size) for name in self.names}

    def _present(self, inputs: Mapping[str, Any], batch_size: int, device: torch.device) -> dict[str, Tensor]:
        flags = inputs.get(PRESENT_KEY) or {}
        out = {}
        for name in self.names:
            if name not in inputs:
                out[name] = torch.zeros(batch_size, dtype=torch.bool, device=device)
            else:
                flag = flags.get(name)
                out[name] = torch.ones(batch_size, dtype=torch.bool, device=device) if flag is None else flag.to(device)
        return out

    def encode(self, inputs: Mapping[str, Any]) -> tuple[Tensor, Tensor | None, dict[str, tuple[slice, TokenLayout]]]:
        """Output tokens [B, 1 + N, D] (class token first), their padding mask, and where each member's tokens lie
        (a slice of the N input tokens and their layout)."""
        unknown = sorted(set(inputs) - {*self.names, PRESENT_KEY})
        if unknown:
            raise ValueError(f"FusionEncoder has members {self.names}; the inputs also hold {unknown}")
        given = [n for n in self.names if n in inputs]
        if not given:
            raise ValueError(f"no input of any member ({self.names}) in this batch")
        parts, masks, spans = [], [], {}
        offset = 0
        for name in given:
            embedded = self.members[name](inputs[name])
            tokens = embedded.tokens
            if name in self.positions:
                tokens = self.positions[name](tokens, embedded.layout.shape)
            parts.append(tokens + self.type_embed[self.names.index(name)])
            masks.append(embedded.padding_mask)
            spans[name] = (slice(offset, offset + tokens.shape[1]), embedded.layout)
            offset += tokens.shape[1]
        b, device = parts[0].shape[0], parts[0].device
        present = self._present(inputs, b, device)
        mask_parts = [torch.zeros(b, 1, dtype=torch.bool, device=device)]  # the class token is always there
        for name, tokens, mask in zip(given, parts, masks):
            absent = ~present[name][:, None].expand(-1, tokens.shape[1])
            mask_parts.append(absent if mask is None else absent | mask)
        mask = torch.cat(mask_parts, dim=1)
        x = torch.cat([self.cls_token.expand(b, -1, -1), *parts], dim=1)
        mask = mask if bool(mask.any()) else None
        return self.encoder(x, key_padding_mask=mask), mask, spans

    def forward(self, inputs: Mapping[str, Any]) -> Tensor:
        """Logits [B, num_classes] (pooled features [B, dim] when `num_classes` is 0)."""
        tokens, _, _ = self.encode(inputs)
        return self.head(self.head_drop(tokens[:, 0]))

    def select(self, inputs: Mapping[str, Any], k: int) -> dict[str, Any]:
        """The first k rows of every member's input (and of the presence flags)."""
        out: dict[str, Any] = {n: self.members[n].select(inputs[n], k) for n in self.names if n in inputs}
        if PRESENT_KEY in inputs:
            out[PRESENT_KEY] = {n: flag[:k] for n, flag in inputs[PRESENT_KEY].items()}
        return out


class EncoderTokens(InputEmbedding):
    """A trained `EncoderClassifier`'s output tokens (its embedding, positions and encoder; no pooling, no head) as an
    input embedding: a pretrained single-modality encoder as a member of a fusion model (or any family's input).

    The modality's reader, renderer and batch handling are the wrapped embedding's. Its tokens carry positions.

    Args:
        net: The encoder (e.g. the net of a vision or audio classifier checkpoint).
        dim: Width of the tokens given out (a linear projection when it differs from the encoder's); None keeps it.
        freeze: Keep the encoder's weights as they are (no gradients, eval mode: dropout off), and save its
            backward pass.
        pooled: Give one token, the encoder's pooled features (what its head reads: the class token's output or the
            token average), instead of its patch tokens. A classifier trained with class-token pooling sends what it
            learned about the whole input through that token; its last layer's patch outputs never reach its loss.

    Raises:
        ValueError: `net` is not an `EncoderClassifier`.
    """

    positioned = True

    def __init__(self, net: nn.Module, *, dim: int | None = None, freeze: bool = True, pooled: bool = False) -> None:
        super().__init__()
        from mmattn.models.classifier import EncoderClassifier

        if not isinstance(net, EncoderClassifier):
            raise ValueError(f"EncoderTokens wraps an EncoderClassifier, got {type(net).__name__}")
        self.net, self.freeze, self.pooled = net, freeze, pooled
        self.dim = net.dim if dim is None else dim
        self.modality = net.embed.modality
        self.proj = nn.Linear(net.dim, self.dim) if self.dim != net.dim else nn.Identity()
        if freeze:
            net.requires_grad_(False)

    def train(self, mode: bool = True) -> EncoderTokens:
        """Train mode for the projection; a frozen encoder stays in eval mode."""
        super().train(mode)
        if self.freeze:
            self.net.eval()
        return self

    @property
    def layout(self) -> TokenLayout:
        """The wrapped embedding's layout (one token over the whole input when `pooled`)."""
        return TokenLayout.grid(1, 1) if self.pooled else self.net.embed.layout

    def embed(self, x: Any) -> Tokens:
        """The encoder's output tokens of the input (prefix tokens left out), or its pooled features as one token,
        projected to `dim`."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            tokens, mask, embedded = self.net.encode(x)
            if self.pooled:
                return Tokens(
                    self.proj(self.net.forward_head(tokens, pre_logits=True, padding_mask=mask))[:, None],
                    None,
                    self.layout,
                )
        p = self.net.num_prefix_tokens
        return Tokens(self.proj(tokens[:, p:]), None if mask is None else mask[:, p:], embedded.layout)

    def example_input(self, batch_size: int) -> Any:
        """The wrapped embedding's example input."""
        return self.net.embed.example_input(batch_size)

    def reader(self) -> Any:
        """The wrapped embedding's file reader."""
        return self.net.embed.reader()

    def renderer(self) -> Any:
        """The wrapped embedding's renderer."""
        return self.net.embed.renderer()

    def batch_size(self, x: Any) -> int:
        """As the wrapped embedding counts."""
        return self.net.embed.batch_size(x)

    def examples(self, x: Any, k: int) -> list[Any]:
        """As the wrapped embedding splits."""
        return self.net.embed.examples(x, k)

    def select(self, x: Any, k: int) -> Any:
        """As the wrapped embedding selects."""
        return self.net.embed.select(x, k)


def encoder_tokens_from_checkpoint(
    ckpt_path: str,
    *,
    dim: int | None = None,
    freeze: bool = True,
    pooled: bool = False,
    trust: tuple[str, ...] | list[str] = (),
) -> EncoderTokens:
    """`EncoderTokens` around the net of a classifier checkpoint (or saved folder) of mmattn-train, with its weights.

    The result records its architecture (`init_config`), so a run built from it stores the encoder's config, not this
    path: its checkpoints rebuild without the file.
    """
    from mmattn.checkpoint import load
    from mmattn.models.pretrained import record_init_config

    module = load(ckpt_path, trust=tuple(trust))
    net_config = module.hparams.get("net")
    if not net_config:
        raise ValueError(f"{ckpt_path} records no network config; train it with mmattn-train")
    tokens = EncoderTokens(module.net, dim=dim, freeze=freeze, pooled=pooled)
    log.info(
        f"fusion member from {ckpt_path}: {type(module.net).__name__} ({tokens.modality}), frozen={freeze}, "
        f"pooled={pooled}"
    )
    return record_init_config(
        tokens, "mmattn.models.EncoderTokens", net=net_config, dim=dim, freeze=freeze, pooled=pooled
    )
