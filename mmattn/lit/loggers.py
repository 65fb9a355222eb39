"""Loggers that continue their own files when a run resumes in its run directory, with no gap and no repeated step.

A resumed run (after a kill, a preemption or a requeue) redoes the steps after its checkpoint. Lightning's CSVLogger
deletes an existing `metrics.csv` when it opens the same version again, and its TensorBoardLogger keeps the events of
the redone steps twice. These subclasses keep what was logged before the first step the new process logs, and drop
the rest: the steps the resumed run is about to log again.
"""

from __future__ import annotations

import csv
import math
from typing import Any

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from mmattn.lit.checkpoint_io import atomic_write


def _step_of(row: dict[str, Any]) -> float:
    """The `step` of a CSV row, NaN for a row cut short by a kill."""
    try:
        return float(row.get("step") or "nan")
    except ValueError:
        return math.nan


class _ContinuingWriter(ExperimentWriter):
    """CSV writer that keeps an existing `metrics.csv` and, at the first logged step, drops its rows from that step."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self._truncated = False
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(csv.DictReader(f).fieldnames or [])

    @override
    def _check_log_dir_exists(self) -> None:
        """Keep the files of an earlier process of this run (the parent deletes metrics.csv here)."""

    @override
    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if not self._truncated and step is not None:
            self._drop_rows_from(step)
        self._truncated = True
        super().log_metrics(metrics_dict, step)

    def _drop_rows_from(self, step: int) -> None:
        """Rewrite metrics.csv without the rows at `step` or later (and without a last row cut short by a kill)."""
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [row for row in rows if _step_of(row) < step and None not in row.values()]
        if len(kept) == len(rows):
            return
        with atomic_write(self.metrics_file_path, "w") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(kept)


class ResumableCSVLogger(CSVLogger):
    """Lightning's `CSVLogger` that continues `metrics.csv` of its version when a run resumes.

    Rows logged before the first step of the new process are kept; rows from that step on are dropped, since the
    resumed run logs those steps again. Give a fixed `version` so that a resumed run opens the same folder.

    Example::

        logger = ResumableCSVLogger("outputs/run", name="csv", version=0, flush_logs_every_n_steps=1)
    """

    @property
    @override
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment


class ResumableTensorBoardLogger(TensorBoardLogger):
    """Lightning's `TensorBoardLogger` that hides the events of the steps a resumed run logs again.

    At its first logged step the writer records a restart marker (TensorBoard's `purge_step` mechanism: a
    `SessionLog.START` event), so TensorBoard drops the events of earlier files at that step or later. Give a
    fixed `version` so that a resumed run writes into the same folder.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._marked = False

    @override
    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if not self._marked and step is not None:
            self._mark_restart(step)
        self._marked = True
        super().log_metrics(metrics, step)

    def _mark_restart(self, step: int) -> None:
        """Write the events that SummaryWriter(purge_step=step) writes, into the already open writer."""
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        writer = self.experiment._get_file_writer()
        writer.add_event(Event(step=step, file_version="brain.Event:2"))
        writer.add_event(Event(step=step, session_log=SessionLog(status=SessionLog.START)))
