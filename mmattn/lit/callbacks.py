"""Lightning callbacks shared by every mmattn task: the non-finite-loss guard and the config stored in checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from typing_extensions import override

from mmattn.checkpoint import CONFIG_KEY


class NonFiniteLossError(FloatingPointError):
    """Raised by `NonFiniteLossGuard` when the training loss is NaN or infinite."""


class NonFiniteLossGuard(Callback):
    """Stop training with an error as soon as the training loss is NaN or infinite.

    The loss is checked before the backward pass, so the optimizer never applies a non-finite update, and the run
    ends by raising `NonFiniteLossError`: no checkpoint is written after that point, hence `checkpoints/last.ckpt`
    keeps the last good state (a graceful `trainer.should_stop` would save the broken weights over it). Under DDP
    the ranks agree on the decision, so they all stop together instead of one rank hanging in a collective.

    Args:
        check_every_n_steps: Check one optimizer step in this many (a check costs one all-reduce under DDP).

    Example::

        trainer = Trainer(callbacks=[NonFiniteLossGuard()])
    """

    def __init__(self, check_every_n_steps: int = 1) -> None:
        if check_every_n_steps < 1:
            raise ValueError(f"`check_every_n_steps` must be >= 1, got {check_every_n_steps}")
        self.check_every_n_steps = check_every_n_steps
        self._batch_idx = 0

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._batch_idx = batch_idx

    @override
    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if trainer.global_step % self.check_every_n_steps:
            return
        bad = not bool(torch.isfinite(loss.detach()).all())
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        value = loss.detach().float().cpu().reshape(-1)[0].item()
        last = getattr(trainer.checkpoint_callback, "last_model_path", "") or "none saved yet"
        raise NonFiniteLossError(
            f"training loss is {value if bad else 'non-finite on another rank'} at global step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}, batch {self._batch_idx}); stopped before the optimizer step, no "
            f"checkpoint was written after it (last checkpoint: {last}). Lower module.optimizer.lr, lengthen the "
            "warmup (module.scheduler.warmup_*), set trainer.gradient_clip_val, or use trainer.precision=32-true"
        )


class ConfigInCheckpoint(Callback):
    """Store a plain (resolved) config dict in every checkpoint so that `mmattn-eval` can rebuild the model from it.

    Args:
        config: Plain containers of primitives only, so checkpoints still load with `torch.load(weights_only=True)`.
        key: Checkpoint key that holds it.
    """

    def __init__(self, config: Mapping[str, Any], key: str = CONFIG_KEY) -> None:
        _check_plain(config, "config")
        self.config = dict(config)
        self.key = key

    @override
    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[self.key] = self.config


class LastCheckpoint(ModelCheckpoint):
    """Keep `dirpath/last.ckpt` at the latest state: after every validation (or training epoch without one), and
    optionally every `every_n_train_steps` optimizer steps or every `train_time_interval` of training.

    Lightning's `ModelCheckpoint(save_last=True)` rewrites `last.ckpt` only when it also saves a top-k checkpoint,
    so with `save_top_k=1` its `last.ckpt` is the best state, not the last one, and a resumed run would go back to
    it. This callback owns `last.ckpt` (the run's best-checkpoint callback keeps `save_last=False`). The step or time
    trigger is for fault tolerance inside long epochs: a run killed without warning (SIGKILL, a lost node) resumes
    from at most that far back.

    Args:
        dirpath: The folder of the run's checkpoints.
        every_n_train_steps: Also save every this many optimizer steps.
        train_time_interval: Or also save when this much training time has passed since the last save.

    Raises:
        ValueError: Both triggers are set, or the step count is not positive.

    Example::

        trainer = Trainer(callbacks=[LastCheckpoint("outputs/run/checkpoints", every_n_train_steps=500)])
    """

    def __init__(
        self,
        dirpath: str | Path,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
    ) -> None:
        if every_n_train_steps is not None and train_time_interval is not None:
            raise ValueError(
                f"LastCheckpoint takes one of `every_n_train_steps` ({every_n_train_steps}) and `train_time_interval` "
                f"({train_time_interval}); set the other to null"
            )
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ValueError(f"`every_n_train_steps` must be >= 1, got {every_n_train_steps}")
        super().__init__(
            dirpath=dirpath,
            save_last=True,
            save_top_k=0,
            monitor=None,
            every_n_train_steps=every_n_train_steps or 0,
            train_time_interval=train_time_interval,
            every_n_epochs=0,
            enable_version_counter=False,
        )

    def _save_last_now(self, trainer: Trainer) -> None:
        """Write last.ckpt unless this step is already saved (or this is not a fit)."""
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_now(trainer)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_now(trainer)


def _check_plain(value: Any, where: str) -> None:
    """Raise if `value` holds anything but dicts, lists and primitives (it would break weights_only loading)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_plain(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (str, bool, int, float))):
        raise ValueError(f"{where} holds a {type(value).__name__}; only plain dicts, lists and primitives are allowed")
