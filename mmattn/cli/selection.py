"""Which metric selects checkpoints and stops early: the module says, unless the config names one it really logs.

Each mmattn LightningModule declares the validation keys it logs with their direction (`metric_modes`) and the one
it is selected by (`default_monitor`). Callback configs with `monitor: auto` take that key, `mode: auto` follows the
key; a key the module never logs stops the run here, before the first training step, instead of after a whole epoch
when Lightning's ModelCheckpoint looks for it.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["AUTO", "resolve_monitors"]

AUTO = "auto"
# Logged by every module at each training step.
_ALWAYS = {"train/loss": "min"}


def resolve_monitors(cfg: DictConfig) -> None:
    """Fill in `monitor: auto` / `mode: auto` of `cfg.callbacks` from `cfg.module`'s class, and check every monitor.

    Raises:
        ConfigError: A callback monitors a key the module never logs (the message lists those it logs), or `auto`
            is asked of a module that declares no selection metric.
    """
    from hydra.utils import get_class

    from mmattn.cli.cluster import ConfigError

    callbacks = cfg.get("callbacks") or {}
    watching = {name: node for name, node in callbacks.items() if isinstance(node, DictConfig) and "monitor" in node}
    if not watching:
        return
    module_cls = get_class(cfg.module._target_)
    options: dict[str, Any] = OmegaConf.to_container(cfg.module, resolve=True)  # type: ignore[assignment]
    if not hasattr(module_cls, "metric_modes"):
        for name, node in watching.items():
            if AUTO in (node.monitor, node.get("mode")):
                raise ConfigError(
                    f"callbacks.{name}.monitor/mode=auto needs the module to declare its metrics (metric_modes), "
                    f"which {module_cls.__name__} does not; set callbacks.{name}.monitor and mode"
                )
        return
    modes = {**_ALWAYS, **module_cls.metric_modes(options)}
    for name, node in watching.items():
        if node.monitor is None:
            continue
        if node.monitor == AUTO:
            node.monitor = module_cls.default_monitor(options)
        elif node.monitor not in modes:
            logged = ", ".join(sorted(k for k in modes if k not in _ALWAYS))
            raise ConfigError(
                f"callbacks.{name}.monitor={node.monitor} is never logged by {module_cls.__name__} with this config "
                f"(it logs {logged}); set callbacks.{name}.monitor to one of them, or to auto "
                f"({module_cls.default_monitor(options)})"
            )
        if node.get("mode") == AUTO:
            node.mode = modes[node.monitor]
