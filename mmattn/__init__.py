"""mmattn: a multi-modal Transformer framework on PyTorch Lightning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"
# The inference recipes of `mmattn.inference`, model first: `mmattn.classify(model, files)`.
_RECIPES = ("classify", "translate", "transcribe", "generate", "embed", "retrieve")
__all__ = ["__version__", "load", *_RECIPES]


def load(source: str | Path, *, trust: tuple[str, ...] | list[str] = (), device: str = "cpu") -> Any:
    """The trained module in a checkpoint file, a folder from `save_pretrained` or a Hub repo id, in eval mode.

    It carries what inference needs (its tokenizer, class names, data config): pass it to `mmattn.classify` and the
    other recipes of `mmattn.inference`. See `mmattn.checkpoint.load` for the rules (and `trust`).
    """
    from mmattn.checkpoint import load as load_any

    return load_any(source, trust=tuple(trust), device=device)


def __getattr__(name: str) -> Any:
    """The recipes on first use: they import torch and Lightning, which `import mmattn` (and every CLI) should not."""
    if name in _RECIPES:
        from mmattn import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'mmattn' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names with the recipes, which are not imported yet."""
    return sorted({*globals(), *_RECIPES})
