"""Starting from pretrained weights whose shapes may not all fit: load what fits, resample what can be, report the rest.

A pretrained state dict meets a model built for other data: another number of classes (a new head), another image
size or clip length (another position grid). `load_pretrained` loads every tensor whose name and shape match, lets
modules that know how to adapt a tensor of another shape do so on load (the learned 2-D position tables resample
bicubically), leaves the rest of the model as initialised, and reports all of it (`LoadReport`), never silently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

__all__ = ["LoadReport", "architecture_config", "load_pretrained", "record_init_config"]

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What `load_pretrained` did with each tensor name."""

    source: str
    loaded: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)
    skipped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One paragraph: counts, then the names that did not load as they were."""
        lines = [
            f"weights from {self.source}: {len(self.loaded)} tensors loaded, {len(self.resampled)} resampled, "
            f"{len(self.skipped)} skipped (shape), {len(self.new)} newly initialised, {len(self.unused)} unused"
        ]
        lines += [f"  resampled {name}" for name in self.resampled]
        lines += [f"  skipped {name}: pretrained {list(a)} vs model {list(b)}" for name, a, b in self.skipped]
        lines += [f"  new {name}" for name in self.new]
        lines += [f"  unused {name}" for name in self.unused]
        return "\n".join(lines)


def _adapts_on_load(model: nn.Module, name: str) -> bool:
    """Whether the module owning parameter `name` loads tensors of another shape itself (e.g. position tables)."""
    owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    return type(owner)._load_from_state_dict is not nn.Module._load_from_state_dict


def load_pretrained(model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str) -> LoadReport:
    """Load the tensors of `state_dict` that fit `model` (see the module docstring); log and return the report.

    Args:
        model: The model, built for the target data (its own initialisation stays where nothing loads).
        state_dict: Pretrained tensors, already in the model's naming (an importer's `checkpoint_filter_fn` output).
        source: What the weights are, for the report (a timm name, a Hub id, a path).

    Returns:
        The report; its `summary()` is logged at INFO (WARNING when tensors were skipped or left new).
    """
    own = model.state_dict()
    report = LoadReport(source)
    fitting = {}
    for name, tensor in state_dict.items():
        if name not in own:
            report.unused.append(name)
        elif own[name].shape == tensor.shape:
            fitting[name] = tensor
            report.loaded.append(name)
        elif _adapts_on_load(model, name):
            fitting[name] = tensor
            report.resampled.append(name)
        else:
            report.skipped.append((name, tuple(tensor.shape), tuple(own[name].shape)))
    for name in report.resampled:
        # Loaded one by one: a tensor its module cannot adapt (a table of an unknown grid) is skipped, not fatal.
        try:
            model.load_state_dict({name: fitting[name]}, strict=False)
        except (ValueError, RuntimeError):
            report.skipped.append((name, tuple(fitting.pop(name).shape), tuple(own[name].shape)))
    report.resampled = [name for name in report.resampled if name in fitting]
    report.new = [name for name in own if name not in fitting]
    model.load_state_dict({k: v for k, v in fitting.items() if k not in report.resampled}, strict=False)
    level = logging.WARNING if report.skipped or report.new else logging.INFO
    log.log(level, report.summary())
    return report


def record_init_config(model: nn.Module, target: str, **kwargs: Any) -> nn.Module:
    """Attach the plain config that rebuilds `model`'s architecture (`model.init_config`); returns `model`.

    A model built from pretrained weights by a factory (a download, a local file) records the architecture it has,
    so that a run stores it and rebuilding from a checkpoint builds that class without fetching the weights again.
    """
    model.init_config = {"_target_": target, **kwargs}
    return model


def architecture_config(model: nn.Module, config: Any) -> Any:
    """`config` (the plain config `model` was built from) with every part built from pretrained weights replaced by
    the architecture it recorded (`init_config`), at any depth: a fusion member or a tower as well as the whole net.

    Parts are matched by name: a config key to the attribute (or `ModuleDict` entry) of the same name.
    """
    recorded = getattr(model, "init_config", None)
    if recorded is not None:
        return recorded
    if not isinstance(config, Mapping):
        return config
    out = dict(config)
    for key, value in config.items():
        child = model[key] if isinstance(model, nn.ModuleDict) and key in model else getattr(model, str(key), None)
        if isinstance(value, Mapping) and isinstance(child, nn.Module):
            out[key] = architecture_config(child, value)
    return out
