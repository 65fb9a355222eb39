"""SLURM requests that cannot run, seen before they are submitted.

`check_partition` compares a `hydra/launcher=slurm` request with what the partition's nodes have (`scontrol`,
`sinfo`); `PreflightChecks` calls it before the sweep is submitted. Jobs that wait are reported while they wait by
`mmattn.cli.slurm_queue`, which asks SLURM through `run_command` too.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from typing import NamedTuple

from omegaconf import DictConfig, OmegaConf

from mmattn.cli.cluster import ConfigError

log = logging.getLogger(__name__)

# A controller that does not answer makes the SLURM commands retry for long; sbatch will then report it anyway.
COMMAND_TIMEOUT_S = 20


class Node(NamedTuple):
    """What one node of a partition has, whatever it runs now."""

    name: str
    cpus: int
    mem_mb: int
    gpus: int


def run_command(*command: str) -> subprocess.CompletedProcess | None:
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
    result = run_command("scontrol", "--all", "--oneliner", "show", "partition")
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
    result = run_command("sinfo", "--noheader", "--Node", f"--partition={partition}", "--format=%N|%c|%m|%G")
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
