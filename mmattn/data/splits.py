"""Seeded, per-class train/validation splits shared by every task's folder datamodules."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["stratified_split"]


def stratified_split(targets: Sequence[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split indices per class so that each class keeps `val_fraction` of its samples for validation.

    A class with two or more samples keeps at least one on each side; a single sample stays in training.
    Returns sorted (train, val) index lists.
    """
    rng = np.random.default_rng(seed)
    targets_arr = np.asarray(targets)
    train: list[int] = []
    val: list[int] = []
    for c in np.unique(targets_arr):
        idx = rng.permutation(np.flatnonzero(targets_arr == c))
        n_val = min(max(1, round(len(idx) * val_fraction)), len(idx) - 1) if len(idx) > 1 else 0
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    return sorted(train), sorted(val)
