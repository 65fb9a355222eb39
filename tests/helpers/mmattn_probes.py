"""Callbacks that subprocess tests add as `+callbacks.<name>._target_=mmattn_probes.<Class>` (tests/helpers).

They observe or pace a run; they never change what it computes.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class Pace(Callback):
    """Sleep after every training batch, so that a test can signal or kill the run in the middle of an epoch."""

    def __init__(self, seconds: float = 0.1) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args: object, **kwargs: object) -> None:
        time.sleep(self.seconds)


def params_digest(module: LightningModule) -> str:
    """SHA-256 of the module's state (names and values as float64): equal on ranks that hold the same model."""
    digest = hashlib.sha256()
    for name, param in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(param.detach().to(torch.float64).cpu().numpy().tobytes())
    return digest.hexdigest()


class RankProbe(Callback):
    """At the end of training, write `<dirpath>/rank<global rank>.json`: global step, world size, parameter digest."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        record = {
            "global_rank": trainer.global_rank,
            "node_rank": trainer.node_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "params_sha256": params_digest(pl_module),
        }
        (self.dirpath / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class TaskProbe(Callback):
    """Record the task of every training step (a multi-task run's batches are `(task, batch)`); at the end of
    training write `<dirpath>/tasks_rank<global rank>.json` with them and the run's parameter digest."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.tasks: list[str] = []

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        self.tasks.append(str(batch[0]))

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        record = {"tasks": self.tasks, "global_step": trainer.global_step, "params_sha256": params_digest(pl_module)}
        (self.dirpath / f"tasks_rank{trainer.global_rank}.json").write_text(json.dumps(record))
