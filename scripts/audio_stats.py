#!/usr/bin/env python
"""Measure the feature mean/std of an audio dataset's training split, for `data.mean` / `data.std`.

Composes the same Hydra config as `mmattn-train`, so any data config and override works:

    python scripts/audio_stats.py experiment=audio_demo
    python scripts/audio_stats.py experiment=ast_speechcommands paths.data_dir=/datasets +max_clips=5000

Prints the overrides to use (`data.mean=... data.std=...`) on stdout; AST's AudioSet values are the fall-back.
Features are measured as the model sees them (centre crops, padded to data.target_length, no augmentation).
"""

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="pkg://mmattn.configs", config_name="train")
def main(cfg: DictConfig) -> None:
    """Instantiate the data config, measure its training features, print the overrides."""
    datamodule = instantiate(cfg.data)
    if not hasattr(datamodule, "feature_stats"):
        raise SystemExit(f"data {cfg.data._target_} is not an audio datamodule (it has no feature_stats())")
    datamodule.prepare_data()
    mean, std = datamodule.feature_stats(max_clips=cfg.get("max_clips"))
    print(f"data.mean={mean:.4f} data.std={std:.4f}")


if __name__ == "__main__":
    main()
