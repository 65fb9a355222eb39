"""Contrastive losses over the global batch: symmetric InfoNCE (CLIP) and the sigmoid loss (SigLIP).

Under several processes each rank gathers the embeddings and match ids of every rank, with gradients
(`torch.distributed.nn.functional.all_gather`), and computes the loss of its own rows against all columns (open_clip's
`local_loss`). Each rank's value is scaled so that the mean over ranks, which DDP's gradient averaging and
`log(sync_dist=True)` take, equals the loss of one process on the whole global batch, also when ranks hold batches of
different sizes. Shapes: b local rows, N global rows, E embedding width.

Positives are all pairs of equal match ids (identical scenes, the same transcript), not only the diagonal:

- CLIP: each row's target is a distribution spread evenly over its positive columns (soft targets normalised per
  row), so a row with k positives asks for 1/k of the softmax on each; with unique ids it is the usual diagonal.
- SigLIP: every pair is a binary problem, label +1 for equal match ids and -1 otherwise; the loss is the sum over
  columns, averaged over rows (Zhai et al. 2023, big_vision's normalisation).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOSSES", "clip_loss", "contrastive_loss", "gather_rows", "siglip_loss", "world"]

LOSSES = ("clip", "siglip")


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_rows(x: Tensor, *, grad: bool) -> Tensor:
    """Every rank's `x` [b_r, ...] concatenated in rank order [N, ...] (x itself in one process).

    Ranks may hold different numbers of rows: they are padded to the largest for the collective and cut back after.
    With `grad`, gradients flow back to every rank's rows (each rank receives the sum over ranks of its rows' grads).
    """
    _, size = world()
    if size == 1:
        return x
    import torch.distributed as dist
    import torch.distributed.nn.functional as dist_nn

    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(size)]
    dist.all_gather(counts, count)
    rows = [int(c) for c in counts]
    most = max(rows)
    padded = F.pad(x, (0, 0) * (x.ndim - 1) + (0, most - x.shape[0])) if x.shape[0] < most else x
    if grad:
        parts = list(dist_nn.all_gather(padded.contiguous()))
    else:
        parts = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, rows)])


def clip_loss(logits: Tensor, positives: Tensor) -> Tensor:
    """Per-row cross-entropy [b] of logits [b, N] against soft targets spread evenly over the row's positives."""
    targets = positives.to(logits.dtype)
    targets = targets / targets.sum(dim=1, keepdim=True).clamp_min(1)
    return -(targets * logits.float().log_softmax(dim=1)).sum(dim=1)


def siglip_loss(logits: Tensor, positives: Tensor) -> Tensor:
    """Per-row sigmoid loss [b]: -sum_j log sigmoid(z_ij * logits_ij), z = +1 for positives and -1 otherwise."""
    signs = positives.to(logits.dtype) * 2 - 1
    return -F.logsigmoid(signs * logits.float()).sum(dim=1)


def contrastive_loss(
    a: Tensor,
    b: Tensor,
    match: Tensor,
    *,
    scale: Tensor,
    bias: Tensor | None = None,
    kind: Literal["clip", "siglip"] = "clip",
) -> Tensor:
    """The loss of this rank's pairs (a_i, b_i) with match ids `match` against the global batch (see the module
    docstring): equal to the single-process loss of the whole global batch once averaged over ranks.

    Args:
        a: Normalised embeddings [b, E] of the first tower.
        b: Normalised embeddings [b, E] of the second tower, row i paired with a's row i.
        match: Match ids [b]; equal ids are positives of each other.
        scale: The logit scale (a scalar tensor, learned).
        bias: The logit bias (SigLIP), or None.
        kind: "clip" (symmetric InfoNCE) or "siglip" (sigmoid).

    Raises:
        ValueError: An unknown `kind`, rows that do not pair up, or "siglip" without a bias.
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown contrastive loss {kind!r}; choose one of {list(LOSSES)}")
    if not (a.shape[0] == b.shape[0] == match.shape[0]):
        raise ValueError(f"a, b and match must have the same rows, got {a.shape[0]}, {b.shape[0]}, {match.shape[0]}")
    _, size = world()
    all_a, all_b = gather_rows(a, grad=True), gather_rows(b, grad=True)
    all_match = gather_rows(match, grad=False)
    positives = match[:, None] == all_match[None, :]  # [b, N]
    # Each rank's rows sum, scaled by size / N: the ranks' mean is then the global mean over N rows.
    weight = size / all_match.shape[0]
    if kind == "siglip":
        if bias is None:
            raise ValueError("the sigmoid loss needs a learned logit bias; build the net with init_logit_bias=-10")
        return siglip_loss(scale * a @ all_b.T + bias, positives).sum() * weight
    a_to_b = clip_loss(scale * a @ all_b.T, positives)
    b_to_a = clip_loss(scale * b @ all_a.T, positives)
    return (a_to_b.sum() + b_to_a.sum()) / 2 * weight
