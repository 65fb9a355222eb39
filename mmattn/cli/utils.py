"""Helpers shared by the Hydra entry points: instantiation, paths, metrics.json, the summary, DDP run directories."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate, to_absolute_path
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf

# Rank 0 exports its run directory here; configs/hydra/default.yaml reads it as hydra.run.dir.
RUN_DIR_ENV = "MMATTN_RUN_DIR"
METRICS_FILE = "metrics.json"
_PATH_KEYS = ("data_dir", "log_dir", "output_dir")


def use_hydra_logging() -> None:
    """Drop the console handler that `import lightning` adds when Hydra's root handlers already print and log.

    Lightning's messages would otherwise appear twice on the console (once per handler).
    """
    if HydraConfig.initialized() and logging.getLogger().handlers:
        lightning_logger = logging.getLogger("lightning")
        for handler in list(lightning_logger.handlers):
            if type(handler) is logging.StreamHandler:
                lightning_logger.removeHandler(handler)


def make_paths_absolute(cfg: DictConfig) -> None:
    """Resolve relative `paths.*` against the launch directory, so they mean the same in every process and cwd."""
    paths = cfg.get("paths")
    if paths is None:
        return
    for key in _PATH_KEYS:
        value = paths.get(key)
        if value is not None and not os.path.isabs(str(value)):
            # to_absolute_path uses Hydra's original cwd, which stays right even with hydra.job.chdir=true.
            paths[key] = to_absolute_path(str(value)) if HydraConfig.initialized() else os.path.abspath(value)


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain containers, without the `hydra` node (it is stored in every checkpoint)."""
    container = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))
    container.pop("hydra", None)
    return container


def instantiate_group(group: DictConfig | None, kind: type) -> list[Any]:
    """Instantiate every `_target_` entry of a dict-of-configs group (callbacks, loggers) and check its type."""
    if not group:
        return []
    if not isinstance(group, DictConfig):
        raise ValueError(f"the {kind.__name__} config must be a mapping of name -> {{_target_: ...}}, got {group!r}")
    objects = []
    for name, node in group.items():
        if isinstance(node, DictConfig) and "_target_" in node:
            obj = instantiate(node)
            if not isinstance(obj, kind):
                raise ValueError(f"{name} ({node._target_}) is not a {kind.__name__}")
            objects.append(obj)
    return objects


def log_hyperparameters(trainer: pl.Trainer, cfg: DictConfig, module: pl.LightningModule) -> None:
    """Send the resolved config (minus Hydra's own node) and parameter counts to every logger."""
    if not trainer.loggers:
        return
    config = plain_config(cfg)
    hparams = {key: config.get(key) for key in ("data", "model", "module", "trainer", "seed", "task_name", "ckpt_path")}
    hparams["model/params/total"] = sum(p.numel() for p in module.parameters())
    hparams["model/params/trainable"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)


def resolve_ckpt_path(ckpt_path: str | None, trainer: pl.Trainer | None) -> str | None:
    """Map `ckpt_path` (null, `last` or a path relative to the launch directory) to an existing checkpoint file."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        if trainer is None:
            raise ValueError("ckpt_path=last only means something for mmattn-train; give the path of a .ckpt file")
        dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
        path = Path(dirpath or ".") / "last.ckpt"
        if not path.is_file():
            raise ValueError(
                f"ckpt_path=last but {path} does not exist; pass hydra.run.dir=<the run to resume> together with "
                "ckpt_path=last, or ckpt_path=<path to a .ckpt file>"
            )
        return str(path)
    path = Path(to_absolute_path(ckpt_path) if HydraConfig.initialized() else os.path.abspath(ckpt_path))
    if not path.is_file():
        raise ValueError(f"ckpt_path={ckpt_path} does not exist ({path}); give the path of a .ckpt file")
    return str(path)


def collect_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """Scalar entries of `trainer.callback_metrics` as floats."""
    metrics = {}
    for key, value in trainer.callback_metrics.items():
        if key.startswith("lr-"):  # LearningRateMonitor's last values: a schedule detail, not a result
            continue
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            metrics[key] = float(value.item())
        elif isinstance(value, (int, float)):
            metrics[key] = float(value)
    return metrics


def write_metrics(path: Path, metrics: Mapping[str, float]) -> None:
    """Write `metrics` as a flat JSON object, atomically (a reader never sees a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(dict(sorted(metrics.items())), f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def print_summary(title: str, metrics: Mapping[str, float], run_dir: Path) -> None:
    """Print a table of the final metrics and the run directory (rich)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in sorted(metrics.items()):
        table.add_row(key, f"{value:.4g}")
    console = Console()
    console.print(table)
    # soft_wrap: the path stays on one line (copy-paste, grep); markup off: "[" in a path is not rich markup.
    console.print(f"run directory: {run_dir}", soft_wrap=True, markup=False, highlight=False)


_relaunched_in_this_process = False


def _will_relaunch(trainer: pl.Trainer) -> bool:
    """True if `trainer.fit/test` will start the other ranks by re-running this script (Lightning's launcher)."""
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    launcher = trainer.strategy.launcher
    if not isinstance(launcher, _SubprocessScriptLauncher) or trainer.world_size < 2:
        return False
    return not launcher.cluster_environment.creates_processes_externally


@contextmanager
def ddp_children_share_run_dir(run_dir: Path, trainer: pl.Trainer) -> Iterator[None]:
    """Make the DDP processes that Lightning re-launches from this one run in `run_dir`, as this job does.

    Lightning's subprocess launcher re-runs `sys.argv` plus `hydra.run.dir=<HydraConfig run.dir>`,
    `hydra.output_subdir=null` (no `.hydra/` from children) and its own job name. While the block runs we fix what
    is not right for us:

    - `run.dir` is read anew from the config. We export `MMATTN_RUN_DIR=run_dir`, which our `hydra.run.dir`
      returns first, so Lightning passes this job's real directory (not a second `${now:}`, nor, under
      `--multirun`, the unused run dir instead of the sweep job's directory).
    - `sys.argv` may be a multirun command line (`-m a=1,2`): each child would start a sweep of its own. We swap in
      this job's own overrides.
    - each child would write a Hydra job log file (`train_ddp_process_<n>.log`) into the run directory;
      `hydra/job_logging=stdout` keeps its messages on the console.

    Raises:
        ValueError: A second job of a `--multirun` sweep needs new DDP processes: Lightning starts them only once.
    """
    global _relaunched_in_this_process
    if _relaunched_in_this_process and trainer.world_size > 1:
        raise ValueError(
            "this process already started DDP ranks for an earlier job of the sweep, and Lightning can start them "
            "only once per process; run one DDP job per command (no --multirun with several jobs), or use a "
            "Hydra launcher plugin that runs each job in a process of its own"
        )
    if not HydraConfig.initialized() or not _will_relaunch(trainer):
        yield
        return
    _relaunched_in_this_process = True
    hydra_cfg = HydraConfig.get()
    skip = ("hydra.mode=", "hydra.run.dir=", "hydra.output_subdir=", "hydra.job.name=", "hydra/job_logging=")
    overrides = [o for o in hydra_cfg.overrides.hydra if not o.startswith(skip)]
    overrides += list(hydra_cfg.overrides.task) + ["hydra/job_logging=stdout"]
    saved_argv, saved_env = sys.argv, os.environ.get(RUN_DIR_ENV)
    sys.argv = [sys.argv[0], *overrides]
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        yield
    finally:
        sys.argv = saved_argv
        if saved_env is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = saved_env


def finish(title: str, trainer: pl.Trainer, metrics: Mapping[str, float], run_dir: Path) -> None:
    """On global rank 0 only: write `metrics.json` into `run_dir` and print the summary."""
    if not trainer.is_global_zero:
        return
    write_metrics(run_dir / METRICS_FILE, metrics)
    print_summary(title, metrics, run_dir)
    rank_zero_info(f"metrics written to {run_dir / METRICS_FILE}")
