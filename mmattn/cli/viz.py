"""`mmattn-viz what=...`: pictures (PNG) of what attention models compute; see configs/viz.yaml."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

WHAT = ("positions",)
log = logging.getLogger(__name__)


def visualize(cfg: DictConfig) -> list[Path]:
    """Write the pictures `cfg.what` asks for into `cfg.out_dir`; print and return their paths.

    Raises:
        ValueError: An unknown `what`.
        ImportError: matplotlib is missing (the message names the extra).
    """
    if cfg.what not in WHAT:
        raise ValueError(f"unknown what={cfg.what!r}; choose one of {list(WHAT)}")
    from mmattn.viz.positions import learned_tables, write_position_pictures

    learned = None
    if cfg.ckpt_path is not None:
        from mmattn.cli.eval import load_module

        learned = learned_tables(load_module(cfg.ckpt_path, "cpu").net)
        if not learned:
            log.warning(f"{cfg.ckpt_path} has no learned position table; drawing the fixed encodings only")
    paths = write_position_pictures(
        cfg.out_dir,
        num_positions=int(cfg.num_positions),
        dim=int(cfg.dim),
        num_heads=int(cfg.num_heads),
        learned=learned,
    )
    sys.stdout.write("".join(f"{p}\n" for p in paths))
    return paths


@hydra.main(version_base="1.3", config_path="pkg://mmattn.configs", config_name="viz")
def _main(cfg: DictConfig) -> None:
    """Hydra entry point; see configs/viz.yaml for the options."""
    visualize(cfg)


def main() -> None:
    """Console script `mmattn-viz` (also `python -m mmattn.viz`)."""
    _main()


if __name__ == "__main__":
    main()
