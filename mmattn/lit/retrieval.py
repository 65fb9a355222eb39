"""Retrieval over embeddings: top-k search and recall@k, computed in chunks of queries (a split of N items never
needs an N x N matrix at once), and a metric that collects a split's embeddings across batches and ranks.

Shapes: Q queries, C candidates, E embedding width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["PairBank", "recall_at_k", "top_k"]

# Queries scored at a time: 1024 x C similarities.
CHUNK = 1024


def top_k(queries: Tensor, candidates: Tensor, k: int, *, chunk: int = CHUNK) -> tuple[Tensor, Tensor]:
    """Scores and indices [Q, min(k, C)] of the most similar candidates (dot product) of each query, best first.

    Raises:
        ValueError: No candidates, or `k` < 1.
    """
    if candidates.shape[0] == 0:
        raise ValueError("retrieval over an empty candidate set: give at least one candidate")
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    k = min(k, candidates.shape[0])
    scores, indices = [], []
    for start in range(0, queries.shape[0], chunk):
        sims = queries[start : start + chunk].float() @ candidates.float().T  # [chunk, C]
        best = sims.topk(k, dim=1)
        scores.append(best.values)
        indices.append(best.indices)
    if not scores:
        return queries.new_zeros(0, k), torch.zeros(0, k, dtype=torch.long, device=queries.device)
    return torch.cat(scores), torch.cat(indices)


def recall_at_k(
    queries: Tensor, candidates: Tensor, query_match: Tensor, candidate_match: Tensor, ks: Sequence[int]
) -> dict[int, float]:
    """Recall@k for each k: the share of queries with a candidate of their own match id among their k most similar.

    A k beyond the number of candidates counts all of them.

    Raises:
        ValueError: No queries or no candidates.
    """
    if queries.shape[0] == 0:
        raise ValueError("recall over no queries: the split holds no examples")
    _, indices = top_k(queries, candidates, max(ks))
    hits = candidate_match[indices] == query_match[:, None]  # [Q, k], best first
    return {k: float(hits[:, :k].any(dim=1).float().mean()) for k in ks}


class PairBank(Metric):
    """The normalised embeddings of both towers and the match ids of a whole split, collected batch by batch and
    gathered from every process when computed (ranks may hold different counts)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("a", default=[], dist_reduce_fx="cat")
        self.add_state("b", default=[], dist_reduce_fx="cat")
        self.add_state("match", default=[], dist_reduce_fx="cat")

    def update(self, a: Tensor, b: Tensor, match: Tensor) -> None:  # type: ignore[override]
        """Add a batch: embeddings a [B, E] and b [B, E] of the same pairs, their match ids [B]."""
        self.a.append(a.detach().float())
        self.b.append(b.detach().float())
        self.match.append(match.detach())

    def compute(self) -> tuple[Tensor, Tensor, Tensor]:
        """Every collected (a, b, match), concatenated."""
        return dim_zero_cat(self.a), dim_zero_cat(self.b), dim_zero_cat(self.match)
