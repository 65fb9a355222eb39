"""Attribute accuracy of generated scene captions: does the caption, read by the grammar, describe the scene?"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from .grammar import parse_caption

__all__ = ["AttributeAccuracy"]


class AttributeAccuracy(Metric):
    """Share of hypotheses that describe the reference's scene: `parse_caption(hyp) == parse_caption(ref)`.

    Every object's shape, colour and size and the relation must be right, in any paraphrase ("a small blue ring below
    a large red star" is right for "a big red star above a little blue ring"). A hypothesis outside the grammar counts
    as wrong. States are summed across processes.

    Example::

        metric = AttributeAccuracy()
        metric.update(["a small red star"], ["there is a little red star"])
        metric.compute()  # tensor(1.)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    correct: Tensor
    total: Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, hyps: Sequence[str], refs: Sequence[str]) -> None:
        """Count the hypotheses whose parsed scene equals their reference's.

        Raises:
            ValueError: `hyps` and `refs` differ in length, or a reference is not a caption of the grammar (the data
                is not scene captions, so the metric would mean nothing).
        """
        if isinstance(hyps, str) or isinstance(refs, str):
            raise TypeError("hyps and refs are lists of captions, not single strings")
        if len(hyps) != len(refs):
            raise ValueError(f"got {len(hyps)} hypotheses but {len(refs)} references; pass one reference per caption")
        correct = 0
        for hyp, ref in zip(hyps, refs):
            scene = parse_caption(ref)
            if scene is None:
                raise ValueError(f"reference {ref!r} is not a scene caption, so attribute accuracy cannot score it")
            correct += parse_caption(hyp) == scene
        self.correct += correct
        self.total += len(refs)

    def compute(self) -> Tensor:
        """The share of correct hypotheses (0 before any update)."""
        return self.correct.float() / self.total.clamp_min(1)
