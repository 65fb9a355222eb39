"""`mmattn-predict ckpt_path=... inputs=... output=preds.jsonl`: batch prediction with a trained model."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mmattn.cli.errors import one_line_errors, run_cli


def predict(cfg: DictConfig) -> Path:
    """Run the model of `cfg.ckpt_path` over the items of `cfg.inputs`, write one JSON line per item, in order.

    Args:
        cfg: The composed `predict` config (ckpt_path, inputs, output, batch_size, options, trainer, ...).

    Returns:
        The output file (written by global rank 0).

    Raises:
        ValueError: No inputs, options the model does not take, or (without skip_bad_files) an unreadable input.
    """
    import functools

    import lightning.pytorch as pl
    from hydra.utils import to_absolute_path
    from torch.utils.data import DataLoader

    from mmattn.cli import utils
    from mmattn.cli.eval import load_checkpoint_module
    from mmattn.data.predict import PredictDataset, collate_predict, expand_inputs
    from mmattn.lit.prediction_writer import JSONLinesWriter

    utils.use_hydra_logging()
    utils.make_paths_absolute(cfg)
    module, _ = load_checkpoint_module(cfg)
    options = OmegaConf.to_container(cfg.options, resolve=True) if cfg.get("options") else {}
    module.configure_prediction(**options)
    spec = module.predict_inputs()
    inputs = OmegaConf.to_container(cfg.inputs) if OmegaConf.is_list(cfg.inputs) else str(cfg.inputs)
    items = expand_inputs(inputs, spec)
    output = Path(to_absolute_path(str(cfg.output)))
    writer = JSONLinesWriter(output, items, stop_on_bad=not cfg.skip_bad_files)
    callbacks = [*utils.instantiate_group(cfg.get("callbacks"), pl.Callback), writer]
    trainer = utils.build_trainer(cfg, callbacks, [])
    # One process stops at the first unreadable input; several read on and decide together (see JSONLinesWriter).
    skip = bool(cfg.skip_bad_files) or trainer.world_size > 1
    loader = DataLoader(
        PredictDataset(items, spec.read, skip_bad_files=skip),
        batch_size=int(cfg.batch_size),
        num_workers=int(cfg.num_workers),
        collate_fn=functools.partial(collate_predict, collate=spec.collate),
    )
    with utils.ddp_children_share_run_dir(Path.cwd(), trainer):
        trainer.predict(module, dataloaders=loader, return_predictions=False)
    if trainer.is_global_zero:
        skipped = f" ({len(writer.failed)} unreadable input(s) listed with their error)" if writer.failed else ""
        print(f"{writer.written} predictions written to {output}{skipped}")
    return output


@hydra.main(version_base="1.3", config_path="pkg://mmattn.configs", config_name="predict")
@one_line_errors
def _main(cfg: DictConfig) -> None:
    """Hydra entry point; see configs/predict.yaml for the options."""
    predict(cfg)


def main() -> None:
    """Console script `mmattn-predict` (also `python -m mmattn.predict`)."""
    run_cli(_main)


if __name__ == "__main__":
    main()
