"""Tiny hand-made towers for dual-encoder tests: their embeddings are exactly what a test writes down."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmattn.modality import InputEmbedding, TokenLayout, Tokens
from mmattn.models import DualEncoder


class VectorEmbedding(InputEmbedding):
    """Vectors [B, D] as one token each."""

    modality = "vector"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    @property
    def layout(self) -> TokenLayout:
        return TokenLayout.sequence(1)

    def embed(self, x: Tensor) -> Tokens:
        return Tokens(x[:, None, :], None, TokenLayout.sequence(1))

    def example_input(self, batch_size: int) -> Tensor:
        return torch.randn(batch_size, self.dim)


class IdEmbedding(InputEmbedding):
    """Token ids [B, L]; a row's features are the one-hot vector of its first id (ids beyond `dim` wrap)."""

    modality = "ids"

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.vocab_size, self.dim = vocab_size, dim

    @property
    def layout(self) -> TokenLayout:
        return TokenLayout.sequence(4)

    def embed(self, ids: Tensor) -> Tokens:
        hot = nn.functional.one_hot(ids[:, :1] % self.dim, self.dim).float()
        return Tokens(hot, None, TokenLayout.sequence(1))

    def example_input(self, batch_size: int) -> Tensor:
        return torch.randint(1, self.vocab_size, (batch_size, 4))


class PassTower(nn.Module):
    """Features = the embedding's single token (a scale parameter lets gradients reach the tower)."""

    def __init__(self, embed: InputEmbedding) -> None:
        super().__init__()
        self.embed = embed
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, x: Any) -> Tensor:
        return self.embed(x).tokens[:, 0] * self.gain


def identity_dual_encoder(dim: int = 3, vocab_size: int = 8, **kw: Any) -> DualEncoder:
    """A DualEncoder of towers "vec" (vectors) and "ids" (token ids) whose projections are the identity, so each
    embedding is its input's features, normalised."""
    towers = {"vec": PassTower(VectorEmbedding(dim)), "ids": PassTower(IdEmbedding(vocab_size, dim))}
    net = DualEncoder(towers, dim, **kw)
    with torch.no_grad():
        for proj in net.proj.values():
            proj.weight.copy_(torch.eye(dim))
    return net
