"""SLURM jobs that wait, seen while they wait: each job's state and pending reason in squeue, reported as they change.

Under `hydra/launcher=slurm`, hydra-submitit-launcher submits and waits as usual while the preflight callback
(`PreflightChecks.on_multirun_start`, via `start_watching`) runs a `QueueWatcher` beside it in a daemon thread: the
watcher finds the jobs that submitit has submitted in submitit's
folder, logs each one's state and pending reason when they change (`squeue`), says what to change for a reason that
never clears by itself, and when a job leaves the queue without a result (submitit, without SLURM accounting, would
wait for it forever) keeps the error and interrupts the main thread, where `mmattn.cli.errors.run_cli` turns the
interrupt into that one line. `wait_for_jobs` gives the same report for
submitit jobs in hand, in the calling thread.
"""

from __future__ import annotations

import _thread
import glob
import logging
import re
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NamedTuple

from submitit.core.utils import JobPaths

from mmattn.cli.slurm import run_command

log = logging.getLogger(__name__)

# squeue is asked at 0, 2, 4, ... s after submission, then less often, at most every 60 s (submitit asks sacct every
# 600 s once a job is old): enough to report a new reason soon without loading the controller.
QUEUE_POLL_S = (2.0, 60.0)
# Seconds a job that ran may take, once ended, until its result file is visible (shared file systems lag).
RESULT_GRACE_S = 30.0
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT"}
# Node states (sinfo %t, without its suffixes) in which a node takes no new job until an administrator acts.
UNAVAILABLE = {"down", "drain", "drng", "fail", "failg", "inval"}
# Pending reasons (squeue(1), "JOB REASON CODES") that no other job's end clears: why, and what to change.
STUCK = {
    "PartitionConfig": (
        "it asks for more CPUs, GPUs or memory per node, or more nodes, than partition {partition} has",
        "a smaller hydra.launcher.cpus_per_task, hydra.launcher.mem_gb, trainer.devices or trainer.num_nodes",
    ),
    "PartitionNodeLimit": ("it asks for more nodes than partition {partition} allows", "a smaller trainer.num_nodes"),
    "PartitionTimeLimit": (
        "its time limit is above partition {partition}'s MaxTime",
        "a smaller hydra.launcher.timeout_min (or lower it in place: scontrol update JobId={ids} TimeLimit=<minutes>)",
    ),
    "BadConstraints": (
        "no node of partition {partition} has the requested features",
        "another hydra.launcher.constraint",
    ),
    "ReqNodeNotAvail": ("every node of partition {partition} is down or drained", "another hydra.launcher.partition"),
    "InvalidAccount": ("its account is not valid", "another hydra.launcher.account"),
    "InvalidQOS": ("its QOS is not valid", "another hydra.launcher.qos"),
    "DependencyNeverSatisfied": ("the job it depends on failed", "another dependency"),
}
# Per-job limits of an account or QOS (AssocMaxWallDurationPerJobLimit, QOSMaxGRESPerJob, ...) never clear either.
PER_JOB_LIMIT = re.compile(r"(Assoc|QOS)Max\w*PerJob\w*")
GLOSS = {
    "Resources": "waiting for free resources",
    "Priority": "jobs of higher priority go first",
    "BeginTime": "its start time has not come",
    "Dependency": "waiting for the job it depends on",
    "JobHeldUser": "held; scontrol release {ids} lets it start",
    "JobHeldAdmin": "held by an administrator",
}
# A job id as submitit names its files: `<id>`, or `<id>_<n>` for the n-th task of a job array.
JOB_ID = re.compile(r"\d+(_\d+)?")


class QueueState(NamedTuple):
    """One job's line of squeue."""

    state: str
    reason: str
    nodes: str
    partition: str


class SlurmJobError(RuntimeError):
    """A SLURM job ended without a result: cancelled before it ran, or killed before it could write one."""


class JobFiles(NamedTuple):
    """Where a submitit job's tasks write their results (it is done when all have), and its first task's log."""

    results: tuple[Path, ...]
    log: Path

    @classmethod
    def of(cls, folder: str | Path, job_id: str, tasks: int) -> JobFiles:
        """The files of job `job_id` in submitit folder `folder` (with its `%j`), which runs `tasks` tasks."""
        paths = [JobPaths(folder, job_id, task) for task in range(tasks)]
        return cls(tuple(p.result_pickle for p in paths), paths[0].stdout)

    def has_result(self) -> bool:
        return all(path.exists() for path in self.results)


def queue_states(job_ids: Sequence[str]) -> dict[str, QueueState] | None:
    """squeue's line of each job (array tasks as `<id>_<n>`) that SLURM still knows; None when squeue fails."""
    bases = sorted({job_id.split("_")[0] for job_id in job_ids})
    result = run_command(
        "squeue", "--noheader", "--array", "--states=all", f"--jobs={','.join(bases)}", "--format=%i|%T|%r|%N|%P"
    )
    if result is None:
        return None
    if result.returncode != 0:
        # Asked only for jobs that SLURM has forgotten (ended longer ago than its MinJobAge), squeue fails.
        return {} if "Invalid job id" in result.stderr else None
    rows = (line.split("|") for line in result.stdout.splitlines() if line.count("|") == 4)
    return {job_id: QueueState(*fields) for job_id, *fields in rows}


def _all_nodes_unavailable(partition: str) -> bool:
    # ReqNodeNotAvail also names nodes that are only reserved or busy; a partition without a usable node is stuck.
    result = run_command("sinfo", "--noheader", f"--partition={partition}", "--format=%t")
    states = [s.rstrip("*~#!%$@^-") for s in result.stdout.split()] if result and result.returncode == 0 else []
    return bool(states) and all(s in UNAVAILABLE for s in states)


def stuck_reason(reason: str, partition: str) -> tuple[str, str] | None:
    """(why, what to change) for a pending reason that will not clear by itself; None for one that may."""
    code = reason.split(",")[0].strip()
    if PER_JOB_LIMIT.fullmatch(code):
        return f"it exceeds a per-job limit ({code}) of its account or QOS", "a request within it (sacctmgr show qos)"
    if code not in STUCK or (code == "ReqNodeNotAvail" and not _all_nodes_unavailable(partition)):
        return None
    return STUCK[code]


def _report(changed: dict[str, QueueState]) -> None:
    """Log one line per new state (jobs of an array that share it together), and what to do about a stuck one."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    # squeue lists array tasks in no useful order: 116_0, 116_1, ..., 116_10.
    for job_id, queued in sorted(changed.items(), key=lambda item: [int(n) for n in item[0].split("_")]):
        detail = queued.reason if queued.state == "PENDING" else queued.nodes
        groups.setdefault((queued.state, detail, queued.partition), []).append(job_id)
    for (state, detail, partition), job_ids in groups.items():
        jobs = f"job {job_ids[0]} is" if len(job_ids) == 1 else f"jobs {', '.join(job_ids)} are"
        ids = " ".join(sorted({job_id.split("_")[0] for job_id in job_ids}))
        if state == "RUNNING":
            log.info(f"SLURM {jobs} running on {detail}")
            continue
        gloss = GLOSS.get(detail.split(",")[0], "").format(ids=ids)
        reason = "" if detail in ("", "None") else f": {detail}" + (f" ({gloss})" if gloss else "")
        log.info(f"SLURM {jobs} {state.lower()}{reason}")
        stuck = stuck_reason(detail, partition) if state == "PENDING" else None
        if stuck:
            why, change = (text.format(partition=partition, ids=ids) for text in stuck)
            log.warning(
                f"SLURM {jobs.rsplit(' ', 1)[0]} will not start by itself: {why}; cancel with scancel {ids} and "
                f"submit again with {change}"
            )


class QueueReport:
    """Follows jobs in squeue, one look at a time: logs their new states, raises for one that will never end well."""

    def __init__(self) -> None:
        self.start = self.next_poll = time.monotonic()
        self.shown: dict[str, tuple[str, str]] = {}
        self.ran: set[str] = set()  # jobs squeue has shown on nodes
        self.ended_at: dict[str, float] = {}  # when a job was first seen ended, or gone from the queue

    def look(self, waiting: dict[str, JobFiles]) -> dict[str, JobFiles]:
        """The jobs still to follow: those without a result, but for any that ran and that SLURM has forgotten.

        Raises:
            SlurmJobError: A job ended without a result: cancelled before it ran, or killed before it wrote one.
        """
        waiting = {job_id: files for job_id, files in waiting.items() if not files.has_result()}
        now = time.monotonic()
        if not waiting or now < self.next_poll:
            return waiting
        self.next_poll = now + min(QUEUE_POLL_S[1], max(QUEUE_POLL_S[0], (now - self.start) / 4))
        queue = queue_states(list(waiting))
        if queue is None:
            return waiting
        self._follow(queue, waiting, now)
        # A job that ran and then left the queue ended before SLURM's MinJobAge: submitit's own wait (sacct) takes it
        # over. One that never ran did not end in the queue: a task of a pending job array, cancelled, is dropped
        # from the array at once.
        self.ran.update(job_id for job_id, queued in queue.items() if queued.nodes)
        for job_id in sorted(waiting.keys() - queue.keys() - self.ran):
            if now - self.ended_at.setdefault(job_id, now) > RESULT_GRACE_S:
                raise SlurmJobError(
                    f"SLURM job {job_id} left the queue before it ran (cancelled while pending); nothing was trained"
                )
        return {job_id: files for job_id, files in waiting.items() if job_id in queue or job_id not in self.ran}

    def _follow(self, queue: dict[str, QueueState], waiting: dict[str, JobFiles], now: float) -> None:
        """Report the waiting jobs' new states; raise for one that ended and will never write a result."""
        # Only PENDING and RUNNING are news to the user; COMPLETING, CONFIGURING and the like pass in seconds.
        changed = {i: q for i, q in queue.items() if i in waiting and self.shown.get(i) != (q.state, q.reason)}
        self.shown.update({i: (q.state, q.reason) for i, q in changed.items()})
        _report({i: q for i, q in changed.items() if q.state in ("PENDING", "RUNNING")})
        for job_id, queued in queue.items():
            if job_id not in waiting or queued.state not in ENDED:
                continue
            if not queued.nodes:
                raise SlurmJobError(f"SLURM job {job_id} ended {queued.state} before it ran; nothing was trained")
            if now - self.ended_at.setdefault(job_id, now) > RESULT_GRACE_S:
                raise SlurmJobError(
                    f"SLURM job {job_id} ended {queued.state} without a result; see its log {waiting[job_id].log}"
                )


def wait_for_jobs(jobs: Sequence[Any]) -> None:
    """Wait until every submitit SLURM job has its result or SLURM forgot it; log queue states as they change.

    Raises:
        SlurmJobError: A job ended without a result: cancelled before it ran, or killed before it wrote one.
    """
    report = QueueReport()
    waiting = {job.job_id: JobFiles.of(job.paths.folder, job.job_id, job.num_tasks) for job in jobs}
    while waiting:
        waiting = report.look(waiting)
        if waiting:
            time.sleep(1)


class QueueWatcher(threading.Thread):
    """Reports, from a daemon thread, the SLURM jobs that submitit submits into `folder` while the main thread waits.

    Once sbatch has given a job its id, submitit moves the job's pickled call to `<folder>/<id>_submitted.pkl`, with
    the id in place of `%j` in `folder` too (`<sweep dir>/.submitit/116_0/116_0_submitted.pkl` for task 0 of array
    116; the array's own `116/` holds only its sbatch script). Every id found there that was not when the watcher was
    made is followed in squeue as `wait_for_jobs` does. When one ends without a result, the watcher keeps the error
    in `error` and interrupts the main thread: a KeyboardInterrupt there, where submitit's wait would never end. Use
    it as a context manager around the wait, in the main thread; it stops when the block is left.

    Args:
        folder: submitit's folder, with its `%j` (`hydra.launcher.submitit_folder`).
        tasks: Tasks per job (nodes x tasks per node); each writes its own result.
    """

    def __init__(self, folder: str | Path, tasks: int = 1) -> None:
        super().__init__(name="mmattn-slurm-queue", daemon=True)
        self.folder, self.tasks = folder, tasks
        self.error: SlurmJobError | None = None
        self._seen = set(self.submitted())  # jobs of an earlier sweep into the same folder
        self._over = threading.Event()
        self._lock = threading.Lock()
        self._sigint: Any = None

    def submitted(self) -> list[str]:
        """The ids of every job that submitit has submitted into the folder, in submission order."""
        pattern = glob.escape(str(JobPaths(self.folder).submitted_pickle))
        for tag in ("%j", "%t", "%A", "%a"):
            pattern = pattern.replace(tag, "*")
        names = (Path(path).name.removesuffix("_submitted.pkl") for path in glob.glob(pattern))
        return sorted((n for n in names if JOB_ID.fullmatch(n)), key=lambda n: [int(k) for k in n.split("_")])

    def new_jobs(self) -> list[str]:
        """The ids of the jobs submitted since the last call (the first: since the watcher was made)."""
        new = [job_id for job_id in self.submitted() if job_id not in self._seen]
        self._seen.update(new)
        return new

    def run(self) -> None:
        report, waiting = QueueReport(), {}
        while not self._over.wait(1):
            waiting.update({job_id: JobFiles.of(self.folder, job_id, self.tasks) for job_id in self.new_jobs()})
            try:
                waiting = report.look(waiting)
            except SlurmJobError as error:
                with self._lock:
                    if not self._over.is_set():  # else the main thread's wait is over: nothing to interrupt
                        self.error = error
                        _thread.interrupt_main()
                return

    def __enter__(self) -> QueueWatcher:
        # A background job of a shell script starts with SIGINT ignored, and Python then installs no handler of its
        # own: interrupt_main() would do nothing. For the wait, a handler that interrupts for the watcher alone (a
        # SIGINT from outside stays ignored).
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            self._sigint = signal.signal(signal.SIGINT, self._interrupt_for_watcher)
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        with self._lock:
            self._over.set()
        self.join()
        if self._sigint is not None:
            signal.signal(signal.SIGINT, self._sigint)

    def _interrupt_for_watcher(self, signum: int, frame: FrameType | None) -> None:
        if self.error is not None:
            raise KeyboardInterrupt


_watching: QueueWatcher | None = None


def start_watching(folder: str | Path, tasks: int = 1) -> None:
    """Report the jobs submitted into `folder` until `stop_watching` (call it in the main thread, before submitting)."""
    global _watching
    stop_watching()
    _watching = QueueWatcher(folder, tasks)
    _watching.__enter__()


def stop_watching() -> SlurmJobError | None:
    """Stop the watcher started by `start_watching`; the error it interrupted the main thread for, if any."""
    global _watching
    watcher, _watching = _watching, None
    if watcher is None:
        return None
    watcher.__exit__(None, None, None)
    return watcher.error
