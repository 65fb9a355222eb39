"""SLURM requests that cannot run, seen before they are submitted, and jobs that wait, seen while they wait.

`check_partition` compares a `hydra/launcher=slurm` request with what the partition's nodes have (`scontrol`,
`sinfo`); `PreflightChecks` calls it before the sweep is submitted. `wait_for_jobs`, which our SLURM launcher
(hydra_plugins/mmattn_launcher) runs after submitting, logs each job's state and pending reason when they change,
says what to change for a reason that never clears by itself, and stops when a job leaves the queue without a
result (submitit, without SLURM accounting, would wait for it forever).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from omegaconf import DictConfig, OmegaConf

from mmattn.cli.cluster import ConfigError

log = logging.getLogger(__name__)

# A controller that does not answer makes scontrol/squeue retry for a long time; sbatch will then report it anyway.
COMMAND_TIMEOUT_S = 20
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


class Node(NamedTuple):
    """What one node of a partition has, whatever it runs now."""

    name: str
    cpus: int
    mem_mb: int
    gpus: int


class QueueState(NamedTuple):
    """One job's line of squeue."""

    state: str
    reason: str
    nodes: str
    partition: str


class SlurmJobError(RuntimeError):
    """A SLURM job ended without a result: cancelled before it ran, or killed before it could write one."""


def _run(*command: str) -> subprocess.CompletedProcess | None:
    """Run a SLURM command; None when it is not installed here or does not answer in time."""
    if shutil.which(command[0]) is None:
        log.debug("%s is not on the PATH; skipping", command[0])
        return None
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.debug("%s: %s", " ".join(command), error)
        return None


def partitions() -> dict[str, dict[str, str]] | None:
    """Every partition's settings (`scontrol show partition`) by name; None when SLURM does not answer."""
    result = _run("scontrol", "--all", "--oneliner", "show", "partition")
    if result is None or result.returncode != 0:
        log.debug("scontrol show partition: %s", result.stderr.strip() if result else "not run")
        return None
    found = (dict(re.findall(r"(\w+)=(\S*)", line)) for line in result.stdout.splitlines())
    return {fields["PartitionName"]: fields for fields in found if "PartitionName" in fields}


def gres_gpus(gres: str) -> int:
    """GPUs in a node's GRES (`gpu:4`, `gpu:a100:4(S:0-1),nvme:1`)."""
    entries = re.sub(r"\(.*?\)", "", gres).split(",")
    return sum(int(e.split(":")[-1]) if e.split(":")[-1].isdigit() else 1 for e in entries if e.startswith("gpu"))


def partition_nodes(partition: str) -> list[Node] | None:
    """The nodes of a partition with their CPUs, memory and GPUs (`sinfo`); None when SLURM does not answer."""
    result = _run("sinfo", "--noheader", "--Node", f"--partition={partition}", "--format=%N|%c|%m|%G")
    if result is None or result.returncode != 0:
        return None
    rows = (line.split("|") for line in result.stdout.splitlines() if line.count("|") == 3)
    return [Node(name, int(cpus), int(mem.rstrip("+")), gres_gpus(gres)) for name, cpus, mem, gres in rows]


def time_limit_minutes(limit: str) -> float | None:
    """Minutes of a SLURM time limit (`1-00:00:00`, `04:00:00`, `30:00`, `45`); None when UNLIMITED."""
    if not limit[:1].isdigit():
        return None
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        parts += [0] * (3 - len(parts))
    else:  # minutes, minutes:seconds or hours:minutes:seconds
        parts = [0, parts[0], 0] if len(parts) == 1 else [0] * (3 - len(parts)) + parts
    hours, minutes, seconds = parts
    return int(days or 0) * 1440 + hours * 60 + minutes + seconds / 60


def _limit(fields: dict[str, str], key: str) -> int | None:
    """A numeric partition limit (MaxNodes, MaxCPUsPerNode, MaxMemPerNode); None when UNLIMITED."""
    value = fields.get(key, "")
    return int(value) if value.isdigit() else None


def _source(launcher: DictConfig, key: str) -> str:
    """The key a user changes for launcher `key`: the trainer key it follows (nodes: trainer.num_nodes), or itself."""
    raw = str(OmegaConf.to_container(launcher, resolve=False).get(key))
    follows = re.search(r"trainer\.(num_nodes|devices)", raw)
    return follows.group(0) if follows else f"hydra.launcher.{key}"


def _request(launcher: DictConfig, key: str) -> str:
    """`hydra.launcher.nodes=4 (trainer.num_nodes)`: the launcher value, and where it comes from."""
    source = _source(launcher, key)
    return f"hydra.launcher.{key}={launcher[key]}" + (f" ({source})" if source.startswith("trainer.") else "")


def _problem(launcher: DictConfig, name: str, fields: dict[str, str], nodes: list[Node]) -> str | None:
    """What in the request partition `name` can never give (one line with the override to use), or None."""
    count, tasks = int(launcher.nodes or 1), int(launcher.tasks_per_node or 1)
    per_task, gpus = int(launcher.cpus_per_task or 1), int(launcher.gpus_per_node or 0)
    mem_mb = None if launcher.mem_gb is None else float(launcher.mem_gb) * 1024
    max_minutes = time_limit_minutes(fields.get("MaxTime", "UNLIMITED"))
    if max_minutes is not None and launcher.timeout_min > max_minutes:
        return (
            f"hydra.launcher.timeout_min={launcher.timeout_min} is above partition {name}'s "
            f"MaxTime={fields['MaxTime']} ({max_minutes:g} minutes); set hydra.launcher.timeout_min={int(max_minutes)}"
        )
    most_nodes = min(len(nodes), _limit(fields, "MaxNodes") or len(nodes))
    if count > most_nodes:
        return (
            f"{_request(launcher, 'nodes')} asks for {count} nodes, but partition {name} gives at most {most_nodes}; "
            f"set {_source(launcher, 'nodes')}={most_nodes}"
        )
    cpus = min(max(n.cpus for n in nodes), _limit(fields, "MaxCPUsPerNode") or 1 << 30)
    if tasks * per_task > cpus:
        fix = (
            f"hydra.launcher.cpus_per_task={cpus // tasks}"
            if tasks <= cpus
            else f"{_source(launcher, 'tasks_per_node')}={cpus} and hydra.launcher.cpus_per_task=1"
        )
        return (
            f"hydra.launcher.cpus_per_task={per_task} x {_request(launcher, 'tasks_per_node')} asks for "
            f"{tasks * per_task} CPUs per node, but the nodes of partition {name} have at most {cpus}; set {fix}"
        )
    most_gpus = max(n.gpus for n in nodes)
    if gpus > most_gpus:
        offer, fix = (
            (f"at most {most_gpus}", f"set {_source(launcher, 'gpus_per_node')}={most_gpus}")
            if most_gpus
            else ("none", "choose a partition with GPUs (sinfo -o '%P %G') or train on CPUs (trainer=ddp_cpu)")
        )
        return (
            f"{_request(launcher, 'gpus_per_node')} asks for {gpus} GPUs per node, but the nodes of partition {name} "
            f"have {offer}; {fix}"
        )
    memory = min(max(n.mem_mb for n in nodes), _limit(fields, "MaxMemPerNode") or 1 << 60)
    if mem_mb is not None and mem_mb > memory:
        return (
            f"hydra.launcher.mem_gb={launcher.mem_gb} asks for {launcher.mem_gb} GB per node, but the nodes of "
            f"partition {name} have at most {memory // 1024} GB; set hydra.launcher.mem_gb={memory // 1024}"
        )
    fit = [n for n in nodes if n.cpus >= tasks * per_task and n.gpus >= gpus and (mem_mb or 0) <= n.mem_mb]
    if count > len(fit):
        return (
            f"{_request(launcher, 'nodes')} asks for {count} nodes of {tasks * per_task} CPUs and {gpus} GPUs each, "
            f"but only {len(fit)} nodes of partition {name} have that; set {_source(launcher, 'nodes')}={len(fit)}"
        )
    return None


def check_partition(launcher: DictConfig) -> None:
    """Refuse a request that no node of its partition can ever meet; skip quietly where SLURM does not answer.

    Raises:
        ConfigError: The partition does not exist, or the request exceeds its nodes or limits; the message names the
            key, its value, what the partition offers and the override to use.
    """
    known = partitions()
    if known is None:
        return
    names = str(launcher.partition).split(",")
    for name in names:
        if name not in known:
            raise ConfigError(
                f"hydra.launcher.partition={launcher.partition}: SLURM has no partition {name}; it has "
                f"{', '.join(sorted(known))} (sinfo -s)"
            )
    problems = []
    for name in names:
        nodes = partition_nodes(name)
        if nodes is None:
            return
        problems.append(_problem(launcher, name, known[name], nodes) if nodes else f"partition {name} has no nodes")
    # A job submitted to several partitions runs in the first that can take it.
    if all(problems):
        raise ConfigError(problems[0])


def queue_states(job_ids: Sequence[str]) -> dict[str, QueueState] | None:
    """squeue's line of each job (array tasks as `<id>_<n>`) that SLURM still knows; None when squeue fails."""
    bases = sorted({job_id.split("_")[0] for job_id in job_ids})
    result = _run(
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
    result = _run("sinfo", "--noheader", f"--partition={partition}", "--format=%t")
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


def _has_result(job: Any) -> bool:
    # Every task of a job writes its own result file (a multi-task job is done when all have).
    return all(job.task(t).paths.result_pickle.exists() for t in range(job.num_tasks))


def wait_for_jobs(jobs: Sequence[Any]) -> None:
    """Wait until every submitit SLURM job has its result or SLURM forgot it; log queue states as they change.

    Raises:
        SlurmJobError: A job ended without a result: cancelled before it ran, or killed before it wrote one.
    """
    waiting = {job.job_id: job for job in jobs}
    shown: dict[str, tuple[str, str]] = {}
    ended_at: dict[str, float] = {}
    start = next_poll = time.monotonic()
    while waiting:
        waiting = {job_id: job for job_id, job in waiting.items() if not _has_result(job)}
        now = time.monotonic()
        if waiting and now >= next_poll:
            queue = queue_states(list(waiting))
            if queue is not None:
                _follow(queue, waiting, shown, ended_at, now)
                # Jobs SLURM has forgotten (ended before MinJobAge): submitit's own wait (sacct) takes them over.
                waiting = {job_id: job for job_id, job in waiting.items() if job_id in queue}
            next_poll = now + min(QUEUE_POLL_S[1], max(QUEUE_POLL_S[0], (now - start) / 4))
        if waiting:
            time.sleep(1)


def _follow(
    queue: dict[str, QueueState],
    waiting: dict[str, Any],
    shown: dict[str, tuple[str, str]],
    ended_at: dict[str, float],
    now: float,
) -> None:
    """Report the waiting jobs' new states; raise for one that ended and will never write a result."""
    # Only PENDING and RUNNING are news to the user; COMPLETING, CONFIGURING and the like pass in seconds.
    changed = {i: q for i, q in queue.items() if i in waiting and shown.get(i) != (q.state, q.reason)}
    shown.update({i: (q.state, q.reason) for i, q in changed.items()})
    _report({i: q for i, q in changed.items() if q.state in ("PENDING", "RUNNING")})
    for job_id, queued in queue.items():
        if job_id not in waiting or queued.state not in ENDED:
            continue
        if not queued.nodes:
            raise SlurmJobError(f"SLURM job {job_id} ended {queued.state} before it ran; nothing was trained")
        if now - ended_at.setdefault(job_id, now) > RESULT_GRACE_S:
            raise SlurmJobError(
                f"SLURM job {job_id} ended {queued.state} without a result; see its log "
                f"{waiting[job_id].task(0).paths.stdout}"
            )
