"""The SLURM launcher's queue watcher without a cluster: the jobs it finds in submitit's folder, and how it ends a
wait that submitit would never end (squeue's answer is faked; test_cli_slurm.py runs both against a real cluster)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from submitit.core.utils import JobPaths

from mmattn.cli import slurm_queue
from mmattn.cli.errors import run_cli
from mmattn.cli.slurm_queue import (
    JobFiles,
    QueueReport,
    QueueState,
    QueueWatcher,
    SlurmJobError,
    start_watching,
    stop_watching,
)


def _submit(folder: Path, job_id: str) -> None:
    """Leave the file that submitit moves into place once sbatch has given the job its id."""
    path = JobPaths(folder, job_id).submitted_pickle
    path.parent.mkdir(parents=True)
    path.touch()


def test_the_watcher_finds_the_jobs_submitted_after_it_was_made(tmp_path: Path) -> None:
    folder = tmp_path / ".submitit" / "%j"
    _submit(folder, "100")  # an earlier sweep into the same folder
    watcher = QueueWatcher(str(folder))
    for job_id in ("116_10", "116_2", "117"):
        _submit(folder, job_id)
    # A job array's own folder holds its sbatch script only; its tasks are the jobs that give results.
    (tmp_path / ".submitit" / "116").mkdir()
    (tmp_path / ".submitit" / "116" / "116_submission.sh").touch()
    assert watcher.new_jobs() == ["116_2", "116_10", "117"]
    assert watcher.new_jobs() == []
    assert watcher.submitted() == ["100", "116_2", "116_10", "117"]


def test_a_task_that_leaves_the_queue_without_running_ends_the_report(tmp_path: Path, monkeypatch) -> None:
    # scancel of one task of a pending job array drops it from the array: squeue never lists it as CANCELLED.
    pending, running = QueueState("PENDING", "JobHeldUser", "", "debug"), QueueState("RUNNING", "None", "vm", "debug")
    answers = [{"123_0": pending, "123_1": pending, "124": running}, {"123_0": pending}, {"123_0": pending}]
    monkeypatch.setattr(slurm_queue, "queue_states", lambda job_ids: answers.pop(0))
    monkeypatch.setattr(slurm_queue, "QUEUE_POLL_S", (0.0, 0.0))
    monkeypatch.setattr(slurm_queue, "RESULT_GRACE_S", 0.0)
    report = QueueReport()
    waiting = report.look({job_id: JobFiles.of(tmp_path / "%j", job_id, 1) for job_id in ("123_0", "123_1", "124")})
    # 124 ran and SLURM forgot it: submitit's own wait takes it over. 123_1 never ran: given the grace, it is lost.
    waiting = report.look(waiting)
    assert sorted(waiting) == ["123_0", "123_1"]
    time.sleep(0.01)
    with pytest.raises(SlurmJobError, match="SLURM job 123_1 left the queue before it ran"):
        report.look(waiting)


@pytest.mark.parametrize("sigint", [signal.default_int_handler, signal.SIG_IGN], ids=["sigint-handled", "ignored"])
def test_a_job_cancelled_before_it_ran_ends_the_launchers_wait_with_one_line(
    tmp_path: Path, monkeypatch, capsys, sigint
) -> None:
    folder = tmp_path / ".submitit" / "%j"

    def sweep() -> None:
        start_watching(str(folder), 1)  # what PreflightChecks.on_multirun_start does for hydra/launcher=slurm
        _submit(folder, "118")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # submitit's wait for a result that never comes
            time.sleep(0.05)

    cancelled = QueueState(state="CANCELLED", reason="None", nodes="", partition="debug")
    monkeypatch.setattr(slurm_queue, "queue_states", lambda job_ids: dict.fromkeys(job_ids, cancelled))
    monkeypatch.setenv("MMATTN_DEBUG", "0")
    monkeypatch.setattr("sys.argv", ["mmattn-train"])
    # A shell script's background job starts with SIGINT ignored; the watcher must end the wait there too.
    previous = signal.signal(signal.SIGINT, sigint)
    try:
        with pytest.raises(SystemExit) as stop:
            run_cli(sweep)
        assert signal.getsignal(signal.SIGINT) is sigint
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith(": error: SLURM job 118 ended CANCELLED before it ran; nothing was trained"), err


def test_the_users_ctrl_c_stays_an_interrupt(tmp_path: Path, monkeypatch) -> None:
    def interrupted() -> None:
        start_watching(str(tmp_path / "%j"), 1)
        raise KeyboardInterrupt

    monkeypatch.setenv("MMATTN_DEBUG", "0")
    monkeypatch.setattr("sys.argv", ["mmattn-train"])
    with pytest.raises(KeyboardInterrupt):
        run_cli(interrupted)
    assert not [t for t in threading.enumerate() if isinstance(t, QueueWatcher) and t.is_alive()]
    assert stop_watching() is None  # stopped with the interrupt
