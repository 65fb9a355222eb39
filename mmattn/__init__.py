"""mmattn: a multi-modal Transformer framework on PyTorch Lightning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load"]


def load(source: str | Path, *, trust: tuple[str, ...] | list[str] = (), device: str = "cpu") -> Any:
    """The trained module in a checkpoint file, a folder from `save_pretrained` or a Hub repo id, in eval mode.

    It carries what inference needs (its tokenizer, class names, data config): `classify`, `translate`,
    `transcribe` or `generate`, by family. See `mmattn.checkpoint.load` for the rules (and `trust`).
    """
    from mmattn.checkpoint import load as load_any

    return load_any(source, trust=tuple(trust), device=device)
