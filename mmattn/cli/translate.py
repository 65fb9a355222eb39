"""`mmattn-translate ckpt_path=...`: translate lines from stdin or a file with a checkpoint from mmattn-train."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mmattn.cli.errors import one_line_errors, run_cli

DECODING_OVERRIDES = ("beam_size", "length_penalty", "max_len_a", "max_len_b")


def translate(cfg: DictConfig) -> list[str]:
    """Load the checkpoint's model, module and tokenizer, translate the input lines, write one line each.

    Args:
        cfg: The composed `translate` config (ckpt_path, input, output, decoding overrides, batch_size, device).

    Returns:
        The translations, in input order.
    """
    from mmattn import inference
    from mmattn.cli.eval import load_checkpoint_module
    from mmattn.lit import Seq2SeqModule

    module, _ = load_checkpoint_module(cfg, (Seq2SeqModule,), "; mmattn-translate needs a translation run")
    module.require_text_source()
    for key in DECODING_OVERRIDES:
        if cfg.get(key) is not None:
            module.decoding[key] = cfg[key]
    if cfg.input is None:
        lines = sys.stdin.read().splitlines()
    else:
        path = Path(cfg.input).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"input file {path} does not exist; pass input=<file> or pipe lines to stdin")
        lines = path.read_text(encoding="utf-8").splitlines()
    out = inference.translate(module.to(cfg.device), lines, batch_size=int(cfg.batch_size))
    text = "".join(line + "\n" for line in out)
    if cfg.output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(cfg.output).expanduser().write_text(text, encoding="utf-8")
    return out


@hydra.main(version_base="1.3", config_path="pkg://mmattn.configs", config_name="translate")
@one_line_errors
def _main(cfg: DictConfig) -> None:
    """Hydra entry point; see configs/translate.yaml for the options."""
    translate(cfg)


def main() -> None:
    """Console script `mmattn-translate` (also `python -m mmattn.cli.translate`)."""
    run_cli(_main)


if __name__ == "__main__":
    main()
