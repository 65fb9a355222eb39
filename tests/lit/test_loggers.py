"""Resumable loggers: a resumed run continues its CSV and TensorBoard run with no gap and no repeated step."""

from __future__ import annotations

import csv
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mmattn.lit import ResumableCSVLogger, ResumableTensorBoardLogger


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _csv(tmp_path: Path) -> ResumableCSVLogger:
    return ResumableCSVLogger(tmp_path, name="csv", version=0, flush_logs_every_n_steps=1)


def test_csv_resume_keeps_rows_before_the_first_new_step_and_replaces_the_rest(tmp_path: Path) -> None:
    first = _csv(tmp_path)
    for step in range(10):
        first.log_metrics({"train/loss": 10.0 - step}, step=step)
    first.log_metrics({"val/acc": 0.5}, step=9)  # a second column, logged once
    path = Path(first.log_dir) / "metrics.csv"
    assert [int(r["step"]) for r in _rows(path)] == [*range(10), 9]

    # A process resumed from the checkpoint of step 6 logs steps 6.. again.
    second = _csv(tmp_path)
    assert Path(second.log_dir) == Path(first.log_dir)
    for step in range(6, 12):
        second.log_metrics({"train/loss": 100.0 + step}, step=step)
    rows = _rows(path)
    assert [int(r["step"]) for r in rows] == list(range(12))
    assert [float(r["train/loss"]) for r in rows[:6]] == [10.0 - s for s in range(6)]
    assert [float(r["train/loss"]) for r in rows[6:]] == [100.0 + s for s in range(6, 12)]
    assert set(rows[0]) == {"step", "train/loss", "val/acc"}  # the earlier header survives


def test_csv_resume_drops_a_row_cut_short_by_a_kill(tmp_path: Path) -> None:
    first = _csv(tmp_path)
    for step in range(4):
        first.log_metrics({"a": 1.0, "b": 2.0}, step=step)
    path = Path(first.log_dir) / "metrics.csv"
    with open(path, "a") as f:
        f.write("1.0")  # the start of the row of step 4, then SIGKILL
    second = _csv(tmp_path)
    second.log_metrics({"a": 3.0, "b": 4.0}, step=4)
    assert [(r["step"], r["a"]) for r in _rows(path)] == [
        ("0", "1.0"),
        ("1", "1.0"),
        ("2", "1.0"),
        ("3", "1.0"),
        ("4", "3.0"),
    ]


def test_csv_fresh_run_in_the_same_folder_starts_over(tmp_path: Path) -> None:
    first = _csv(tmp_path)
    for step in range(3):
        first.log_metrics({"x": 1.0}, step=step)
    second = _csv(tmp_path)
    second.log_metrics({"x": 2.0}, step=0)
    assert [(r["step"], r["x"]) for r in _rows(Path(second.log_dir) / "metrics.csv")] == [("0", "2.0")]


def test_tensorboard_resume_hides_the_events_of_redone_steps(tmp_path: Path) -> None:
    first = ResumableTensorBoardLogger(tmp_path, name=None, version=0, default_hp_metric=False)
    for step in range(10):
        first.log_metrics({"train/loss": 10.0 - step}, step=step)
    first.finalize("failed")
    second = ResumableTensorBoardLogger(tmp_path, name=None, version=0, default_hp_metric=False)
    assert second.log_dir == first.log_dir
    for step in range(6, 12):
        second.log_metrics({"train/loss": 100.0 + step}, step=step)
    second.finalize("success")
    assert len(list(Path(first.log_dir).glob("events.out.tfevents.*"))) == 2

    events = EventAccumulator(first.log_dir)
    events.Reload()
    scalars = events.Scalars("train/loss")
    assert [s.step for s in scalars] == list(range(12))
    assert [s.value for s in scalars] == [10.0 - s for s in range(6)] + [100.0 + s for s in range(6, 12)]
