"""NonFiniteLossGuard: a NaN/inf loss stops the run with its step and batch, and last.ckpt stays the good one."""

from __future__ import annotations

import functools
import re

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from mmattn.lit import ClassificationModule, NonFiniteLossError, NonFiniteLossGuard


class InjectInf(pl.Callback):
    """Turns the inputs of training batch `at_batch` into inf, so its loss is NaN."""

    def __init__(self, at_batch: int) -> None:
        self.at_batch = at_batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == self.at_batch:
            batch[0].fill_(float("inf"))


def _fit(tmp_path, net, data, callbacks, lr: float = 1e-2) -> tuple[pl.Trainer, ClassificationModule]:
    module = ClassificationModule(net, 10, optimizer=functools.partial(torch.optim.SGD, lr=lr))
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True, every_n_train_steps=1)
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[*callbacks, checkpoint],
    )
    trainer.fit(module, datamodule=data)
    return trainer, module


def test_nan_loss_stops_with_step_and_batch_and_keeps_last_checkpoint(tmp_path, tiny_net, tiny_data) -> None:
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at global step 3 \(epoch 0, batch 3\)") as info:
        _fit(tmp_path, tiny_net(10), tiny_data(n=48), [NonFiniteLossGuard(), InjectInf(at_batch=3)])
    assert "last.ckpt" in str(info.value)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())
    # The loaded checkpoint is usable as is.
    module = ClassificationModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", net=tiny_net(10))
    assert torch.isfinite(module(torch.randn(2, 3, 4, 4))).all()


def test_exploding_lr_is_caught_before_a_broken_checkpoint(tmp_path, tiny_net, tiny_data) -> None:
    # A huge learning rate drives the weights to inf within a few steps; whichever step it is, the checkpoint on disk
    # must be the one from before that step.
    with pytest.raises(NonFiniteLossError, match="at global step") as info:
        _fit(tmp_path, tiny_net(10), tiny_data(n=48), [NonFiniteLossGuard()], lr=1e38)
    step = int(re.search(r"global step (\d+)", str(info.value)).group(1))
    assert step >= 1
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == step


def test_without_the_guard_the_run_continues(tmp_path, tiny_net, tiny_data) -> None:
    trainer, module = _fit(tmp_path, tiny_net(10), tiny_data(n=48), [InjectInf(at_batch=1)])
    assert trainer.global_step == 6
    assert not torch.isfinite(module.net.head.weight).all()  # what the guard prevents


def test_guard_validates_its_argument() -> None:
    with pytest.raises(ValueError, match="`check_every_n_steps` must be >= 1, got 0"):
        NonFiniteLossGuard(check_every_n_steps=0)
