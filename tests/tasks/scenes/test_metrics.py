"""Attribute accuracy: a generated caption is right when the grammar reads the reference's scene from it."""

from __future__ import annotations

import pytest
import torch

from mmattn.tasks.scenes import AttributeAccuracy

REF = "a large red star above a small blue ring"


def test_paraphrases_and_inverse_relations_count_as_right() -> None:
    metric = AttributeAccuracy()
    metric.update(
        ["a small blue ring below a large red star", "there is a big red star on top of a little blue ring"], [REF, REF]
    )
    assert metric.compute().item() == 1.0


@pytest.mark.parametrize(
    "hyp",
    [
        "a large red star above a small green ring",  # colour
        "a large red star above a large blue ring",  # size
        "a large red cross above a small blue ring",  # shape
        "a large red star below a small blue ring",  # relation
        "a large red star left of a small blue ring",  # relation axis
        "a small blue ring above a large red star",  # objects swapped
        "a large red star",  # an object missing
        "a large red star above a small blue",  # ungrammatical
        "",
        "a large red star above a small blue ring above",
    ],
)
def test_any_wrong_attribute_or_ungrammatical_caption_is_wrong(hyp: str) -> None:
    metric = AttributeAccuracy()
    metric.update([hyp], [REF])
    assert metric.compute().item() == 0.0


def test_fraction_over_batches_and_reset() -> None:
    metric = AttributeAccuracy()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert metric.compute().item() == 0.0  # before any update: 0, not NaN
    metric.update(["a small green triangle", "a small green square"], ["there is a little green triangle"] * 2)
    metric.update(["garbage", "a big white cross", "a large white cross"], ["a large white cross"] * 3)
    assert torch.isclose(metric.compute(), torch.tensor(3 / 5))
    metric.reset()
    metric.update(["a small green triangle"], ["a small green triangle"])
    assert metric.compute().item() == 1.0


def test_bad_arguments() -> None:
    metric = AttributeAccuracy()
    with pytest.raises(ValueError, match="1 hypotheses but 2 references"):
        metric.update(["a small red star"], [REF, REF])
    with pytest.raises(ValueError, match="reference 'hello' is not a scene caption"):
        metric.update(["a small red star"], ["hello"])
    with pytest.raises(TypeError, match="lists of captions"):
        metric.update("a small red star", REF)  # type: ignore[arg-type]
