"""Preemption and time limits: save a checkpoint at a fixed path at the next step boundary, stop, requeue on SLURM.

This callback is the one layer that owns requeueing. Lightning's own SLURM auto-requeue is switched off by the CLI
(`SLURMEnvironment(auto_requeue=False)`), and submitit's handler of the same signal is replaced while training runs,
so a job is requeued once, by this callback, after its checkpoint is on disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override


class Preempted(SystemExit):
    """Raised on every rank after the preemption checkpoint is saved; the process exits with 128 + signal number.

    A SystemExit, so that submitit (which records `Exception`s as the job's result) and Hydra let it pass: the
    requeued job, not this one, produces the result.
    """


def slurm_job_id() -> str | None:
    """This SLURM job's id (`<array job>_<task>` for an array task), None outside SLURM."""
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        return f"{array_job}_{array_task}"
    return os.environ.get("SLURM_JOB_ID")


def requeue_slurm_job(job_id: str) -> bool:
    """`scontrol requeue <job_id>`; False (with a warning) when that fails."""
    try:
        result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        rank_zero_warn(f"could not requeue SLURM job {job_id}: {error}")
        return False
    if result.returncode != 0:
        rank_zero_warn(f"`scontrol requeue {job_id}` failed ({result.returncode}): {result.stderr.strip()}")
        return False
    return True


def _signal_number(name: str | int) -> signal.Signals:
    """`"SIGUSR2"`, `"USR2"` or `12` -> `signal.SIGUSR2`."""
    if isinstance(name, int):
        return signal.Signals(name)
    key = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
    if not hasattr(signal, key):
        raise ValueError(f"unknown signal {name!r}; use a name such as SIGUSR2 or SIGUSR1")
    return signal.Signals(getattr(signal, key))


class PreemptionCheckpoint(Callback):
    """Save `dirpath/filename.ckpt` and stop when the job is told to end: SIGTERM, or the time-limit warning signal.

    SLURM sends SIGTERM before it kills a job (preemption, `scontrol requeue`, `scancel`) and, with
    `sbatch --signal=USR2@120` (what `hydra/launcher=slurm` and `scripts/slurm/train.sbatch` set), the warning signal
    that long before the time limit. The handler only records the signal. At the end of the next training batch the
    ranks agree (one all-reduce), all of them save the checkpoint (what Lightning resumes after a batch, like
    `ModelCheckpoint(every_n_train_steps=...)`), the batch's metrics reach the loggers, a validation due after the
    batch still runs (a resumed run counts it as done), and at the start of the next batch every rank raises
    `Preempted`. On the warning signal inside a SLURM job, rank 0 first requeues the job
    (`scontrol requeue`); after SIGTERM, whoever sent it decides (a preempted job with requeue mode is requeued by
    SLURM itself, `scancel` ends it). `mmattn-train` resumes from this file automatically when it exists in the run
    directory. A run that finishes normally deletes it: `last.ckpt` then holds the later state.

    Args:
        dirpath: Folder of the checkpoint (the run's `checkpoints/`).
        filename: Checkpoint name without `.ckpt`.
        requeue_signal: The time-limit warning signal (SLURM `--signal`); null = only SIGTERM is handled.
        requeue: Requeue the SLURM job on `requeue_signal` (ignored outside SLURM).

    Example::

        trainer = Trainer(callbacks=[PreemptionCheckpoint("outputs/run/checkpoints")])
    """

    def __init__(
        self,
        dirpath: str | Path,
        filename: str = "preempted",
        requeue_signal: str | int | None = "SIGUSR2",
        requeue: bool = True,
    ) -> None:
        if not filename or "/" in filename:
            raise ValueError(f"`filename` must be a plain file name without `.ckpt`, got {filename!r}")
        self.dirpath = Path(dirpath)
        self.filename = filename
        self.requeue_signal = _signal_number(requeue_signal) if requeue_signal is not None else None
        if self.requeue_signal == signal.SIGTERM:
            raise ValueError("`requeue_signal` must differ from SIGTERM (SIGTERM is always handled, without requeue)")
        self.requeue = requeue
        self._received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._stop_code: int | None = None
        self._requeue_now = False

    @property
    def ckpt_path(self) -> Path:
        """The fixed path the checkpoint is saved to."""
        return self.dirpath / f"{self.filename}.ckpt"

    def _record(self, signum: int, frame: Any) -> None:
        """Signal handler: remember the signal; the training loop acts on it at the next step boundary."""
        received = signal.Signals(signum)
        # The warning signal decides about requeueing, so a later SIGTERM does not overwrite it.
        if self._received is None or received == self.requeue_signal:
            self._received = received

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Installed after Lightning's signal connector (it registers its own at the start of fit, and restores the
        # handlers from before fit in its teardown), replacing its SIGTERM handler and submitit's for the signal.
        if threading.current_thread() is not threading.main_thread():
            rank_zero_warn("PreemptionCheckpoint needs the main thread to handle signals; preemption is not handled")
            return
        for signum in (signal.SIGTERM, self.requeue_signal):
            if signum is not None:
                self._previous[signum] = signal.signal(signum, self._record)

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._stop_code is not None:
            return
        received = self._received is not None
        if not trainer.strategy.reduce_boolean_decision(received, all=False):
            return
        # Any rank may have been the one signalled; the warning signal wins, since it asks for a requeue.
        warned = trainer.strategy.reduce_boolean_decision(received and self._received == self.requeue_signal, all=False)
        signum = self.requeue_signal if warned and self.requeue_signal is not None else signal.SIGTERM
        rank_zero_info(f"{signum.name} received: saving {self.ckpt_path} at global step {trainer.global_step}")
        trainer.save_checkpoint(self.ckpt_path)
        self._stop_code = 128 + int(signum)
        self._requeue_now = warned and self.requeue

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._stop_code is not None:
            self._stop(trainer)

    def _stop(self, trainer: Trainer) -> None:
        """Flush the loggers, requeue from rank 0 if asked, and raise `Preempted` on every rank."""
        for logger in trainer.loggers:
            logger.save()
        job_id = slurm_job_id()
        requeued = False
        if self._requeue_now and job_id is not None and trainer.is_global_zero:
            requeued = requeue_slurm_job(job_id)
        # No rank exits before the requeue is done: `srun --kill-on-bad-exit` would kill rank 0 on the first exit.
        trainer.strategy.barrier("mmattn_preemption_stop")
        what = f"requeued SLURM job {job_id}" if requeued else "not requeued"
        rank_zero_info(f"stopped at global step {trainer.global_step}; checkpoint {self.ckpt_path}; {what}")
        raise Preempted(self._stop_code)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Training finished (possibly after a signal at its very last step): last.ckpt supersedes this file.
        if trainer.is_global_zero and self.ckpt_path.exists():
            self.ckpt_path.unlink()

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            if handler is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signum, handler)
        self._previous = {}
