"""The training order is a function of (seed, epoch); a loader resumed mid-epoch continues it exactly."""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils.data import Dataset

from mmattn.data import TokenBudgetBatchSampler
from mmattn.data.resumable import DataOrderError, ResumableDataLoader, mix_seed, train_loader


class Noisy(Dataset):
    """Item i = (i, a random draw): what augmentation does, visible."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[int, float]:
        return i, torch.rand(()).item()


class _Trainer:
    def __init__(self, world: int, rank: int) -> None:
        self.world_size, self.global_rank = world, rank


def _epoch(loader, epoch: int, stop: int | None = None) -> list[tuple[list[int], list[float], float]]:
    """(indices, item draws, a draw of the step) per batch, for up to `stop` batches."""
    loader.sampler.set_epoch(epoch)
    out = []
    for number, (index, draw) in enumerate(loader):
        if stop is not None and number == stop:
            break
        out.append((index.tolist(), draw.tolist(), torch.rand(()).item()))
    return out


def _loader(n: int = 23, batch_size: int = 4, world: int = 1, rank: int = 0, **kwargs) -> ResumableDataLoader:
    return train_loader(Noisy(n), _Trainer(world, rank), batch_size=batch_size, drop_last=False, **kwargs)


def test_order_is_a_function_of_seed_and_epoch_and_every_sample_comes_once(monkeypatch) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    first, again = _epoch(_loader(), 3), _epoch(_loader(), 3)
    assert first == again
    assert sorted(i for batch, _, _ in first for i in batch) == list(range(23))
    assert [b for b, _, _ in _epoch(_loader(), 4)] != [b for b, _, _ in first]
    monkeypatch.setenv("PL_GLOBAL_SEED", "8")
    assert [b for b, _, _ in _epoch(_loader(), 3)] != [b for b, _, _ in first]


def test_a_resumed_epoch_continues_the_same_batches_draws_and_step_seeds() -> None:
    reference = _epoch(_loader(), 2)
    interrupted = _loader()
    _epoch(interrupted, 0)  # an earlier epoch, then 2 batches of epoch 2
    done = _epoch(interrupted, 2, stop=2)
    state = interrupted.state_dict()
    assert (state["epoch"], state["batches"]) == (2, 3)  # the batch fetched when the loop stopped counts

    resumed = _loader()
    resumed.load_state_dict({**state, "batches": 2})
    torch.manual_seed(12345)  # whatever the process drew before does not matter
    rest = _epoch(resumed, 2)
    assert done + rest == reference
    assert sorted(i for batch, _, _ in done + rest for i in batch) == list(range(23))
    assert len(resumed) == len(reference)  # a whole epoch to Lightning, which counts the skipped batches as done
    # The next epoch is whole again.
    assert _epoch(resumed, 3) == _epoch(_loader(), 3)


def test_item_draws_do_not_depend_on_the_worker_count() -> None:
    alone = _epoch(_loader(n=12), 1)
    workers = _epoch(_loader(n=12, num_workers=2), 1)
    assert [(b, d) for b, d, _ in alone] == [(b, d) for b, d, _ in workers]
    assert [s for *_, s in alone] == [s for *_, s in workers]


def test_ranks_share_one_permutation_and_resume_their_own_share() -> None:
    shares = [_epoch(_loader(n=24, world=2, rank=r), 5) for r in (0, 1)]
    seen = [i for share in shares for batch, _, _ in share for i in batch]
    assert sorted(seen) == list(range(24))
    second = _loader(n=24, world=2, rank=1)
    second.load_state_dict({**_loader(n=24, world=2, rank=1).state_dict(), "epoch": 5, "batches": 1})
    assert _epoch(second, 5) == shares[1][1:]


def test_a_mid_epoch_checkpoint_of_other_data_stops_with_what_differs(caplog) -> None:
    state = {**_loader().state_dict(), "epoch": 1, "batches": 2}
    with pytest.raises(DataOrderError, match=r"epoch 1 after batch 2: samples 23 in the checkpoint, 30 now"):
        _loader(n=30).load_state_dict(state)
    with pytest.raises(DataOrderError, match=r"batch_size 4 in the checkpoint, 8 now"):
        _loader(batch_size=8).load_state_dict(state)
    with pytest.raises(DataOrderError, match=r"num_replicas 1 in the checkpoint, 2 now.*trainer.devices"):
        _loader(world=2).load_state_dict(state)
    # At an epoch's end nothing is left to continue: another process count only deals the next epochs differently.
    with caplog.at_level(logging.WARNING):
        _loader(world=2).load_state_dict({**state, "batches": state["batches_per_epoch"]})
    assert "each rank reads another share of the same permutation" in caplog.text


def test_token_budget_batches_resume_too() -> None:
    lengths = [1 + (i * 7) % 9 for i in range(40)]

    def loader() -> ResumableDataLoader:
        sampler = TokenBudgetBatchSampler(lengths, max_tokens=16, seed=3, num_replicas=1, rank=0)
        return ResumableDataLoader(Noisy(40), batch_sampler=sampler, seed=11)

    def epoch(dl, stop=None):
        dl.batch_sampler.set_epoch(4)
        out = []
        for number, (index, draw) in enumerate(dl):
            if number == stop:
                break
            out.append((index.tolist(), draw.tolist()))
        return out

    reference = epoch(loader())
    interrupted = loader()
    head = epoch(interrupted, stop=3)
    resumed = loader()
    resumed.load_state_dict({**interrupted.state_dict(), "batches": 3})
    assert head + epoch(resumed) == reference


def test_mix_seed_spreads_neighbouring_inputs() -> None:
    seeds = {mix_seed(0, 0, i) for i in range(10_000)}
    assert len(seeds) == 10_000 and all(0 <= s < 2**32 for s in seeds)
