"""Claim verification: a sensor window and a claim about it ("a person riding a bike"), labelled whether the claim is
true, for a fusion model of both inputs (`mmattn.models.FusionEncoder` trained by `ClassificationModule`).

Half the claims are true (a description of the window's own activity), half false (one of another activity, drawn
uniformly), so neither input alone tells the label: a window is as often claimed truly as falsely, and each
description is as often true as false. Only the two read together do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .text import SENSOR, TEXT, ActivityTextBase, pad_ids

__all__ = ["CLAIM_CLASSES", "ActivityClaimsDataModule", "ClaimedWindows", "collate_claims", "fixed_claims"]

CLAIM_CLASSES = ("false", "true")
INPUTS = (SENSOR, TEXT)

# A claim about a window: (claimed activity, which of that activity's descriptions).
Claim = tuple[int, int]
# A window's two examples: its input and its truth (1 = the claim is true).
Example = tuple[dict[str, Any], int]


def fixed_claims(
    labels: Sequence[int], descriptions: Sequence[Sequence[Any]], rng: np.random.Generator
) -> list[tuple[Claim, Claim]]:
    """Per window, a true claim and a false one (about another activity, drawn uniformly), each with a description
    drawn uniformly: exactly balanced, so a model that ignores either input scores exactly 0.5."""
    n, claims = len(descriptions), []
    for label in labels:
        other = (label + 1 + int(rng.integers(n - 1))) % n
        true, false = ((c, int(rng.integers(len(descriptions[c])))) for c in (label, other))
        claims.append((true, false))
    return claims


class ClaimedWindows(Dataset):
    """Windows with two claims each: item i = [(inputs, 1), (inputs, 0)], window i with a true claim (a description
    of its activity) and with a false one (of another activity), inputs = {"sensor": window, "text": claim ids}.

    A window's two claims always share a batch: what the window alone suggests cancels between them, so from the
    first steps the loss rewards reading both inputs together (trained on one claim per window, the fusion model
    sat at chance for three epochs before it found that).

    Args:
        windows: [N, 3, 128].
        labels: [N] activity indices.
        descriptions: Per activity, the ids of each of its descriptions (the claims).
        claims: Each window's true and false claim, fixed (evaluation: `fixed_claims`); None draws them each time a
            window is read (training: torch's RNG, which Lightning seeds per process and worker).
        only: Leave the other input out of every example ("sensor" or "text": the single-input baselines); None:
            both.
    """

    def __init__(
        self,
        windows: Tensor,
        labels: Tensor,
        descriptions: Sequence[Sequence[list[int]]],
        claims: Sequence[tuple[Claim, Claim]] | None = None,
        *,
        only: str | None = None,
    ) -> None:
        self.windows, self.labels = windows, labels.tolist()
        self.descriptions, self.claims, self.only = descriptions, claims, only

    def __len__(self) -> int:
        return len(self.labels)

    def _draw(self, label: int) -> tuple[Claim, Claim]:
        n = len(self.descriptions)
        other = (label + 1 + int(torch.randint(n - 1, ()))) % n
        return (label, self._description(label)), (other, self._description(other))

    def _description(self, activity: int) -> int:
        return int(torch.randint(len(self.descriptions[activity]), ()))

    def __getitem__(self, i: int) -> list[Example]:
        label = self.labels[i]
        examples = []
        for claimed, j in self._draw(label) if self.claims is None else self.claims[i]:
            inputs = {SENSOR: self.windows[i], TEXT: self.descriptions[claimed][j]}
            if self.only is not None:
                inputs = {self.only: inputs[self.only]}
            examples.append((inputs, int(claimed == label)))
        return examples


def collate_claims(batch: Sequence[Sequence[Example]]) -> tuple[dict[str, Tensor], Tensor]:
    """({"sensor": [2B, 3, 128], "text": [2B, L] padded claim ids}, truth [2B]) of B windows' claims, each window's
    two side by side; an input left out stays out."""
    examples = [example for item in batch for example in item]
    inputs: dict[str, Tensor] = {}
    if SENSOR in examples[0][0]:
        inputs[SENSOR] = torch.stack([x[SENSOR] for x, _ in examples])
    if TEXT in examples[0][0]:
        inputs[TEXT] = pad_ids([x[TEXT] for x, _ in examples])
    return inputs, torch.tensor([y for _, y in examples], dtype=torch.long)


class ActivityClaimsDataModule(ActivityTextBase):
    """Claim verification batches for a fusion model: `({"sensor": [2B, 3, 128], "text": [2B, L]}, truth [2B])`
    for B = `batch_size` windows, each with a true and a false claim about its activity (EOS-terminated ids padded
    with `pad_id`); the label says whether the claim is true (`classes` "false", "true"). Training draws the claims
    each time a window is read; validation and test fix them (drawn from `seed`).

    Args:
        root: Data directory; the windows live in `root/activities/`.
        only: "sensor" or "text": leave the other input out of every batch (the fusion model then sees one input:
            the single-input baselines, at chance by construction); None: both.
        num_classes: Must be 2 (false, true); checked against the data.
        **kwargs: Options of `ActivityTextBase` (per_class, seed, tokenizer_dir, vocab_size, batch_size, ...).

    Raises:
        ValueError: An unknown `only`.
    """

    collate_fn = staticmethod(collate_claims)
    class_names = CLAIM_CLASSES

    def __init__(self, root: str | Path, *, only: str | None = None, num_classes: int = 2, **kwargs) -> None:
        if only not in (None, *INPUTS):
            raise ValueError(f"only must be null, {INPUTS[0]!r} or {INPUTS[1]!r}, got {only!r}")
        super().__init__(root, num_classes=num_classes, **kwargs)
        self.only = only

    def dataset(
        self, windows: Tensor, labels: Tensor, descriptions: list[list[list[int]]], rng: np.random.Generator | None
    ) -> ClaimedWindows:
        """The windows with their two claims each (fixed from `rng`, or drawn at each read)."""
        claims = None if rng is None else fixed_claims(labels.tolist(), descriptions, rng)
        return ClaimedWindows(windows, labels, descriptions, claims, only=self.only)
