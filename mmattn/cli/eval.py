"""`mmattn-eval ckpt_path=...`: test a checkpoint written by mmattn-train and write metrics.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf


def load_run_config(ckpt_path: str | Path) -> dict[str, Any]:
    """Read the training config that mmattn-train stored in a checkpoint.

    Raises:
        ValueError: The checkpoint holds no mmattn config (it was not written by mmattn-train), or it is a sharded
            FSDP folder (the message gives the command that merges it).
    """
    import torch

    from mmattn.lit import CONFIG_KEY

    if Path(ckpt_path).is_dir():
        raise ValueError(
            f"{ckpt_path} is a sharded (FSDP) checkpoint folder; merge it into one file first: python -m "
            f"lightning.pytorch.utilities.consolidate_checkpoint {ckpt_path} --output_file {ckpt_path}.consolidated"
        )
    # weights_only: the stored config is plain data, so the safe loader suffices and no code is unpickled.
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    config = checkpoint.get(CONFIG_KEY)
    if not isinstance(config, dict) or "model" not in config or "module" not in config:
        raise ValueError(
            f"{ckpt_path} holds no '{CONFIG_KEY}' entry with the model and module configs, so the model cannot be "
            "rebuilt; use a checkpoint written by mmattn-train"
        )
    return config


def load_module(ckpt: str, device: str, *, needs: str | None = None, refusal: str = "") -> Any:
    """The LightningModule of a checkpoint from mmattn-train, rebuilt from its stored config, for inference.

    Args:
        ckpt: `ckpt_path` as the user gave it (a file, or what `resolve_ckpt_path` accepts).
        device: Where to map the weights.
        needs: An attribute the module class must have for this command (e.g. "translate"); None = any module.
        refusal: What the error says otherwise, after "holds a <class>, which", e.g. "does not translate; use ...".

    Raises:
        ValueError: The checkpoint's module lacks `needs`, or the checkpoint was not written by mmattn-train.
    """
    from hydra.utils import get_class, instantiate

    from mmattn.cli.utils import resolve_ckpt_path

    ckpt_path = resolve_ckpt_path(ckpt, trainer=None)
    stored = load_run_config(ckpt_path)
    module_cls = get_class(stored["module"]["_target_"])
    if needs is not None and not hasattr(module_cls, needs):
        raise ValueError(f"{ckpt_path} holds a {module_cls.__name__}, which {refusal}")
    return module_cls.load_from_checkpoint(
        ckpt_path, map_location=device, weights_only=True, net=instantiate(stored["model"])
    )


def data_config(cfg: DictConfig, stored: dict[str, Any]) -> DictConfig:
    """The data config to test on: a chosen `data=...` option as is, else the stored one with `+data.*` edits."""
    chosen = cfg.get("data")
    if chosen is not None and "_target_" in chosen:
        return chosen
    if "data" not in stored:
        raise ValueError("the checkpoint's config has no data config; choose one with data=<option>")
    merged = OmegaConf.create(stored["data"])
    if chosen is not None:
        merged = OmegaConf.merge(merged, chosen)
    return merged


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Rebuild the model of `cfg.ckpt_path` from the config stored in it, test it, return the test metrics.

    Args:
        cfg: The composed `eval` config (ckpt_path, optional data, trainer, logger, callbacks, paths).

    Returns:
        Flat `{name: value}` of the test metrics (also written to `<run dir>/metrics.json` by rank 0).
    """
    import lightning.pytorch as pl
    from hydra.utils import get_class, instantiate

    from mmattn.cli import utils

    utils.use_hydra_logging()
    utils.make_paths_absolute(cfg)
    run_dir = Path(cfg.paths.output_dir)
    ckpt_path = utils.resolve_ckpt_path(cfg.ckpt_path, trainer=None)
    stored = load_run_config(ckpt_path)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    data_cfg = data_config(cfg, stored)
    datamodule = instantiate(data_cfg)
    net = instantiate(stored["model"])
    module_cls = get_class(stored["module"]["_target_"])
    module = module_cls.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True, net=net)
    callbacks = utils.instantiate_group(cfg.get("callbacks"), pl.Callback)
    loggers = utils.instantiate_group(cfg.get("logger"), pl.loggers.Logger)
    trainer = utils.build_trainer(cfg, callbacks, loggers)
    for logger in trainer.loggers:
        logger.log_hyperparams({"ckpt_path": ckpt_path, "data": OmegaConf.to_container(data_cfg, resolve=True)})

    with utils.ddp_children_share_run_dir(run_dir, trainer):
        trainer.test(module, datamodule=datamodule)
    metrics = utils.collect_metrics(trainer)
    utils.finish(f"mmattn-eval: {Path(ckpt_path).name}", trainer, metrics, run_dir)
    return metrics


@hydra.main(version_base="1.3", config_path="pkg://mmattn.configs", config_name="eval")
def _main(cfg: DictConfig) -> None:
    """Hydra entry point; see configs/eval.yaml for the options."""
    evaluate(cfg)


def main() -> None:
    """Console script `mmattn-eval` (also `python -m mmattn.eval`)."""
    _main()


if __name__ == "__main__":
    main()
