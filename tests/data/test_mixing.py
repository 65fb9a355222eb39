"""Mixing training loaders: the schedules draw the configured proportions, ranks agree, a resume continues exactly."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import Dataset

from mmattn.data.mixing import MixedLoader, task_probabilities
from mmattn.data.resumable import train_loader


class Numbered(Dataset):
    """Item i = (offset + i, a random draw): which item and which augmentation, visible."""

    def __init__(self, n: int, offset: int) -> None:
        self.n, self.offset = n, offset

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[int, float]:
        return self.offset + i, torch.rand(()).item()


class _Trainer:
    def __init__(self, world: int = 1, rank: int = 0) -> None:
        self.world_size, self.global_rank = world, rank


def _mixture(rank: int = 0, world: int = 1, **kwargs) -> MixedLoader:
    loaders = {
        "images": train_loader(Numbered(40, 0), _Trainer(world, rank), batch_size=4, drop_last=True),
        "audio": train_loader(Numbered(12, 1000), _Trainer(world, rank), batch_size=2, drop_last=True),
    }
    kwargs.setdefault("schedule", "proportional")
    return MixedLoader(loaders, steps_per_epoch=kwargs.pop("steps", 16), seed=5, **kwargs)


def _run(mixture: MixedLoader, epochs: range, stop: int | None = None) -> list[tuple[str, list[int], list, float]]:
    out = []
    for epoch in epochs:
        mixture.set_epoch(epoch)
        for name, (index, draw) in mixture:
            out.append((name, index.tolist(), draw.tolist(), torch.rand(()).item()))
            if stop is not None and len(out) == stop:
                return out
    return out


def test_schedules_give_the_papers_probabilities() -> None:
    sizes = {"big": 100, "small": 25}
    assert task_probabilities(sizes, "proportional") == {"big": 0.8, "small": 0.2}
    # p_i ~ n_i^(1/T): with T = 2, 10 : 5.
    assert task_probabilities(sizes, "temperature", temperature=2) == pytest.approx({"big": 2 / 3, "small": 1 / 3})
    assert task_probabilities(sizes, "weights", weights={"big": 1, "small": 3}) == {"big": 0.25, "small": 0.75}
    assert task_probabilities(sizes, "round_robin") == {"big": 0.5, "small": 0.5}
    assert _mixture(schedule="round_robin", steps=5).sequence(0) == ["images", "audio", "images", "audio", "images"]


@pytest.mark.parametrize(("schedule", "options"), [("proportional", {}), ("temperature", {"temperature": 3.0})])
def test_drawn_shares_match_the_probabilities(schedule: str, options: dict) -> None:
    mixture = _mixture(schedule=schedule, steps=500, **options)
    draws = [name for epoch in range(8) for name in mixture.sequence(epoch)]
    for name, p in mixture.probabilities.items():
        share, n = draws.count(name) / len(draws), len(draws)
        # Within 4 binomial standard deviations (a failure by chance: about 1 in 16,000).
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n), (name, share, p)
    # 10 image batches an epoch against 6 audio batches.
    assert mixture.probabilities["images"] == pytest.approx(10 / 16 if schedule == "proportional" else 0.5425, abs=1e-3)


def test_every_rank_runs_the_same_task_at_a_step_on_its_own_shard() -> None:
    ranks = [_run(_mixture(rank=r, world=2, steps=12), range(2)) for r in (0, 1)]
    assert [step[0] for step in ranks[0]] == [step[0] for step in ranks[1]]
    # Within one epoch of each task's loader (3 steps use at most 3 of a rank's 3 audio and 5 image batches), the
    # ranks read disjoint shares.
    seen = [{i for _, batch, _, _ in steps[:3] for i in batch} for steps in ranks]
    assert not seen[0] & seen[1]


def test_task_loaders_run_through_their_own_epochs_and_shares_are_counted() -> None:
    mixture = _mixture(steps=30)
    steps = _run(mixture, range(1))
    audio = [i for name, batch, _, _ in steps if name == "audio" for i in batch]
    # The audio loader (6 batches an epoch) was used up and started again: each of its epochs is a permutation.
    first = audio[:12]
    assert sorted(first) == list(range(1000, 1012))
    assert mixture.task_position["audio"][0] >= 1
    assert sum(mixture.shares().values()) == pytest.approx(1.0)
    assert mixture.shares()["audio"] == pytest.approx(sum(name == "audio" for name, *_ in steps) / 30)


def test_a_resumed_mixture_continues_the_task_sequence_batches_and_draws() -> None:
    reference = _run(_mixture(), range(3))
    interrupted = _mixture()
    head = _run(interrupted, range(3), stop=21)  # inside epoch 1 (16 steps an epoch)
    state = interrupted.state_dict()
    assert (state["epoch"], state["steps_done"]) == (1, 5)

    resumed = _mixture()
    resumed.load_state_dict(state)
    torch.manual_seed(123)  # whatever the process drew before
    rest = _run(resumed, range(1, 3))
    assert head + rest == reference  # no step repeated or skipped, same batches, same draws
    assert resumed.counts == {name: sum(s[0] == name for s in reference) for name in ("images", "audio")}


def test_bad_mixtures_are_named() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'lottery'"):
        _mixture(schedule="lottery")
    with pytest.raises(ValueError, match=r"missing for \['audio'\]"):
        _mixture(schedule="weights", weights={"images": 1.0})
    with pytest.raises(ValueError, match="task 'audio' has weight 0.0; every weight must be > 0"):
        _mixture(schedule="weights", weights={"images": 1.0, "audio": 0})
    with pytest.raises(ValueError, match="temperature must be > 0"):
        _mixture(schedule="temperature", temperature=0)
    with pytest.raises(ValueError, match=r"the checkpoint mixes tasks \['audio', 'images'\], this run \['images'\]"):
        MixedLoader({"images": _mixture().loaders["images"]}, 4).load_state_dict(_mixture().state_dict())


def test_lightning_checkpoints_and_resumes_a_mixture_inside_an_epoch(tmp_path) -> None:
    # As a multi-task run uses it: Lightning sets the epoch, saves the mixture's state with the checkpoint and hands it
    # back on resume; the resumed fit trains the steps the uninterrupted one trained after the checkpoint.
    import lightning as L

    seen: list[tuple[str, list[int], float]] = []

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def training_step(self, batch, index: int) -> torch.Tensor:
            name, (items, _draws) = batch
            seen.append((name, items.tolist(), torch.rand(()).item()))
            return self.layer(items.float()[:, None]).mean()

        def on_train_start(self) -> None:
            from mmattn.lit.base import restore_loader_states

            restore_loader_states(self.trainer)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.0)

    class SaveAtStep(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
            if trainer.global_step == 21:  # step 5 of epoch 1
                trainer.save_checkpoint(tmp_path / "mid.ckpt")

    def fit(ckpt=None, callbacks=()) -> list:
        seen.clear()
        trainer = L.Trainer(
            max_epochs=3,
            callbacks=list(callbacks),
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
        )
        trainer.fit(Probe(), train_dataloaders=_mixture(), ckpt_path=ckpt)
        return list(seen)

    whole = fit(callbacks=[SaveAtStep()])
    assert len(whole) == 48 and {name for name, *_ in whole} == {"images", "audio"}
    assert fit(tmp_path / "mid.ckpt") == whole[21:]
