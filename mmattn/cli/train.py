"""`mmattn-train`: fit a model from the Hydra config, test its best checkpoint, write metrics.json."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from mmattn.cli.errors import one_line_errors, run_cli


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the configured module on the configured data, optionally test the best checkpoint; return final metrics.

    Args:
        cfg: The composed `train` config (data, model, module, trainer, logger, callbacks, paths, ...).

    Returns:
        Flat `{name: value}` of the final metrics (also written to `<run dir>/metrics.json` by rank 0).
    """
    # Heavy imports stay here so that config errors and --help answer without loading torch and Lightning.
    import lightning.pytorch as pl
    from hydra.utils import instantiate
    from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

    from mmattn.cli import cluster, utils
    from mmattn.cli.selection import resolve_monitors
    from mmattn.lit import ConfigInCheckpoint
    from mmattn.models.pretrained import architecture_config

    utils.use_hydra_logging()
    utils.make_paths_absolute(cfg)
    cluster.adopt_submitit_local_tasks()
    run_dir = Path(cfg.paths.output_dir)
    resolve_monitors(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    rank_zero_info(f"instantiating data <{cfg.data._target_}>, model <{cfg.model._target_}>")
    datamodule = instantiate(cfg.data)
    callbacks = utils.instantiate_group(cfg.get("callbacks"), pl.Callback)
    # The resolved config rides along in every checkpoint, so mmattn-eval can rebuild the model from it alone. It
    # keeps the configured learning rate: lr_scaling recomputes the same scaled one for the same world size.
    callbacks.append(ConfigInCheckpoint(utils.plain_config(cfg)))
    loggers = utils.instantiate_group(cfg.get("logger"), pl.loggers.Logger)
    trainer = utils.build_trainer(cfg, callbacks, loggers)
    run_info = utils.apply_lr_scaling(cfg, trainer, datamodule)
    net = instantiate(cfg.model)
    if cfg.get("init_from"):
        from hydra.utils import to_absolute_path

        from mmattn.checkpoint import init_weights_from

        init_weights_from(net, to_absolute_path(str(cfg.init_from)), task=cfg.get("init_from_task"))
    module = instantiate(cfg.module, net=net)
    if hasattr(module, "record_configs"):
        # So that checkpoints and saved folders rebuild the network and read files as this data does.
        # A network built from pretrained weights records the architecture it has (`init_config`): rebuilding from a
        # checkpoint then builds that, without fetching the weights again.
        net_config = architecture_config(net, utils.plain_config(cfg.model))
        module.record_configs(net=net_config, data=utils.plain_config(cfg.data))
    utils.log_hyperparameters(trainer, cfg, module, run_info)
    ckpt_path = utils.resolve_ckpt_path(cfg.get("ckpt_path"), trainer)

    with utils.ddp_children_share_run_dir(run_dir, trainer):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics = utils.collect_metrics(trainer)
        checkpoint = trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.best_model_score is not None:
            metrics[f"{checkpoint.monitor}_best"] = float(checkpoint.best_model_score)
        if cfg.get("test"):
            best = getattr(checkpoint, "best_model_path", "")
            if not best:
                rank_zero_warn("no best checkpoint was saved; testing the weights at the end of training")
            trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
            metrics.update(utils.collect_metrics(trainer))

    utils.finish(f"mmattn-train: {cfg.get('task_name', 'train')}", trainer, metrics, run_dir)
    return metrics


@hydra.main(version_base="1.3", config_path="pkg://mmattn.configs", config_name="train")
@one_line_errors
def _main(cfg: DictConfig) -> float | None:
    """Hydra entry point; see configs/train.yaml for the options. Returns `cfg.optimized_metric`'s value (sweepers)."""
    metrics = train(cfg)
    key = cfg.get("optimized_metric")
    if key is None:
        return None
    if key not in metrics:
        raise ValueError(f"optimized_metric={key} is not among the final metrics {sorted(metrics)}; choose one of them")
    return metrics[key]


def main() -> None:
    """Console script `mmattn-train` (also `python -m mmattn.train`)."""
    run_cli(_main)


if __name__ == "__main__":
    main()
