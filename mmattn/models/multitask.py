"""MultiTaskNet: one shared core (an `Encoder`) inside every task's own network (its modality adapter and head).

Each task's network is an ordinary single-task network of a family (`EncoderClassifier`/ViT/AST, `EncoderDecoder`,
...), built from its own config, so a task alone is the model its single-task run would train, and is exported as
one. The networks are built with identical encoders (the same options); this net then makes them share one instance,
the first task's, so its weights are trained by every task. A task's network must feed the core through the modality
contract (an `InputEmbedding` as its `embed` or `source`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from torch import nn

from mmattn.modality import InputEmbedding, modality_name

__all__ = ["MultiTaskNet", "input_embedding"]

# Where the families keep their input embedding: EncoderClassifier's `embed`, EncoderDecoder's `source`.
_EMBEDDING_ATTRS = ("embed", "source")


def input_embedding(net: nn.Module) -> InputEmbedding | None:
    """The modality adapter a family network feeds its encoder with (`embed` or `source`), or None."""
    for attr in _EMBEDDING_ATTRS:
        embed = getattr(net, attr, None)
        if isinstance(embed, InputEmbedding):
            return embed
    return None


def _build(entry: Any, name: str) -> nn.Module:
    """A task's network: given built, as a config with `_target_`, or as a task entry whose `model` is either."""
    if isinstance(entry, nn.Module):
        return entry
    if isinstance(entry, Mapping) and "_target_" not in entry:
        if "model" not in entry:
            raise ValueError(f"task {name!r} has no model: give tasks.{name}.model (a network config with _target_)")
        entry = entry["model"]
        if isinstance(entry, nn.Module):
            return entry
    if not isinstance(entry, Mapping) or "_target_" not in entry:
        raise ValueError(f"tasks.{name}.model must be a network config with _target_, got {type(entry).__name__}")
    from hydra.utils import instantiate

    net = instantiate(entry, _convert_="all")
    if not isinstance(net, nn.Module):
        raise ValueError(f"tasks.{name}.model built a {type(net).__name__}, not a torch network")
    return net


class MultiTaskNet(nn.Module):
    """Task name -> that task's network, all sharing one core module (`shared`, default the `encoder`).

    Args:
        tasks: Task name -> its network, its network's config, or a task entry whose `model` is one of them.
        shared: The attribute every task network holds its core under; the first task's is shared by all.

    Raises:
        ValueError: No task, a task network without the shared part or without a modality adapter, or a shared part
            built with other options than the first task's (the first differing line is named).
    """

    def __init__(self, tasks: Mapping[str, Any], *, shared: str = "encoder") -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a multi-task network needs at least one task; add entries under tasks")
        nets = {str(name): _build(entry, str(name)) for name, entry in tasks.items()}
        self.shared_name = shared
        core: nn.Module | None = None
        first = ""
        for name, net in nets.items():
            part = getattr(net, shared, None)
            if not isinstance(part, nn.Module):
                raise ValueError(
                    f"task {name!r}: its network ({type(net).__name__}) has no {shared!r} module to share; use a "
                    "family network with an encoder (EncoderClassifier, ViT, AST, EncoderDecoder)"
                )
            if input_embedding(net) is None:
                raise ValueError(
                    f"task {name!r}: its network ({type(net).__name__}) feeds its {shared} with no modality adapter "
                    "(an mmattn.modality.InputEmbedding as `embed` or `source`); e.g. give an EncoderDecoder "
                    "source=TextEmbedding for text"
                )
            if core is None:
                core, first = part, name
                continue
            difference = _first_difference(core, part)
            if difference:
                raise ValueError(
                    f"task {name!r}: its {shared} is built otherwise than task {first!r}'s ({difference}); give every "
                    f"task's network the same {shared} options (e.g. from one shared block of the config)"
                )
            setattr(net, shared, core)
        # Registered once per task network (the state dict holds it under each task, as each exported task needs).
        self.tasks = nn.ModuleDict(nets)
        self._core_task = first

    @property
    def core(self) -> nn.Module:
        """The shared module (held by every task network)."""
        return getattr(self.tasks[self._core_task], self.shared_name)

    @property
    def names(self) -> list[str]:
        """The task names, in config order."""
        return list(self.tasks.keys())

    def modality(self, name: str) -> str:
        """The modality of task `name`'s input (its adapter's `modality`)."""
        return str(input_embedding(self.tasks[name]).modality)  # type: ignore[union-attr]

    def describe(self, name: str) -> str:
        """`"<modality> (<Adapter>) -> <Network>"` of task `name`, for messages and summaries."""
        net = self.tasks[name]
        return f"{modality_name(input_embedding(net))} -> {type(net).__name__}"

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        """The parameters only task `name` uses (its adapter and head; not the shared core)."""
        shared = {id(p) for p in self.core.parameters()}
        return (p for p in self.tasks[name].parameters() if id(p) not in shared)

    def forward(self, task: str, *args: Any, **kwargs: Any) -> Any:
        """Task `task`'s network on its inputs."""
        return self.tasks[task](*args, **kwargs)

    def no_weight_decay(self) -> set[str]:
        """Every task network's no-decay names, under `tasks.<name>.`."""
        names: set[str] = set()
        for name, net in self.tasks.items():
            if callable(getattr(net, "no_weight_decay", None)):
                names |= {f"tasks.{name}.{n}" for n in net.no_weight_decay()}
        return names


def _first_difference(a: nn.Module, b: nn.Module) -> str:
    """The first line in which the two modules' structure (their repr: layers, sizes, activations, norms, dropouts)
    differs, as "`a line` vs `b line`"; "" when they are alike."""
    left, right = repr(a).splitlines(), repr(b).splitlines()
    if left == right:
        return ""
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=left, b=right, autojunk=False).get_opcodes():
        if tag != "equal":
            first = left[i1].strip() if i1 < i2 else "(nothing)"
            second = right[j1].strip() if j1 < j2 else "(nothing)"
            return f"`{first}` vs `{second}`"
    return "another structure"
