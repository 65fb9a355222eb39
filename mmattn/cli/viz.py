"""`mmattn-viz what=...`: pictures (PNG) of what attention models compute; see configs/viz.yaml."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mmattn.cli.errors import one_line_errors, run_cli

WHAT = ("positions", "attention")
log = logging.getLogger(__name__)


def visualize(cfg: DictConfig) -> list[Path]:
    """Write the pictures `cfg.what` asks for into `cfg.out_dir`; print and return their paths.

    Raises:
        ValueError: An unknown `what`, or `what=attention` without a checkpoint.
        ImportError: matplotlib is missing (the message names the extra).
    """
    if cfg.what not in WHAT:
        raise ValueError(f"unknown what={cfg.what!r}; choose one of {list(WHAT)}")
    paths = _positions(cfg) if cfg.what == "positions" else _attention(cfg)
    sys.stdout.write("".join(f"{p}\n" for p in paths))
    return paths


def _positions(cfg: DictConfig) -> list[Path]:
    from mmattn.viz.positions import learned_tables, relative_modules, write_position_pictures

    learned = relative = None
    if cfg.ckpt_path is not None:
        from mmattn.cli.eval import load_checkpoint_module

        net = load_checkpoint_module(cfg)[0].net
        learned, relative = learned_tables(net), relative_modules(net)
        if not learned and not relative:
            log.warning(f"{cfg.ckpt_path} has no learned position table or bias; drawing the fixed encodings only")
    return write_position_pictures(
        cfg.out_dir,
        num_positions=int(cfg.num_positions),
        dim=int(cfg.dim),
        num_heads=int(cfg.num_heads),
        learned=learned,
        relative=relative,
    )


def _attention(cfg: DictConfig) -> list[Path]:
    """Attention maps of `cfg.num_samples` validation examples of the checkpoint's own data."""
    from mmattn.build import safe_instantiate
    from mmattn.cli.eval import load_checkpoint_module
    from mmattn.viz.attention import attention_figures, save_figures

    if cfg.ckpt_path is None:
        raise ValueError("what=attention needs ckpt_path=<checkpoint from mmattn-train>")
    module, ckpt_path = load_checkpoint_module(cfg)
    if cfg.inputs:
        # Files of the user's, read as the model's own evaluation data is (resized / resampled with a warning).
        paths = [str(Path(p).expanduser()) for p in cfg.inputs]
        figures = module.file_attention_figures(paths)
    else:
        if not module.hparams.get("data"):
            raise ValueError(f"{ckpt_path} records no data config, so there is nothing to draw from; pass inputs=[...]")
        datamodule = safe_instantiate(module.hparams["data"], where=f"{ckpt_path}: data", trust=cfg.trust)
        datamodule.prepare_data()
        datamodule.setup("validate")
        loaders = datamodule.val_dataloader()
        classes = getattr(datamodule, "classes", None)
        if isinstance(loaders, Mapping):
            # Several validation loaders (a multi-task model's, one per task): the first batch of each, named.
            figures = [
                figure
                for name, loader in loaders.items()
                for figure in attention_figures(module, (name, next(iter(loader))), int(cfg.num_samples), classes)
            ]
        else:
            figures = attention_figures(module, next(iter(loaders)), int(cfg.num_samples), classes)
    return save_figures(figures, cfg.out_dir)


@hydra.main(version_base="1.3", config_path="pkg://mmattn.configs", config_name="viz")
@one_line_errors
def _main(cfg: DictConfig) -> None:
    """Hydra entry point; see configs/viz.yaml for the options."""
    visualize(cfg)


def main() -> None:
    """Console script `mmattn-viz` (also `python -m mmattn.viz`)."""
    run_cli(_main)


if __name__ == "__main__":
    main()
