"""FSDP from config: the Transformer layer classes as the wrap policy, sharded checkpoints written atomically."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.strategies import FSDPStrategy as _LightningFSDPStrategy
from torch import nn
from typing_extensions import override

from mmattn.lit.checkpoint_io import _remove, partial_path, replace_dir

# The blocks every mmattn model is built from: one FSDP unit per layer shards parameters, gradients and optimizer
# state layer by layer, and activation checkpointing (if asked) recomputes one layer at a time.
DEFAULT_LAYER_CLASSES = ("mmattn.nn.EncoderLayer", "mmattn.nn.DecoderLayer")


def resolve_layer_classes(names: Sequence[str | type]) -> set[type[nn.Module]]:
    """Import dotted class names (or take classes) and check that each is an `nn.Module` subclass.

    Raises:
        ValueError: A name does not import or is not a module class.
    """
    classes = set()
    for name in names:
        try:
            if isinstance(name, str):
                module, _, attr = name.rpartition(".")
                cls = getattr(importlib.import_module(module), attr)
            else:
                cls = name
        except (ImportError, AttributeError, ValueError) as error:
            raise ValueError(
                f"FSDP layer class {name!r} does not import ({error}); give a dotted class path"
            ) from error
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ValueError(f"FSDP layer class {name!r} is not a torch.nn.Module subclass")
        classes.add(cls)
    if not classes:
        raise ValueError("FSDP needs at least one layer class to wrap, e.g. mmattn.nn.EncoderLayer")
    return classes


class FSDPStrategy(_LightningFSDPStrategy):
    """Lightning's `FSDPStrategy` configured by class names, with sharded checkpoints replaced atomically.

    Each instance of `layer_classes` becomes one FSDP unit (`auto_wrap_policy`), and with
    `activation_checkpointing=True` also one activation-checkpointing unit. A sharded checkpoint (a folder of
    shards plus `meta.pt`) is written into `.<name>.partial/` first and swapped with the old one only when every
    rank has finished, so a crash mid-save keeps the previous checkpoint whole. Full checkpoints go through the
    trainer's CheckpointIO (atomic with `AtomicCheckpointIO`).

    Args:
        layer_classes: Dotted names of the module classes to wrap.
        activation_checkpointing: Recompute each wrapped layer's activations in the backward pass.
        **kwargs: Everything else `lightning.pytorch.strategies.FSDPStrategy` takes (`sharding_strategy`,
            `state_dict_type`, `cpu_offload`, `process_group_backend`, ...).
    """

    def __init__(
        self,
        layer_classes: Sequence[str | type] = DEFAULT_LAYER_CLASSES,
        activation_checkpointing: bool = False,
        **kwargs: Any,
    ) -> None:
        classes = resolve_layer_classes(layer_classes)
        kwargs.setdefault("auto_wrap_policy", classes)
        if activation_checkpointing:
            kwargs.setdefault("activation_checkpointing_policy", classes)
        super().__init__(**kwargs)
        self.wrapped_layer_classes = classes

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: _PATH, storage_options: Any | None = None) -> None:
        if self._state_dict_type != "sharded":
            return super().save_checkpoint(checkpoint, filepath, storage_options)
        final = Path(self.broadcast(filepath))
        partial = partial_path(final)
        if self.global_rank == 0:
            _remove(partial)
        self.barrier("mmattn_fsdp_save_start")
        super().save_checkpoint(checkpoint, partial, storage_options)
        self.barrier("mmattn_fsdp_save_written")
        if self.global_rank == 0:
            replace_dir(partial, final)
        self.barrier("mmattn_fsdp_save_done")
