"""TokenBudgetBatchSampler: budget, coverage, per-rank sharding, epoch shuffling, and the Lightning epoch hook."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader, TensorDataset

from mmattn.data.sampler import TokenBudgetBatchSampler

# Lengths like a tokenised corpus: many short examples, a long tail, lots of ties.
LENGTHS = np.random.default_rng(0).integers(1, 60, size=1000).tolist()
MAX_TOKENS = 128  # 287 batches: neither 2 nor 3 ranks divide them, so sharding must pad


def _epoch(sampler: TokenBudgetBatchSampler, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def _ranks(num_replicas: int, epoch: int = 0, **kwargs) -> list[list[list[int]]]:
    """Batches of every rank for one epoch."""
    return [
        _epoch(TokenBudgetBatchSampler(LENGTHS, MAX_TOKENS, num_replicas=num_replicas, rank=r, **kwargs), epoch)
        for r in range(num_replicas)
    ]


@pytest.mark.parametrize("max_sentences", [None, 5])
@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_respect_budget_and_cover_every_index_once(shuffle: bool, max_sentences: int | None) -> None:
    sampler = TokenBudgetBatchSampler(LENGTHS, MAX_TOKENS, shuffle=shuffle, max_sentences=max_sentences)
    for epoch in range(2):
        batches = _epoch(sampler, epoch)
        assert len(batches) == len(sampler)
        for batch in batches:
            assert max(LENGTHS[i] for i in batch) * len(batch) <= MAX_TOKENS
            assert max_sentences is None or len(batch) <= max_sentences
        assert sorted(i for batch in batches for i in batch) == list(range(len(LENGTHS)))
    if max_sentences is None:
        # Greedy filling: batches come close to the budget, not a few examples each.
        assert len(sampler) < 1.3 * sum(LENGTHS) / MAX_TOKENS


def test_unshuffled_batches_come_in_length_order_every_epoch() -> None:
    sampler = TokenBudgetBatchSampler(LENGTHS, MAX_TOKENS, shuffle=False)
    batches = _epoch(sampler, 0)
    flat = [i for batch in batches for i in batch]
    # Sorted by length, ties by index.
    assert flat == sorted(range(len(LENGTHS)), key=lambda i: (LENGTHS[i], i))
    assert _epoch(sampler, 5) == batches


def test_epoch_and_seed_select_the_shuffle() -> None:
    a = TokenBudgetBatchSampler(LENGTHS, MAX_TOKENS, seed=1)
    b = TokenBudgetBatchSampler(LENGTHS, MAX_TOKENS, seed=1)
    assert _epoch(a, 0) == _epoch(b, 0)
    assert _epoch(a, 0) != _epoch(a, 1)
    assert _epoch(a, 3) == _epoch(b, 3)
    assert _epoch(a, 0) != _epoch(TokenBudgetBatchSampler(LENGTHS, MAX_TOKENS, seed=2), 0)
    # Shuffling regroups equal-length examples, yet the batch count stays fixed.
    assert {tuple(sorted(x)) for x in _epoch(a, 0)} != {tuple(sorted(x)) for x in _epoch(a, 1)}
    assert len(_epoch(a, 0)) == len(_epoch(a, 1)) == len(a)


@pytest.mark.parametrize("num_replicas", [2, 3])
@pytest.mark.parametrize("shuffle", [True, False])
def test_ranks_get_equal_disjoint_shares(num_replicas: int, shuffle: bool) -> None:
    total = len(TokenBudgetBatchSampler(LENGTHS, MAX_TOKENS))
    assert total % num_replicas != 0, "pick lengths that need padding, or the test proves less"
    per_rank = _ranks(num_replicas, epoch=1, shuffle=shuffle)
    expected_len = -(-total // num_replicas)
    assert [len(b) for b in per_rank] == [expected_len] * num_replicas
    assert len(TokenBudgetBatchSampler(LENGTHS, MAX_TOKENS, num_replicas=num_replicas, rank=1)) == expected_len
    # The union is the whole dataset; only the padding batches are seen twice.
    counts = Counter(tuple(batch) for batches in per_rank for batch in batches)
    repeats = sum(c - 1 for c in counts.values())
    assert repeats == expected_len * num_replicas - total
    assert sorted(i for batch in counts for i in batch) == list(range(len(LENGTHS)))


@pytest.mark.parametrize("num_replicas", [2, 3])
def test_drop_last_drops_only_the_remainder(num_replicas: int) -> None:
    total = len(TokenBudgetBatchSampler(LENGTHS, MAX_TOKENS))
    per_rank = _ranks(num_replicas, drop_last=True)
    assert [len(b) for b in per_rank] == [total // num_replicas] * num_replicas
    seen = [i for batches in per_rank for batch in batches for i in batch]
    assert len(seen) == len(set(seen))
    kept_batches = sum(len(b) for b in per_rank)
    assert kept_batches == total - total % num_replicas


def test_ranks_of_one_step_work_on_neighbouring_lengths() -> None:
    # Unshuffled, step k of every rank comes from the same group of neighbours, in rank order.
    per_rank = _ranks(3, shuffle=False)
    for step in zip(*per_rank):
        longest = [max(LENGTHS[i] for i in batch) for batch in step]
        assert longest == sorted(longest)
    shuffled = _ranks(3, epoch=2)
    spread = [np.ptp([max(LENGTHS[i] for i in batch) for batch in step]) for step in zip(*shuffled)]
    assert max(spread) <= 6  # vs. up to 58 if batches were dealt at random


def test_lightning_reaches_set_epoch_through_the_dataloader() -> None:
    sampler = TokenBudgetBatchSampler(LENGTHS, MAX_TOKENS)
    loader = DataLoader(TensorDataset(torch.arange(len(LENGTHS))), batch_sampler=sampler)
    assert len(loader) == len(sampler)
    _set_sampler_epoch(loader, 7)  # what Lightning's fit and evaluation loops call each epoch
    assert sampler.epoch == 7
    (first,) = next(iter(loader))
    assert first.tolist() == _epoch(TokenBudgetBatchSampler(LENGTHS, MAX_TOKENS), 7)[0]


def test_defaults_without_a_process_group_are_one_replica() -> None:
    sampler = TokenBudgetBatchSampler(LENGTHS, MAX_TOKENS)
    assert (sampler.num_replicas, sampler.rank) == (1, 0)


def test_more_replicas_than_batches_repeat_batches() -> None:
    # Two batches, [0, 1] and [2], for four ranks: each is repeated next to itself in length order.
    per_rank = [list(TokenBudgetBatchSampler([3, 3, 3], 6, num_replicas=4, rank=r, shuffle=False)) for r in range(4)]
    assert per_rank == [[[0, 1]], [[0, 1]], [[2]], [[2]]]


@pytest.mark.parametrize(
    ("lengths", "kwargs", "message"),
    [
        ([3, 9, 4], dict(max_tokens=8), r"example 1 has length 9 > max_tokens=8 .* raise max_tokens to at least 9"),
        ([3, 0], dict(max_tokens=8), r"example 1 has length 0; every length must be >= 1"),
        ([], dict(max_tokens=8), r"lengths is empty"),
        ([3], dict(max_tokens=0), r"max_tokens must be >= 1, got 0"),
        ([3], dict(max_tokens=8, num_replicas=2, rank=2), r"rank 2 is out of range for num_replicas=2"),
        ([3], dict(max_tokens=8, num_replicas=0, rank=0), r"num_replicas must be >= 1, got 0"),
        ([3], dict(max_tokens=8, max_sentences=0), r"max_sentences must be >= 1 or None, got 0"),
        ([3, 3], dict(max_tokens=8, num_replicas=2, rank=0, drop_last=True), r"only 1 batches .* drop_last=False"),
    ],
)
def test_bad_arguments_are_named(lengths: list[int], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenBudgetBatchSampler(lengths, **kwargs)
