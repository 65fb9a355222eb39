"""`mmattn-generate ckpt_path=... prompt="..."`: print samples of a language-model checkpoint from mmattn-train."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from mmattn.cli.errors import one_line_errors, run_cli

SAMPLING_OVERRIDES = ("temperature", "top_k", "top_p", "max_new_tokens")


def generate(cfg: DictConfig) -> list[str]:
    """Load the checkpoint's model, module and tokenizer, sample `num_samples` texts, write them to stdout.

    Args:
        cfg: The composed `generate` config (ckpt_path, prompt, num_samples, sampling overrides, seed, device).

    Returns:
        The samples (prompt + continuation), in order.

    Raises:
        ValueError: The checkpoint does not hold a language model.
    """
    from mmattn import inference
    from mmattn.cli.eval import load_checkpoint_module
    from mmattn.lit import LanguageModelModule

    hint = "; mmattn-generate needs a language-model run (e.g. experiment=lm_demo)"
    module, _ = load_checkpoint_module(cfg, (LanguageModelModule,), hint)
    overrides = {key: cfg.get(key) for key in SAMPLING_OVERRIDES if cfg.get(key) is not None}
    samples = inference.generate(
        module.to(cfg.device),
        [str(cfg.prompt)],
        num_samples=int(cfg.num_samples),
        seed=cfg.seed,
        use_cache=bool(cfg.use_cache),
        **overrides,
    )[0]
    sys.stdout.write("".join(text + str(cfg.separator) for text in samples))
    sys.stdout.flush()
    return samples


@hydra.main(version_base="1.3", config_path="pkg://mmattn.configs", config_name="generate")
@one_line_errors
def _main(cfg: DictConfig) -> None:
    """Hydra entry point; see configs/generate.yaml for the options."""
    generate(cfg)


def main() -> None:
    """Console script `mmattn-generate` (also `python -m mmattn.cli.generate`)."""
    run_cli(_main)


if __name__ == "__main__":
    main()
