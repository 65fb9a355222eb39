"""`mmattn-eval ckpt_path=...`: test a checkpoint written by mmattn-train and write metrics.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from mmattn.cli.errors import one_line_errors, run_cli


def load_checkpoint_module(cfg: DictConfig, kinds: tuple[type, ...] | None = None, hint: str = "") -> tuple[Any, str]:
    """The module of `cfg.ckpt_path` (a checkpoint or a saved folder) on `cfg.device` (or the CPU), and its path.

    Only what `mmattn.build` allows is rebuilt, with `cfg.trust` as the user's extra trusted packages.
    """
    from mmattn.checkpoint import load
    from mmattn.cli.utils import resolve_ckpt_path

    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, trainer=None)
    trust = tuple(cfg.get("trust") or ())
    module = load(ckpt_path, device=cfg.get("device") or "cpu", trust=trust, kinds=kinds, hint=hint)
    return module, ckpt_path


def data_config(cfg: DictConfig, stored: dict[str, Any]) -> DictConfig:
    """The data config to test on: a chosen `data=...` option as is, else the model's recorded one with `+data.*`
    edits."""
    chosen = cfg.get("data")
    if chosen is not None and "_target_" in chosen:
        return chosen
    if not stored.get("data"):
        raise ValueError("the model records no data config; choose one with data=<option>")
    merged = OmegaConf.create(stored["data"])
    if chosen is not None:
        merged = OmegaConf.merge(merged, chosen)
    return merged


def one_task(module: Any, task: str, ckpt_path: str, *, check_only: bool = False) -> Any:
    """Task `task` of a multi-task module as a single-task module (or, `check_only`, the module itself once the
    task is known to be one of its).

    Raises:
        ValueError: The module is no multi-task module, or has no such task.
    """
    from mmattn.lit.multitask import MultiTaskModule

    if not isinstance(module, MultiTaskModule):
        raise ValueError(
            f"task={task} picks a task of a multi-task model, but {ckpt_path} holds a {type(module).__name__}"
        )
    if task not in module.names:
        raise ValueError(f"task={task}: {ckpt_path} holds the tasks {', '.join(module.names)}")
    return module if check_only else module.task_module(task)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Rebuild the model of `cfg.ckpt_path` from the config stored in it, test it, return the test metrics.

    Args:
        cfg: The composed `eval` config (ckpt_path, optional data, trainer, logger, callbacks, paths).

    Returns:
        Flat `{name: value}` of the test metrics (also written to `<run dir>/metrics.json` by rank 0).
    """
    import lightning.pytorch as pl

    from mmattn.build import safe_instantiate, trusting
    from mmattn.cli import utils

    utils.use_hydra_logging()
    utils.make_paths_absolute(cfg)
    run_dir = Path(cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    module, ckpt_path = load_checkpoint_module(cfg)
    chosen = cfg.get("data") is not None and "_target_" in cfg.data
    task = None if cfg.get("task") is None else str(cfg.task)
    if task is not None:
        # One task of a multi-task model: alone on a data config chosen here, else on its part of the stored one.
        module = one_task(module, task, ckpt_path, check_only=not chosen)
    decoding = {k: v for k, v in (cfg.get("decoding") or {}).items() if v is not None}
    if decoding:
        if not hasattr(module, "decoding"):
            raise ValueError(
                f"decoding.{next(iter(decoding))} is an option of sequence-to-sequence models; {ckpt_path} holds a "
                f"{type(module).__name__}"
            )
        module.configure_prediction(**decoding)
    data_cfg = data_config(cfg, module.hparams)
    if task is not None and not chosen:
        data_cfg = OmegaConf.merge(data_cfg, {"only": [task]})
    # A data option chosen on this command line is the user's own config; the checkpoint's is checked like its model.
    with trusting(everything=chosen):
        datamodule = safe_instantiate(data_cfg, where=f"{ckpt_path}: data", trust=cfg.trust)
    callbacks = utils.instantiate_group(cfg.get("callbacks"), pl.Callback)
    loggers = utils.instantiate_group(cfg.get("logger"), pl.loggers.Logger)
    trainer = utils.build_trainer(cfg, callbacks, loggers)
    for logger in trainer.loggers:
        logger.log_hyperparams({"ckpt_path": ckpt_path, "test_data": OmegaConf.to_container(data_cfg, resolve=True)})

    with utils.ddp_children_share_run_dir(run_dir, trainer):
        trainer.test(module, datamodule=datamodule)
    metrics = utils.collect_metrics(trainer)
    utils.finish(f"mmattn-eval: {Path(ckpt_path).name}", trainer, metrics, run_dir)
    return metrics


@hydra.main(version_base="1.3", config_path="pkg://mmattn.configs", config_name="eval")
@one_line_errors
def _main(cfg: DictConfig) -> None:
    """Hydra entry point; see configs/eval.yaml for the options."""
    evaluate(cfg)


def main() -> None:
    """Console script `mmattn-eval` (also `python -m mmattn.eval`)."""
    run_cli(_main)


if __name__ == "__main__":
    main()
