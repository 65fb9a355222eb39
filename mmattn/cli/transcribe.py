"""`mmattn-transcribe ckpt_path=... FILE...`: decode files into text (speech recognition, image captioning) with a
checkpoint from mmattn-train."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mmattn.cli.errors import one_line_errors, run_cli

DECODING_OVERRIDES = ("method", "beam_size", "length_penalty", "max_len_a", "max_len_b")
# Hydra's own flags that take the next argument as their value (it is not a file to transcribe).
_HYDRA_VALUE_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}
_POSITIONAL: list[str] = []


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split command-line arguments into Hydra's (overrides and flags) and the positional file names."""
    hydra_args, files = [], []
    take_value = False
    for arg in argv:
        if take_value or arg.startswith("-") or "=" in arg:
            hydra_args.append(arg)
            take_value = arg in _HYDRA_VALUE_FLAGS
        else:
            files.append(arg)
    return hydra_args, files


def transcribe(cfg: DictConfig, files: list[str] | None = None) -> list[str]:
    """Load the checkpoint's model, module and tokenizer, decode every file, write one line per file.

    Args:
        cfg: The composed `transcribe` config (ckpt_path, files, decoding overrides, batch_size, device).
        files: Files named on the command line, after those of `cfg.files`.

    Returns:
        The transcripts, in file order.

    Raises:
        ValueError: No file given, or the checkpoint's model does not read files.
        FileNotFoundError: A file does not exist (checked before anything is decoded).
    """
    from mmattn import inference
    from mmattn.cli.eval import load_checkpoint_module
    from mmattn.lit import Seq2SeqModule

    paths = [str(Path(p).expanduser()) for p in [*(cfg.files or []), *(files or [])]]
    if not paths:
        raise ValueError("no file to transcribe: mmattn-transcribe ckpt_path=<ckpt> FILE... (or files=[a.wav,b.flac])")
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"file {missing[0]} does not exist ({len(missing)} of {len(paths)} missing)")
    module, _ = load_checkpoint_module(
        cfg, (Seq2SeqModule,), "; mmattn-transcribe needs a run whose model reads files into text"
    )
    for key in DECODING_OVERRIDES:
        if cfg.get(key) is not None:
            module.decoding[key] = cfg[key]
    out = inference.transcribe(module.to(cfg.device), paths, batch_size=int(cfg.batch_size))
    lines = [f"{p}\t{text}" if cfg.with_paths else text for p, text in zip(paths, out)]
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()
    return out


@hydra.main(version_base="1.3", config_path="pkg://mmattn.configs", config_name="transcribe")
@one_line_errors
def _main(cfg: DictConfig) -> None:
    """Hydra entry point; see configs/transcribe.yaml for the options."""
    transcribe(cfg, _POSITIONAL)


def main() -> None:
    """Console script `mmattn-transcribe` (also `python -m mmattn.cli.transcribe`)."""
    hydra_args, files = split_argv(sys.argv[1:])
    _POSITIONAL[:] = files
    sys.argv = [sys.argv[0], *hydra_args]
    run_cli(_main)


if __name__ == "__main__":
    main()
