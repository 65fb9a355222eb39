"""`mmattn-export ckpt_path=... format=onnx|torch_export out=DIR`: export a trained model, checked against PyTorch;
`task=<name> format=ckpt out=FILE` writes one task of a multi-task model as a single-task checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from mmattn.cli.errors import one_line_errors, run_cli


def export(cfg: DictConfig) -> dict[str, Any]:
    """Load `cfg.ckpt_path`, export its parts into `cfg.out` (see `mmattn.export`), print each part and its check;
    with `task` (a multi-task model) that task alone, as parts or (`format=ckpt`) as a single-task checkpoint.

    Returns:
        What `export.json` holds.

    Raises:
        ExportError: An unknown format, a part that cannot be exported (named), or a check above `cfg.atol`.
        ImportError: format=onnx without the onnx packages (the message names the extra).
    """
    from hydra.utils import to_absolute_path

    from mmattn.cli.eval import load_checkpoint_module
    from mmattn.export import export_module

    if cfg.format == "onnx":
        try:
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as e:
            raise ImportError(f"format=onnx needs {e.name}: pip install 'mmattn[export]'") from None
    module, ckpt_path = load_checkpoint_module(cfg)
    out = Path(to_absolute_path(str(cfg.out)))
    if cfg.get("task") is not None:
        from mmattn.cli.eval import one_task

        if cfg.format == "ckpt":
            one_task(module, str(cfg.task), ckpt_path, check_only=True)
            path = module.save_task(str(cfg.task), out)
            sys.stdout.write(f"{path}\n")
            return {"task": str(cfg.task), "checkpoint": str(path)}
        module = one_task(module, str(cfg.task), ckpt_path)
    elif cfg.format == "ckpt":
        raise ValueError("format=ckpt writes one task of a multi-task model as a checkpoint: give task=<name>")
    record = export_module(module, out, cfg.format, check=bool(cfg.check), atol=float(cfg.atol))
    for entry in record["parts"].values():
        checked = f" (largest |difference| from PyTorch {entry['max_abs_diff']:.1e})" if "max_abs_diff" in entry else ""
        sys.stdout.write(f"{out / entry['file']}{checked}\n")
    return record


@hydra.main(version_base="1.3", config_path="pkg://mmattn.configs", config_name="export")
@one_line_errors
def _main(cfg: DictConfig) -> None:
    """Hydra entry point; see configs/export.yaml for the options."""
    export(cfg)


def main() -> None:
    """Console script `mmattn-export` (also `python -m mmattn.cli.export`)."""
    run_cli(_main)


if __name__ == "__main__":
    main()
