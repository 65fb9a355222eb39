"""Cluster glue for the entry points: checks before anything runs or is submitted, SLURM and submitit environments.

`PreflightChecks` is a Hydra callback (configs/hydra/default.yaml): it runs before Hydra creates a run directory
and, for `--multirun`, before the launcher submits a single job, and stops a bad request with one line.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

# Hydra launchers of configs/hydra/launcher/ that submit through submitit (they only act under --multirun).
SUBMITIT_LAUNCHERS = ("slurm", "local")
# hydra/launcher=slurm cannot guess these; the message says where to find them.
SLURM_REQUIRED = {"partition": "the SLURM partition to submit to (`sinfo -s` lists them)"}


class ConfigError(ValueError):
    """A request that cannot run as configured; the message names the key and the fix."""


def register_resolvers() -> None:
    """Register the `mmattn.*` OmegaConf resolvers the configs use (idempotent)."""
    if not OmegaConf.has_resolver("mmattn.gpus_per_node"):
        OmegaConf.register_new_resolver("mmattn.gpus_per_node", gpus_per_node)
    if not OmegaConf.has_resolver("mmattn.run_id"):
        OmegaConf.register_new_resolver("mmattn.run_id", run_id)
    if not OmegaConf.has_resolver("mmattn.last_checkpoint"):
        OmegaConf.register_new_resolver("mmattn.last_checkpoint", last_checkpoint)
    if not OmegaConf.has_resolver("mmattn.rank_zero_only"):
        OmegaConf.register_new_resolver(
            "mmattn.rank_zero_only", lambda value: value if process_is_rank_zero() else None
        )


def run_id(run_dir: str) -> str:
    """A stable id of a run directory (16 hex digits), e.g. the W&B run id: a requeued or resumed run, which continues
    in the same directory, gets the same id."""
    import hashlib

    return hashlib.sha1(os.path.abspath(str(run_dir)).encode()).hexdigest()[:16]


def last_checkpoint(log_dir: str, task_name: str) -> str:
    """`checkpoints/last.ckpt` of the newest run of `task_name` under `log_dir` (e.g. the vision demo's run that a
    fusion model starts from).

    Raises:
        ConfigError: No run of that task has a last checkpoint; the message names the command that makes one.
    """
    runs = sorted(Path(log_dir).expanduser().glob(f"{task_name}/runs/*/checkpoints/last.ckpt"))
    if not runs:
        raise ConfigError(
            f"no checkpoint of {task_name} under {Path(log_dir) / task_name / 'runs'}; train one first "
            f"(mmattn-train experiment={task_name}) or give the checkpoint's path"
        )
    return str(runs[-1].absolute())


def gpus_per_node(accelerator: str, devices: Any) -> int | None:
    """GPUs a SLURM job asks for per node: `trainer.devices` on GPUs, none (no `--gpus-per-node`) on CPU."""
    return devices if str(accelerator).lower() in ("gpu", "cuda") else None


def process_is_rank_zero() -> bool:
    """False in a process that a scheduler or launcher started as a rank other than 0 of a distributed job."""
    for var in ("RANK", "SLURM_PROCID", "SUBMITIT_LOCAL_GLOBALID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var]) == 0
    return os.environ.get("NODE_RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def processes_created_externally() -> bool:
    """True when SLURM, torchrun, submitit or the user started every rank (Lightning then launches none)."""
    return any(var in os.environ for var in ("SLURM_NTASKS", "LOCAL_RANK", "SUBMITIT_LOCAL_JOB_ID"))


def _device_count(devices: Any) -> int | None:
    """How many devices a `trainer.devices` value asks for; None for `auto` or -1 (all of them)."""
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return None if devices == -1 else devices
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return len(devices)
    text = str(devices).strip()
    if text in ("auto", "-1"):
        return None
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"trainer.devices={devices!r} is not a number, a list of device indices or 'auto'") from None


def _strategy_name(strategy: Any) -> str:
    """`ddp`, or the `_target_` of a strategy config node."""
    if isinstance(strategy, (Mapping, DictConfig)):
        return str(strategy.get("_target_", ""))
    return str(strategy or "")


def check_trainer(trainer: Mapping[str, Any], preset: str | None = None) -> None:
    """Refuse a trainer config this machine cannot run: GPUs that are not there, FSDP on CPU, too many processes.

    Raises:
        ConfigError: Naming the preset or key and what to use instead.
    """
    name = f"trainer={preset}" if preset else "the trainer config"
    accelerator = str(trainer.get("accelerator", "auto")).lower()
    devices = trainer.get("devices", "auto")
    wanted = _device_count(devices)
    if wanted is not None and wanted < 1:
        raise ConfigError(f"trainer.devices={devices} asks for no device; use a positive number, a list or -1 (all)")
    host = socket.gethostname()
    if accelerator in ("gpu", "cuda"):
        import torch

        count = torch.cuda.device_count()
        if count == 0:
            raise ConfigError(
                f"{name} asks for GPUs (trainer.accelerator={accelerator}) but torch sees no CUDA GPU on {host}; "
                "use trainer=ddp_cpu or trainer=cpu on this machine, or run on a GPU node"
            )
        # Under SLURM a task may see only its own GPUs; the scheduler already matched devices to the request.
        if wanted is not None and wanted > count and not processes_created_externally():
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            raise ConfigError(
                f"trainer.devices={devices} asks for {wanted} GPUs but {host} has {count}"
                f"{f' (CUDA_VISIBLE_DEVICES={visible})' if visible is not None else ''}; set trainer.devices={count} "
                "or fewer"
            )
    elif accelerator == "cpu":
        if "fsdp" in _strategy_name(trainer.get("strategy")).lower():
            raise ConfigError(
                f"{name} shards the model over GPUs with FSDP, which Lightning and torch do not run on CPU "
                "(trainer.accelerator=cpu); use trainer=ddp_cpu to test distributed training on CPU"
            )
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if wanted is not None and wanted > cores and not processes_created_externally():
            raise ConfigError(
                f"trainer.devices={devices} starts {wanted} CPU processes but {host} has {cores} usable cores; "
                f"set trainer.devices={cores} or fewer"
            )


def check_slurm_launcher(cfg: DictConfig) -> None:
    """Refuse a `hydra/launcher=slurm` request that SLURM would reject or that cannot be submitted from here.

    Raises:
        ConfigError: A required launcher field is missing, `trainer.devices` is not a count, sbatch is not on PATH, or
            the partition's nodes can never meet the request (checked where scontrol and sinfo answer).
    """
    # Imported here: mmattn.cli.slurm imports ConfigError from this module (and the submitit plugin).
    from mmattn.cli.slurm import check_partition

    launcher = cfg.hydra.launcher
    for key, meaning in SLURM_REQUIRED.items():
        if key not in launcher or OmegaConf.is_missing(launcher, key) or launcher[key] is None:
            raise ConfigError(
                f"hydra/launcher=slurm needs hydra.launcher.{key}: {meaning}; set it on the command line or in "
                "configs/local/default.yaml"
            )
    devices = cfg.trainer.get("devices")
    if not isinstance(devices, int) or devices < 1:
        raise ConfigError(
            f"hydra/launcher=slurm starts one task per device, so trainer.devices must be the number of devices per "
            f"node (e.g. trainer.devices=8), not {devices!r}"
        )
    if shutil.which("sbatch") is None:
        raise ConfigError(
            "hydra/launcher=slurm submits with sbatch, which is not on the PATH; run from a SLURM login node (for a "
            "test cluster on this host: bash scripts/slurm/local_cluster.sh start)"
        )
    check_partition(launcher)


def _fail(error: ConfigError) -> None:
    """Print the one-line message and exit with status 2, before Hydra creates a run directory or submits a job."""
    from mmattn.cli.errors import fail

    fail(str(error), status=2)


class PreflightChecks(Callback):
    """Hydra callback: check the trainer (and the launcher) before a run starts or a sweep is submitted."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Single run: the launcher is not used outside --multirun, so asking for one is a mistake."""
        choices = config.hydra.runtime.choices
        try:
            launcher = choices.get("hydra/launcher")
            if launcher in SUBMITIT_LAUNCHERS:
                raise ConfigError(
                    f"hydra/launcher={launcher} only submits under --multirun; add -m (e.g. mmattn-train -m "
                    f"hydra/launcher={launcher} ...), otherwise the run would start here"
                )
            if "trainer" in config:
                check_trainer(config.trainer, choices.get("trainer"))
        except ConfigError as error:
            _fail(error)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Sweep: check the launcher; check the trainer here unless the jobs run on other (SLURM) nodes."""
        choices = config.hydra.runtime.choices
        try:
            if choices.get("hydra/launcher") == "slurm":
                check_slurm_launcher(config)
            elif "trainer" in config:
                check_trainer(config.trainer, choices.get("trainer"))
        except ConfigError as error:
            _fail(error)
        if choices.get("hydra/launcher") == "slurm":
            from mmattn.cli.slurm_queue import start_watching

            # submitit runs nodes x tasks_per_node tasks per job; each writes its own result.
            launcher = config.hydra.launcher
            start_watching(launcher.submitit_folder, int(launcher.nodes or 1) * int(launcher.tasks_per_node or 1))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Sweep done: stop reporting the SLURM queue."""
        from mmattn.cli.slurm_queue import stop_watching

        stop_watching()


def environment_plugins() -> list[Any]:
    """Cluster-environment plugins for the Trainer: SLURM without Lightning's auto-requeue (ours owns it)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def adopt_submitit_local_tasks() -> None:
    """In a task of submitit's local executor with several tasks, export what torch.distributed and Lightning read.

    Every task is a rank started by submitit (one per device, as under srun), so Lightning must not start more: with
    `LOCAL_RANK` set, its default environment treats the processes as created externally.
    """
    if int(os.environ.get("SUBMITIT_LOCAL_NTASKS", "1")) < 2 or "LOCAL_RANK" in os.environ:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    os.environ.setdefault("NODE_RANK", "0")
