"""Recording attention weights during a forward pass: `capture_attention(model)` around any model built on the core.

Off by default and free when off: each `MultiHeadAttention` checks one attribute. While recording, the chosen layers
take the explicit softmax path (the one `need_weights=True` uses) and keep their weights [B, H, N, M], detached
(pictures) or, with `keep_graph=True`, in the autograd graph (losses on attention, such as guided attention).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import Tensor, nn

from .attention import MultiHeadAttention

__all__ = ["attention_layers", "capture_attention"]


def attention_layers(model: nn.Module) -> dict[str, MultiHeadAttention]:
    """Every `MultiHeadAttention` of `model` by its module name, in forward order of definition.

    Raises:
        ValueError: The model has no attention layer.
    """
    found = {name: m for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)}
    if not found:
        raise ValueError(f"{type(model).__name__} has no attention layers (no mmattn.nn.MultiHeadAttention inside)")
    return found


def _select(found: dict[str, MultiHeadAttention], layers: Sequence[int | str] | None) -> dict[str, MultiHeadAttention]:
    if layers is None:
        return found
    names = list(found)
    chosen: dict[str, MultiHeadAttention] = {}
    for key in layers:
        if isinstance(key, int):
            if not -len(names) <= key < len(names):
                listing = ", ".join(f"{i}: {n}" for i, n in enumerate(names))
                raise ValueError(f"attention layer index {key} is out of range; the valid ones are {listing}")
            matches = [names[key]]
        else:
            matches = fnmatch.filter(names, key)
            if not matches:
                raise ValueError(f"no attention layer matches {key!r}; the layers are {names}")
        chosen.update({n: found[n] for n in matches})
    return chosen


@contextmanager
def capture_attention(
    model: nn.Module, layers: Sequence[int | str] | None = None, *, to_cpu: bool = True, keep_graph: bool = False
) -> Iterator[dict[str, list[Tensor]]]:
    """Record the attention weights of `model`'s attention layers for the forward passes run inside the block.

    Yields a dict: layer name -> one weights tensor [B, H, N, M] per call of that layer (a decoder fed token by token
    records one per step). Rows sum to 1; padded keys get 0.

    Args:
        model: Any module holding `mmattn.nn.MultiHeadAttention` layers.
        layers: Which ones: indices into `attention_layers(model)` (negative from the end) or names / fnmatch
            patterns such as "encoder.layers.*.attn"; None = all.
        to_cpu: Move each recorded tensor to the CPU (keeps accelerator memory free during long captures).
        keep_graph: Keep the weights in the autograd graph (a loss on them trains the model); implies no CPU move.

    Raises:
        ValueError: No attention layer, an index out of range (the message lists the valid ones), a name that
            matches nothing, or a layer already recording.
    """
    chosen = _select(attention_layers(model), layers)
    busy = [n for n, m in chosen.items() if m.record is not None]
    if busy:
        raise ValueError(f"attention layers {busy} are already recording (nested capture_attention)")
    maps: dict[str, list[Tensor]] = {name: [] for name in chosen}
    for name, module in chosen.items():
        module.record = _Sink(maps[name], to_cpu and not keep_graph, keep_graph)
    try:
        yield maps
    finally:
        for module in chosen.values():
            module.record = None


class _Sink:
    """Where one layer appends its weights."""

    def __init__(self, out: list[Tensor], to_cpu: bool, keep_graph: bool = False) -> None:
        self.out, self.to_cpu, self.keep_graph = out, to_cpu, keep_graph

    def __call__(self, weights: Tensor) -> None:
        w = weights if self.keep_graph else weights.detach()
        self.out.append(w.cpu() if self.to_cpu else w)
