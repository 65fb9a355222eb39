"""The text modality's side of the contract: token ids as a sequence of embedded tokens, and how a text is drawn
(its tokens in a row, each shaded by its heat)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from mmattn.modality import InputEmbedding, Renderer, TokenLayout, Tokens
from mmattn.models import TokenEmbedding

__all__ = ["TextEmbedding", "TextRenderer"]


def token_names(tokenizer: Any, ids: list[int]) -> list[str]:
    """Each id's token string through the HF tokenizer behind ours (`tokenizer`, or `src` of a two-sided one)."""
    hf = getattr(tokenizer, "tokenizer", None) or getattr(tokenizer, "src", None)
    if not callable(getattr(hf, "id_to_token", None)):
        return [str(i) for i in ids]
    return [hf.id_to_token(i) or str(i) for i in ids]


class TextRenderer:
    """Draws token ids [N] as their token strings in rows, each on a background shaded by its heat."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def draw(
        self, ax: Any, example: Tensor, heat: Tensor | None, layout: TokenLayout, *, tokenizer: Any = None
    ) -> None:
        """Tokens on `ax` (pad ids left out), shaded by `heat` [N] when given."""
        import matplotlib

        ids = example.tolist()
        names = token_names(tokenizer, ids)
        values = None if heat is None else heat.detach().float().cpu()
        if values is not None and values.max() > values.min():
            values = (values - values.min()) / (values.max() - values.min())
        per_row = 8
        shown = [i for i, t in enumerate(ids) if t != self.pad_id]
        for j, i in enumerate(shown):
            colour = "white" if values is None else matplotlib.colormaps["Reds"](float(values[i]))
            x, y = (j % per_row) / per_row, 1 - (j // per_row + 1) / (len(shown) // per_row + 2)
            ax.text(x, y, names[i], fontsize=8, bbox={"facecolor": colour, "edgecolor": "grey", "pad": 2})
        ax.axis("off")


class TextEmbedding(InputEmbedding):
    """Token ids [B, N] (padding = `pad_id`) -> tokens [B, N, dim] with their own 1-D positions, and the padding mask.

    Args:
        vocab_size: Rows of the table (the tokenizer's vocabulary).
        dim: Token width.
        pad_id: Padding id.
        positions: "sinusoidal" or "learned" (a table of `max_positions`).
        max_positions: Longest text of a learned table.
        scale: Multiply embeddings by sqrt(dim).
        dropout: Dropout on the embedded tokens.
        example_length: Tokens per row of `example_input`.
    """

    modality = "text"
    positioned = True

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        *,
        pad_id: int = 0,
        positions: Literal["sinusoidal", "learned"] = "sinusoidal",
        max_positions: int = 512,
        scale: bool = True,
        dropout: float = 0.0,
        example_length: int = 16,
    ) -> None:
        super().__init__()
        self.dim, self.vocab_size, self.pad_id = dim, vocab_size, pad_id
        self.example_length = example_length
        self.embed_tokens = TokenEmbedding(
            vocab_size,
            dim,
            pad_id=pad_id,
            positions=positions,
            max_positions=max_positions,
            scale=scale,
            dropout=dropout,
        )

    @property
    def layout(self) -> TokenLayout:
        """A sequence of `example_length` tokens."""
        return TokenLayout.sequence(self.example_length)

    def embed(self, ids: Tensor) -> Tokens:
        """Tokens, padding mask (None when no row is padded) and sequence layout of ids [B, N]."""
        if ids.ndim != 2 or ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"TextEmbedding takes token ids [batch, length] (int64), got {tuple(ids.shape)} {ids.dtype}"
            )
        if ids.numel() and int(ids.max()) >= self.vocab_size:
            raise ValueError(f"token id {int(ids.max())} is outside the {self.vocab_size}-token vocabulary")
        mask = ids == self.pad_id
        return Tokens(self.embed_tokens(ids), mask if bool(mask.any()) else None, TokenLayout.sequence(ids.shape[1]))

    def example_input(self, batch_size: int) -> Tensor:
        """Random non-padding ids [batch_size, example_length]."""
        ids = torch.randint(0, self.vocab_size, (batch_size, self.example_length))
        return ids.masked_fill(ids == self.pad_id, (self.pad_id + 1) % self.vocab_size)

    def export_example(self, batch_size: int, size: int) -> dict[str, Tensor]:
        """Random non-padding ids [batch_size, size] named `inputs` (texts vary in length)."""
        ids = torch.randint(0, self.vocab_size, (batch_size, max(1, size)))
        return {"inputs": ids.masked_fill(ids == self.pad_id, (self.pad_id + 1) % self.vocab_size)}

    def export_axes(self) -> dict[str, dict[int, str]]:
        """Batch and length vary."""
        return {"inputs": {0: "batch", 1: "length"}}

    def renderer(self) -> Renderer:
        """Draws the tokens shaded by their heat."""
        return TextRenderer(self.pad_id)

    def no_weight_decay(self) -> set[str]:
        """The embedding table."""
        return {"embed_tokens.embed.weight"}
