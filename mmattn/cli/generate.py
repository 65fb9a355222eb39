"""`mmattn-generate ckpt_path=... prompt="..."`: print samples of a language-model checkpoint from mmattn-train."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

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
    from hydra.utils import get_class, instantiate

    from mmattn.cli.eval import load_run_config
    from mmattn.cli.utils import resolve_ckpt_path

    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, trainer=None)
    stored = load_run_config(ckpt_path)
    module_cls = get_class(stored["module"]["_target_"])
    if not callable(getattr(module_cls, "generate", None)) or not hasattr(module_cls, "sampling_keys"):
        raise ValueError(
            f"{ckpt_path} holds a {module_cls.__name__}, which does not sample text; use a language-model run "
            "(e.g. experiment=lm_demo)"
        )
    module = module_cls.load_from_checkpoint(
        ckpt_path, map_location=cfg.device, weights_only=True, net=instantiate(stored["model"])
    )
    overrides = {key: cfg.get(key) for key in SAMPLING_OVERRIDES if cfg.get(key) is not None}
    samples = module.to(cfg.device).generate(
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
def _main(cfg: DictConfig) -> None:
    """Hydra entry point; see configs/generate.yaml for the options."""
    generate(cfg)


def main() -> None:
    """Console script `mmattn-generate` (also `python -m mmattn.generate`)."""
    _main()


if __name__ == "__main__":
    main()
