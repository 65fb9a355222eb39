"""Build objects from configs that did not come from the user's own command line: a checkpoint, a saved folder.

Hydra's `instantiate` calls whatever a `_target_` names, so a crafted checkpoint naming `builtins.open` (mode "w") or
`torch.save` would write files. Here a target is built only if it passes an allowlist, checked for the whole config
before anything is imported or called:

- its top-level package is trusted: mmattn's own, the libraries mmattn wraps (`WRAPPED`), or a package the user named
  (`trust=[pkg]`, `MMATTN_TRUST=pkg1,pkg2`, or the `trusting(...)` block); an untrusted package is not even imported,
  since importing runs its code;
- it is a class of a kind mmattn rebuilds (`KINDS`: networks and their parts, datamodules), never a function or method.

Dotted names of functions (a language model's sample check) and tokenizer classes pass only from mmattn itself or a
package the user trusts. A config written by the user (mmattn-train's own) is built with `trusting(everything=True)`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = [
    "TRUST_ENV",
    "UntrustedTargetError",
    "check_config",
    "resolve_class",
    "resolve_function",
    "safe_instantiate",
    "trusted_packages",
    "trusting",
]

FIRST_PARTY = ("mmattn",)
# Libraries mmattn wraps: their networks and datamodules may appear in a stored config.
WRAPPED = ("torch", "torchvision", "torchaudio", "timm", "lightning", "transformers")
TRUST_ENV = "MMATTN_TRUST"
# The adapters were the top-level package `tasks` before they moved into mmattn; old configs and checkpoints name it.
LEGACY_PREFIXES = {"tasks.": "mmattn.tasks."}

_extra_trust: ContextVar[tuple[str, ...]] = ContextVar("mmattn_extra_trust", default=())
_trust_everything: ContextVar[bool] = ContextVar("mmattn_trust_everything", default=False)


class UntrustedTargetError(ValueError):
    """A stored config names something mmattn will not build; raised before anything is imported or called."""


def trusted_packages(trust: Iterable[str] = (), *, wrapped: bool = True) -> tuple[str, ...]:
    """The top-level packages a stored config may build from: mmattn's, the wrapped libraries, the user's."""
    from_env = [p.strip() for p in os.environ.get(TRUST_ENV, "").split(",") if p.strip()]
    user = [str(p).split(".")[0] for p in [*_extra_trust.get(), *trust, *from_env]]
    return tuple(dict.fromkeys([*FIRST_PARTY, *(WRAPPED if wrapped else ()), *user]))


@contextmanager
def trusting(packages: Iterable[str] = (), *, everything: bool = False) -> Iterator[None]:
    """Within the block, also trust `packages` (or every package: a config the user wrote themselves)."""
    token = _extra_trust.set((*_extra_trust.get(), *packages))
    token_all = _trust_everything.set(_trust_everything.get() or everything)
    try:
        yield
    finally:
        _extra_trust.reset(token)
        _trust_everything.reset(token_all)


def canonical_target(target: str) -> str:
    """`target` with a legacy package prefix replaced by today's (`tasks.vision.ViT` -> `mmattn.tasks.vision.ViT`)."""
    for old, new in LEGACY_PREFIXES.items():
        if target.startswith(old):
            return new + target[len(old) :]
    return target


def _refuse(where: str, target: str, why: str, package: str | None = None) -> UntrustedTargetError:
    fix = (
        f"; if you trust package {package!r}, pass trust=[{package}] (or set {TRUST_ENV}={package})" if package else ""
    )
    return UntrustedTargetError(f"{where} names {target!r}, {why}: nothing was built{fix}")


def _locate_trusted(target: str, where: str, packages: Sequence[str]) -> Any:
    """Import and return what `target` names, after checking that its package is in `packages`."""
    from hydra.utils import get_object

    if not isinstance(target, str) or "." not in target.strip(".") or target.startswith(".") or ".." in target:
        raise _refuse(where, str(target), "which is not a dotted name such as package.module.Name")
    package = target.split(".")[0]
    if not _trust_everything.get() and package not in packages:
        raise _refuse(where, target, f"from package {package!r}, which is not trusted", package)
    try:
        return get_object(target)
    except Exception as e:
        raise ValueError(f"{where} names {target!r}, which cannot be imported: {e}") from None


def _kinds() -> tuple[type, ...]:
    """The classes a stored config may build: networks and their parts, and datamodules."""
    import lightning.pytorch as pl
    from torch import nn

    return (nn.Module, pl.LightningDataModule)


def resolve_class(
    target: str,
    *,
    where: str,
    trust: Iterable[str] = (),
    kinds: tuple[type, ...] | None = None,
    first_party: bool = False,
) -> type:
    """The class `target` names, if its package is trusted and it is one of `kinds` (default: `_kinds()`).

    Args:
        target: Dotted name, e.g. "mmattn.tasks.vision.ViT".
        where: The config key or file that holds it, for the message.
        trust: Packages the user trusts besides mmattn's own and the wrapped libraries.
        kinds: Allowed base classes.
        first_party: Only mmattn's own and the user's packages (not the wrapped libraries), e.g. for tokenizers.

    Raises:
        UntrustedTargetError: An untrusted package, or not a class of an allowed kind.
    """
    target = canonical_target(target)
    obj = _locate_trusted(target, where, trusted_packages(trust, wrapped=not first_party))
    allowed = kinds if kinds is not None else _kinds()
    if not isinstance(obj, type):
        raise _refuse(where, target, f"a {type(obj).__name__}, not a class; only classes are built from stored configs")
    if not issubclass(obj, allowed):
        names = " or ".join(k.__name__ for k in allowed)
        raise _refuse(where, target, f"a class that is not a {names}")
    return obj


def resolve_function(name: str, *, where: str, trust: Iterable[str] = ()) -> Any:
    """The function a dotted name names, from mmattn itself or a package the user trusts (never a wrapped library).

    Raises:
        UntrustedTargetError: Another package, or not a plain function.
    """
    import inspect

    name = canonical_target(name)
    obj = _locate_trusted(name, where, trusted_packages(trust, wrapped=False))
    if not inspect.isfunction(obj):
        raise _refuse(where, name, f"a {type(obj).__name__}, not a function")
    return obj


def _walk(node: Any, where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every mapping with a `_target_` in a plain or OmegaConf config tree, with its key path."""
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, (Mapping, DictConfig)):
        if "_target_" in node:
            yield where, node
        for key, value in node.items():
            yield from _walk(value, f"{where}.{key}")
    elif isinstance(node, (list, tuple, ListConfig)):
        for i, value in enumerate(node):
            yield from _walk(value, f"{where}[{i}]")


def check_config(config: Any, *, where: str, trust: Iterable[str] = ()) -> dict[str, type]:
    """Check every `_target_` in `config` (see the module docstring); return `{key path: class}`.

    Raises:
        UntrustedTargetError: The first target that fails, naming its key path.
    """
    trust = tuple(trust)
    return {path: resolve_class(str(node["_target_"]), where=path, trust=trust) for path, node in _walk(config, where)}


def safe_instantiate(config: Any, *, where: str, trust: Iterable[str] = (), **kwargs: Any) -> Any:
    """Hydra's `instantiate` of a stored config, after `check_config` passed for all of it (legacy names mapped).

    Raises:
        UntrustedTargetError: A target fails the check; nothing has been built then.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    check_config(config, where=where, trust=trust)
    # Resolved while still attached to its root: a data option chosen on the command line refers to ${paths.*}.
    tree = OmegaConf.create(
        OmegaConf.to_container(config, resolve=True) if OmegaConf.is_config(config) else dict(config)
    )
    for _, node in _walk(tree, where):
        node["_target_"] = canonical_target(str(node["_target_"]))
    return instantiate(tree, **kwargs)
