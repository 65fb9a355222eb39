"""PreemptionCheckpoint: a real signal mid-epoch saves the fixed checkpoint, stops, and the resumed run completes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from mmattn.lit import LastCheckpoint, Preempted, PreemptionCheckpoint


class SignalAt(pl.Callback):
    """Sends `signum` to this very process at the start of training batch `at_batch` of epoch `at_epoch`."""

    def __init__(self, signum: int, at_epoch: int, at_batch: int) -> None:
        self.signum, self.at_epoch, self.at_batch = signum, at_epoch, at_batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.at_epoch and batch_idx == self.at_batch:
            os.kill(os.getpid(), self.signum)


class Steps(pl.Callback):
    """Records the global step and the training loss after every optimizer step this process ran."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen.append(trainer.global_step)
        self.losses[trainer.global_step] = outputs["loss"].item()


def _fit(make_module, make_trainer, tiny_data, tmp_path: Path, *callbacks, ckpt_path=None):
    steps = Steps()
    trainer = make_trainer(max_epochs=3, limit_val_batches=1, callbacks=[*callbacks, steps], enable_checkpointing=True)
    torch.manual_seed(0)  # the same initial weights in every run
    module = make_module()
    trainer.fit(module, datamodule=tiny_data(), ckpt_path=ckpt_path)
    return trainer, steps


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGUSR2, 128 + 12)])
def test_signal_mid_epoch_saves_stops_and_resume_continues_the_same_run(
    signum, code, make_module, make_trainer, tiny_data, tmp_path: Path, monkeypatch
) -> None:
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID"):
        monkeypatch.delenv(var, raising=False)  # outside SLURM nothing is requeued
    reference, reference_steps = _fit(make_module, make_trainer, tiny_data, tmp_path / "reference")
    total = reference.global_step
    assert total == 15  # 3 epochs of 40 samples in batches of 8

    preemption = PreemptionCheckpoint(tmp_path / "checkpoints")
    with pytest.raises(Preempted) as info:
        _fit(make_module, make_trainer, tiny_data, tmp_path, preemption, SignalAt(signum, at_epoch=1, at_batch=2))
    assert info.value.code == code
    # The signal arrived before batch 2 of epoch 1 (step 7); that batch completed and was saved, then the run stopped.
    saved = torch.load(preemption.ckpt_path, weights_only=True)
    assert saved["global_step"] == 8 and saved["epoch"] == 1
    assert signal.getsignal(signal.SIGTERM) is not preemption._record  # handlers restored after fit

    resumed_preemption = PreemptionCheckpoint(tmp_path / "checkpoints")
    trainer, steps = _fit(
        make_module, make_trainer, tiny_data, tmp_path, resumed_preemption, ckpt_path=resumed_preemption.ckpt_path
    )
    assert steps.seen == list(range(9, total + 1))  # exactly the remaining optimizer steps, none twice
    # on the batches the uninterrupted run trained on then: the same loss at every step, to the bit
    assert steps.losses == {step: reference_steps.losses[step] for step in steps.seen}
    assert trainer.global_step == total
    assert not resumed_preemption.ckpt_path.exists()  # a finished run removes it (last.ckpt holds later state)


def test_without_a_signal_nothing_is_saved(make_module, make_trainer, tiny_data, tmp_path: Path) -> None:
    preemption = PreemptionCheckpoint(tmp_path / "checkpoints")
    trainer, _ = _fit(make_module, make_trainer, tiny_data, tmp_path, preemption)
    assert trainer.global_step == 15 and not preemption.ckpt_path.exists()


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="unknown signal 'SIGNOPE'"):
        PreemptionCheckpoint("x", requeue_signal="SIGNOPE")
    with pytest.raises(ValueError, match="must differ from SIGTERM"):
        PreemptionCheckpoint("x", requeue_signal="TERM")
    with pytest.raises(ValueError, match="plain file name"):
        PreemptionCheckpoint("x", filename="a/b")
    assert PreemptionCheckpoint("x", requeue_signal="USR1").requeue_signal == signal.SIGUSR1


def test_last_checkpoint_follows_the_latest_state_not_the_best(make_module, make_trainer, tiny_data, tmp_path) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    class FallingScore(pl.Callback):
        """val/score only gets worse, so the best checkpoint stays at epoch 0."""

        def on_validation_epoch_end(self, trainer, pl_module) -> None:
            pl_module.log("val/score", -float(trainer.current_epoch))

    best = ModelCheckpoint(tmp_path / "ck", filename="best", monitor="val/score", mode="max", save_last=False)
    last = LastCheckpoint(tmp_path / "ck")
    trainer = make_trainer(
        max_epochs=3, limit_val_batches=1, enable_checkpointing=True, callbacks=[FallingScore(), best, last]
    )
    trainer.fit(make_module(), datamodule=tiny_data())
    assert torch.load(tmp_path / "ck" / "best.ckpt", weights_only=True)["global_step"] == 5
    assert torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)["global_step"] == 15


def test_last_checkpoint_every_n_train_steps_and_argument_checks(
    make_module, make_trainer, tiny_data, tmp_path
) -> None:
    from datetime import timedelta

    saved: list[int] = []

    class Spy(LastCheckpoint):
        def _save_checkpoint(self, trainer, filepath) -> None:
            saved.append(trainer.global_step)
            super()._save_checkpoint(trainer, filepath)

    trainer = make_trainer(
        max_epochs=2, limit_val_batches=1, enable_checkpointing=True, callbacks=[Spy(tmp_path, every_n_train_steps=3)]
    )
    trainer.fit(make_module(), datamodule=tiny_data())
    assert saved == [3, 5, 6, 9, 10]  # every 3 steps, and after each validation (epochs end at steps 5 and 10)
    with pytest.raises(ValueError, match="one of `every_n_train_steps`"):
        LastCheckpoint(tmp_path, every_n_train_steps=3, train_time_interval=timedelta(minutes=1))
    with pytest.raises(ValueError, match=">= 1"):
        LastCheckpoint(tmp_path, every_n_train_steps=0)
