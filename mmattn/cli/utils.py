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


def build_trainer(cfg: DictConfig, callbacks: list[pl.Callback], loggers: list[pl.loggers.Logger]) -> pl.Trainer:
    """Instantiate `cfg.trainer` with the callbacks, loggers, its configured plugins and the cluster environment."""
    from mmattn.cli.cluster import environment_plugins

    plugins = [instantiate(p) for p in (cfg.trainer.get("plugins") or [])] + environment_plugins()
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins or None)


def effective_batch(trainer: pl.Trainer, datamodule: Any) -> tuple[int | None, str]:
    """Samples (or tokens, for token-budget batches) per optimizer step: per process x processes x accumulation."""
    for attr, unit in (("batch_size", "samples"), ("max_tokens", "tokens")):
        per_process = getattr(datamodule, attr, None)
        if isinstance(per_process, int) and not isinstance(per_process, bool):
            return per_process * trainer.world_size * trainer.accumulate_grad_batches, unit
    return None, ""


def apply_lr_scaling(cfg: DictConfig, trainer: pl.Trainer, datamodule: Any) -> dict[str, Any]:
    """Scale `module.optimizer.lr` by `lr_scaling` for the effective batch; return what to log and print.

    Raises:
        ValueError: An unknown rule, or a rule for data whose batch size is unknown.
    """
    from mmattn.lit.optim import scale_lr

    batch, unit = effective_batch(trainer, datamodule)
    optimizer = cfg.module.get("optimizer")
    base_lr = optimizer.get("lr") if optimizer is not None else None
    scaling = cfg.get("lr_scaling") or {}
    rule = scaling.get("rule")
    lr = base_lr
    if rule is not None:
        if batch is None or base_lr is None:
            raise ValueError(
                f"lr_scaling.rule={rule} needs the data's batch size (a batch_size or max_tokens attribute of "
                f"{type(datamodule).__name__}) and module.optimizer.lr; set lr_scaling.rule=null"
            )
        lr = scale_lr(float(base_lr), rule, batch, scaling.get("base_batch_size"))
        cfg.module.optimizer.lr = lr
    info = {
        "effective_batch_size": batch,
        "effective_batch_unit": unit,
        "world_size": trainer.world_size,
        "accumulate_grad_batches": trainer.accumulate_grad_batches,
        "lr": lr,
        "lr_base": base_lr,
        "lr_scaling_rule": rule,
    }
    if batch is not None:
        per = batch // (trainer.world_size * trainer.accumulate_grad_batches)
        scaled = f" (lr_scaling.rule={rule} from {base_lr:g} at {scaling.get('base_batch_size')})" if rule else ""
        lr_text = f"; lr {lr:g}{scaled}" if lr is not None else ""
        rank_zero_info(
            f"effective batch {batch} {unit} per optimizer step = {per} per process x {trainer.world_size} "
            f"process(es) x {trainer.accumulate_grad_batches} accumulated{lr_text}"
        )
    return info


def log_hyperparameters(
    trainer: pl.Trainer, cfg: DictConfig, module: pl.LightningModule, extra: Mapping[str, Any] | None = None
) -> None:
    """Send the resolved config (minus Hydra's own node), parameter counts and `extra` to every logger."""
    if not trainer.loggers:
        return
    config = plain_config(cfg)
    hparams = {key: config.get(key) for key in ("data", "model", "module", "trainer", "seed", "task_name", "ckpt_path")}
    hparams["model/params/total"] = sum(p.numel() for p in module.parameters())
    hparams["model/params/trainable"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    hparams.update({f"run/{key}": value for key, value in (extra or {}).items()})
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)


def checkpoints_to_resume(trainer: pl.Trainer) -> list[Path]:
    """The existing checkpoints a run directory resumes from: each `last.ckpt` and the preemption checkpoint."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from mmattn.lit import PreemptionCheckpoint

    paths = []
    for callback in trainer.callbacks:
        if isinstance(callback, PreemptionCheckpoint):
            paths.append(callback.ckpt_path)
        elif isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath:
            paths.append(Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}")
    # A sharded (FSDP) checkpoint is a directory.
    return [path for path in dict.fromkeys(paths) if path.exists()]


def newest_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The most recently written of `checkpoints_to_resume(trainer)`, None if there is none."""
    found = checkpoints_to_resume(trainer)
    return max(found, key=lambda path: path.stat().st_mtime) if found else None


def _auto_resume_reason(trainer: pl.Trainer) -> str | None:
    """Why a run started without ckpt_path continues its run directory's checkpoint, or None (a fresh start)."""
    from mmattn.lit import PreemptionCheckpoint

    for callback in trainer.callbacks:
        if isinstance(callback, PreemptionCheckpoint) and callback.ckpt_path.exists():
            return f"the preemption checkpoint {callback.ckpt_path} exists"
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    if restarts.isdigit() and int(restarts) > 0:
        return f"SLURM restarted this job (SLURM_RESTART_COUNT={restarts})"
    return None


def resolve_ckpt_path(ckpt_path: str | None, trainer: pl.Trainer | None) -> str | None:
    """Map `ckpt_path` (null, `last` or a path relative to the launch directory) to an existing checkpoint file.

    `last` is the newest of the run directory's `last.ckpt` and preemption checkpoint. With null, a run whose
    directory holds a preemption checkpoint, or a requeued SLURM job, resumes from that newest one by itself.
    """
    if ckpt_path is None:
        reason = _auto_resume_reason(trainer) if trainer is not None else None
        newest = newest_checkpoint(trainer) if reason else None
        if newest is None:
            return None
        rank_zero_info(f"resuming from {newest}, the newest checkpoint of this run directory: {reason}")
        return str(newest)
    if ckpt_path == "last":
        if trainer is None:
            raise ValueError("ckpt_path=last only means something for mmattn-train; give the path of a .ckpt file")
        newest = newest_checkpoint(trainer)
        if newest is None:
            dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
            raise ValueError(
                f"ckpt_path=last but {Path(dirpath or '.') / 'last.ckpt'} does not exist; pass hydra.run.dir=<the run "
                "to resume> together with ckpt_path=last, or ckpt_path=<path to a .ckpt file>"
            )
        return str(newest)
    path = Path(to_absolute_path(ckpt_path) if HydraConfig.initialized() else os.path.abspath(ckpt_path))
    if not path.exists():
        raise ValueError(f"ckpt_path={ckpt_path} does not exist ({path}); give a .ckpt file or a saved model folder")
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
    from mmattn.lit.checkpoint_io import atomic_write

    with atomic_write(path, "w") as f:
        json.dump(dict(sorted(metrics.items())), f, indent=2)
        f.write("\n")


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
    from mmattn.lit.profile import RunProfile

    for callback in trainer.callbacks:
        table = callback.blocks_table() if isinstance(callback, RunProfile) else None
        if table is not None:
            from rich.console import Console

            Console().print(table)
    print_summary(title, metrics, run_dir)
    rank_zero_info(f"metrics written to {run_dir / METRICS_FILE}")
