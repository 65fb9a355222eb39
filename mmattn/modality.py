"""The modality contract: what one kind of input provides so that every model family of the core can take it.

A modality package (images, spectrograms, text, speech, a user's sensors) implements `InputEmbedding`:

- `embed(x) -> Tokens`: a batch of its inputs as tokens [B, N, D], a padding mask [B, N] (True = padding) or None,
  and the `TokenLayout` of those tokens: a grid (h, w) for images and spectrograms, a sequence (1, n) for text,
  audio frames or sensor windows. Families place positions by the layout and pictures draw by it.
- `layout`: the layout at the input size the model is built for (it sizes learned position tables).
- `example_input(batch_size)`: a random input of that size (tracing, export, the contract test).
- `reader()`: a `FileReader` (`read_file(path)` + `collate(items)`) for inference on files, or None: it has none.
- `renderer()`: a `Renderer` that draws one input with a heat map over its tokens (`mmattn-viz`, the
  `attention_maps` callback), or None.
- `batch_size(x)` / `examples(x, k)`: how many examples a batch holds and the first k of them, one by one (the
  defaults handle a tensor batch; inputs of another structure override them).
- `vocab_size`: for an embedding of token ids (its input is the data's tokenizer's ids), the ids its table holds;
  None for every other input. Families check it against the tokenizer, and read strings given for it as texts
  (encoded by the datamodule's `encode_texts`) rather than as file paths.

Families (`EncoderClassifier`, `EncoderDecoder`'s source, `DualEncoder` towers, `FusionEncoder` members) check an
embedding with `require_embedding` when they are built, and ask for a reader or renderer with `require_reader` /
`require_renderer` where they need one, so a missing part stops with one line naming the modality and the part.
Nothing in the core looks at an input's shape to guess what it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

__all__ = [
    "FileReader",
    "InputEmbedding",
    "Renderer",
    "TokenLayout",
    "Tokens",
    "modality_name",
    "require_embedding",
    "require_reader",
    "require_renderer",
]


@dataclass(frozen=True)
class TokenLayout:
    """How N tokens lie: `rows` x `cols`, row-major. A sequence is one row (`TokenLayout.sequence(n)`)."""

    rows: int
    cols: int

    @classmethod
    def grid(cls, rows: int, cols: int) -> TokenLayout:
        """A 2-D grid of tokens (patches of an image or spectrogram)."""
        return cls(int(rows), int(cols))

    @classmethod
    def sequence(cls, length: int) -> TokenLayout:
        """A 1-D sequence of tokens (text, audio frames, sensor patches)."""
        return cls(1, int(length))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return self.rows, self.cols

    @property
    def num_tokens(self) -> int:
        """rows * cols."""
        return self.rows * self.cols

    @property
    def is_sequence(self) -> bool:
        """One row of tokens."""
        return self.rows == 1


class Tokens(NamedTuple):
    """An embedded batch: tokens [B, N, D], padding mask [B, N] (True = padding) or None, and their layout."""

    tokens: Tensor
    padding_mask: Tensor | None
    layout: TokenLayout


@runtime_checkable
class FileReader(Protocol):
    """Reads one file into what `collate` batches into the embedding's input."""

    # File suffixes it reads (".wav", ".png", ...), or None for any: what mmattn-predict takes from a folder.
    extensions: tuple[str, ...] | None
    # Its names of the file in a JSON-lines manifest entry (before the generic "path" and "file").
    manifest_keys: tuple[str, ...]

    def read_file(self, path: str | Path) -> Any:
        """One file as one example."""
        ...

    def collate(self, items: Sequence[Any]) -> Any:
        """Examples read by `read_file` as one input batch."""
        ...


@runtime_checkable
class Renderer(Protocol):
    """Draws one input example on a matplotlib axes, with a heat map over its tokens."""

    def draw(self, ax: Any, example: Any, heat: Tensor | None, layout: TokenLayout, *, tokenizer: Any = None) -> None:
        """Draw `example` (one item of `InputEmbedding.examples`) on `ax`, with `heat` [N] (one value per token of
        `layout`, row-major) over it when given. `tokenizer` is the module's, for inputs made of token ids."""
        ...


class InputEmbedding(nn.Module, ABC):
    """A modality's input embedding: inputs -> `Tokens`. See the module docstring for the contract.

    Class attributes:
        modality: A short human name for messages ("image patches", "speech").
        positioned: The tokens already carry positions (the family adds none); otherwise the family places positions
            by the layout (2-D tables for grids, 1-D for sequences).

    Attributes:
        vocab_size: Token ids the embedding holds, when its input is the ids of a tokenizer; None otherwise.
    """

    modality: ClassVar[str] = "input"
    positioned: ClassVar[bool] = False
    vocab_size: int | None = None

    # Token width D; implementations set it in __init__.
    dim: int

    @property
    @abstractmethod
    def layout(self) -> TokenLayout:
        """The token layout at the input size the model is built for."""

    @abstractmethod
    def embed(self, x: Any) -> Tokens:
        """Tokens, padding mask and layout of a batch of inputs."""

    @abstractmethod
    def example_input(self, batch_size: int) -> Any:
        """A random input batch of the size the model is built for."""

    def reader(self) -> FileReader | None:
        """The file reader for inference on files, or None (this modality is not read from files by itself)."""
        return None

    def renderer(self) -> Renderer | None:
        """The renderer of one input with a heat map, or None."""
        return None

    def batch_size(self, x: Any) -> int:
        """Examples in an input batch (a tensor batch by default; other structures override this)."""
        if torch.is_tensor(x):
            return int(x.shape[0])
        raise TypeError(f"{modality_name(self)}: override batch_size() for inputs of type {type(x).__name__}")

    def examples(self, x: Any, k: int) -> list[Any]:
        """The first k examples of a batch, one by one, as the renderer draws them."""
        if torch.is_tensor(x):
            return list(x[:k])
        raise TypeError(f"{modality_name(self)}: override examples() for inputs of type {type(x).__name__}")

    def select(self, x: Any, k: int) -> Any:
        """The first k examples of a batch, still batched (a tensor batch by default)."""
        if torch.is_tensor(x):
            return x[:k]
        raise TypeError(f"{modality_name(self)}: override select() for inputs of type {type(x).__name__}")

    def padded_tokens(self, x: Any) -> tuple[Tensor, Tensor]:
        """Tokens and a padding mask that is always a tensor (no data-dependent branch, so it exports)."""
        embedded = self.embed(x)
        mask = embedded.padding_mask
        if mask is None:
            mask = torch.zeros(embedded.tokens.shape[:2], dtype=torch.bool, device=embedded.tokens.device)
        return embedded.tokens, mask

    def export_example(self, batch_size: int, size: int) -> dict[str, Tensor]:
        """Named input tensors for export and its check; `size` varies the length of inputs that have one."""
        x = self.example_input(batch_size)
        if not torch.is_tensor(x):
            raise TypeError(f"{modality_name(self)}: override export_example() for inputs of type {type(x).__name__}")
        return {"inputs": x}

    def export_axes(self) -> dict[str, dict[int, str]]:
        """The dynamic axes of each `export_example` input (the batch axis by default)."""
        return {"inputs": {0: "batch"}}

    def forward(self, x: Any) -> Tokens:
        """`embed(x)`, so hooks and tracing see the embedding as one module call."""
        return self.embed(x)


def modality_name(embed: object) -> str:
    """`"<modality> (<ClassName>)"` for messages."""
    return f"{getattr(embed, 'modality', 'input')} ({type(embed).__name__})"


def require_embedding(embed: object, role: str) -> InputEmbedding:
    """`embed` itself when it implements the contract; a one-line error naming the role and the fix otherwise."""
    if isinstance(embed, InputEmbedding):
        return embed
    raise ValueError(
        f"{role}: {type(embed).__name__} is not an mmattn.modality.InputEmbedding (embed(x) -> Tokens, layout, "
        "example_input); see docs/new_modality.md"
    )


def require_reader(embed: object, what: str) -> FileReader:
    """The embedding's file reader, or a one-line error naming the modality and what needed it."""
    embed = require_embedding(embed, what)
    reader = embed.reader()
    if reader is None:
        raise ValueError(f"{what} reads files, but the {modality_name(embed)} input has no file reader (reader())")
    return reader


def require_renderer(embed: object, what: str) -> Renderer:
    """The embedding's renderer, or a one-line error naming the modality and what needed it."""
    embed = require_embedding(embed, what)
    renderer = embed.renderer()
    if renderer is None:
        raise ValueError(f"{what} draws inputs, but the {modality_name(embed)} input has no renderer (renderer())")
    return renderer
