"""Attention pictures of trained models, as PNG files: rollout and class-token attention of classifiers, and the
decoder's cross-attention of sequence-to-sequence models. Inputs are drawn by their modality's renderer (the modality
contract, `mmattn.modality`); nothing here knows what an input is.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mmattn.modality import TokenLayout, require_renderer
from mmattn.models import EncoderClassifier, FusionEncoder
from mmattn.nn import capture_attention
from mmattn.viz.rollout import attention_rollout

__all__ = [
    "alignment",
    "seq2seq_figures",
    "alignment_figure",
    "alignment_heads_figure",
    "attention_figures",
    "classifier_figures",
    "classifier_maps",
    "fusion_figures",
    "fusion_maps",
    "net_figures",
    "save_figures",
]


@torch.no_grad()
def classifier_maps(net: nn.Module, x: Any) -> dict[str, Any]:
    """Where an `EncoderClassifier` (ViT, AST, any modality's classifier) looks for inputs `x`.

    Returns `rollout` [B, N] (the class token's row of the attention rollout over the input tokens; without a class
    token the mean row), `last` [B, H, N] (the last layer's attention of that query to the input tokens, per head)
    and `layout`, the `TokenLayout` of those N tokens for this input (what the modality's renderer draws them by).

    Raises:
        ValueError: The net is not an `EncoderClassifier`.
    """
    if not isinstance(net, EncoderClassifier):
        raise ValueError(f"{type(net).__name__} is not an EncoderClassifier, whose class-token attention this draws")
    net.eval()
    with capture_attention(net.encoder) as maps:
        tokens, _, embedded = net.encode(x)
    layers = [calls[0] for calls in maps.values()]
    p = net.num_prefix_tokens
    rolled = attention_rollout(layers)  # [B, P + N, P + N]
    row = rolled[:, 0] if p else rolled.mean(dim=1)
    last = layers[-1][:, :, 0] if p else layers[-1].mean(dim=2)  # [B, H, P + N]
    return {"rollout": row[:, p:], "last": last[:, :, p:], "layout": embedded.layout}


@torch.no_grad()
def alignment(net: nn.Module, src: object, tgt_in: Tensor, *, per_head: bool = False) -> Tensor:
    """Cross-attention of an `EncoderDecoder`'s last decoder layer while it reads `tgt_in` (teacher forcing):
    [B, T, S] target steps x source positions (encoder tokens), averaged over heads, or [B, H, T, S] per head."""
    names = [n for n in _attention_names(net) if n.startswith("decoder.") and n.endswith("cross_attn")]
    if not names:
        raise ValueError(f"{type(net).__name__} has no decoder cross-attention (EncoderDecoder)")
    with capture_attention(net, layers=[names[-1]]) as maps:
        net.eval()(src, tgt_in)
    weights = maps[names[-1]][0]
    return weights if per_head else weights.mean(dim=1)


def _attention_names(net: nn.Module) -> list[str]:
    from mmattn.nn import attention_layers

    return list(attention_layers(net))


def classifier_figures(
    net: EncoderClassifier,
    inputs: Any,
    num_samples: int,
    *,
    titles: Sequence[str] | None = None,
    tokenizer: Any = None,
) -> list:
    """For the first `num_samples` inputs of a batch, figures `attention_<i>` (the input, the rollout, the last
    layer's class-token attention) and `heads_<i>` (that attention per head), drawn by the input's own renderer, as
    `(name, matplotlib figure)` pairs.

    Raises:
        ValueError: The net's input embedding has no renderer.
    """
    from mmattn.viz import require_matplotlib

    plt = require_matplotlib()
    embed = net.embed
    renderer = require_renderer(embed, "mmattn-viz what=attention")
    x = embed.select(inputs, num_samples)
    maps = classifier_maps(net, x)
    layout = maps["layout"]
    figures: list = []
    for i, example in enumerate(embed.examples(x, num_samples)):
        title = titles[i] if titles else f"input {i}"
        fig, axes = plt.subplots(1, 3, figsize=(12, 4), layout="constrained")
        panels = (("input", None), ("attention rollout", maps["rollout"][i]), ("last layer", maps["last"][i].mean(0)))
        for ax, (name, heat) in zip(axes, panels):
            renderer.draw(ax, example, heat, layout, tokenizer=tokenizer)
            ax.set_title(f"{title}: {name}" if heat is None else name, fontsize=9)
        figures.append((f"attention_{i}", fig))
        heads = maps["last"][i]
        fig = _panels(
            [(f"head {h}", heads[h]) for h in range(heads.shape[0])],
            functools.partial(_draw_heat, renderer, example, layout, tokenizer),
            f"{title}: last-layer attention of the class token, per head",
        )
        figures.append((f"heads_{i}", fig))
    return figures


def net_figures(net: nn.Module, x: Any, num_samples: int, *, titles: Sequence[str] | None = None) -> list:
    """The attention pictures of a classifying net's family for the first `num_samples` inputs of a batch.

    Raises:
        ValueError: The net is no family whose attention this draws.
    """
    if isinstance(net, EncoderClassifier):
        return classifier_figures(net, x, num_samples, titles=titles)
    if isinstance(net, FusionEncoder):
        return fusion_figures(net, x, num_samples, titles=titles)
    raise ValueError(f"mmattn-viz draws the attention of EncoderClassifier nets, not of {type(net).__name__}")


@torch.no_grad()
def fusion_maps(net: FusionEncoder, inputs: Any) -> dict[str, Any]:
    """The class token's attention rollout over a `FusionEncoder`'s input tokens, split by member: `{name: (heat
    [B, N_name], layout)}` for the members in the batch, and `"share"`: {name: [B] the member's share of it}."""
    net.eval()
    with capture_attention(net.encoder) as maps:
        _, _, spans = net.encode(inputs)
    layers = [calls[0] for calls in maps.values()]
    row = attention_rollout(layers)[:, 0, 1:]  # the class token's row over the input tokens
    out: dict[str, Any] = {name: (row[:, span], layout) for name, (span, layout) in spans.items()}
    total = row.sum(dim=1).clamp_min(1e-12)
    out["share"] = {name: row[:, span].sum(dim=1) / total for name, (span, _) in spans.items()}
    return out


def fusion_figures(net: FusionEncoder, inputs: Any, num_samples: int, *, titles: Sequence[str] | None = None) -> list:
    """Per example `fusion_<i>`: each member's input drawn by its renderer under its part of the class token's
    attention rollout, and a bar of the attention each member gets (how much the prediction rests on each input).

    Raises:
        ValueError: A member's embedding has no renderer.
    """
    from mmattn.viz import require_matplotlib

    plt = require_matplotlib()
    x = net.select(inputs, num_samples)
    maps = fusion_maps(net, x)
    names = [n for n in net.names if n in x]
    renderers = {n: require_renderer(net.members[n], f"mmattn-viz (fusion member {n!r})") for n in names}
    examples = {n: net.members[n].examples(x[n], num_samples) for n in names}
    figures = []
    for i in range(len(examples[names[0]])):
        fig, axes = plt.subplots(1, len(names) + 1, figsize=(4 * (len(names) + 1), 3.6), layout="constrained")
        for ax, name in zip(axes, names):
            heat, layout = maps[name]
            renderers[name].draw(ax, examples[name][i], heat[i], layout)
            ax.set_title(name, fontsize=9)
        shares = [float(maps["share"][n][i]) for n in names]
        axes[-1].bar(names, shares, color="tab:blue")
        axes[-1].set_ylim(0, 1)
        axes[-1].set_title("share of the class token's attention", fontsize=9)
        fig.suptitle(titles[i] if titles else f"input {i}", fontsize=10)
        figures.append((f"fusion_{i}", fig))
    return figures


def _panels(items: Sequence[tuple[str, Any]], draw: Any, title: str, *, cols: int = 4):
    """One panel per `(name, value)`, `draw(ax, value)` in each, `cols` to a row, as a matplotlib figure."""
    from mmattn.viz import require_matplotlib

    plt = require_matplotlib()
    cols = max(1, min(cols, len(items)))
    rows = -(-len(items) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.7 * rows), squeeze=False, layout="constrained")
    for k in range(rows * cols):
        ax = axes[k // cols, k % cols]
        if k < len(items):
            name, value = items[k]
            draw(ax, value)
            ax.set_title(name, fontsize=9)
        else:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return fig


def alignment_figure(
    matrix: Tensor, src_tokens: Sequence[str], tgt_tokens: Sequence[str], *, src_label: str = "source"
):
    """One cross-attention matrix [T, S] with target tokens down and source tokens across, as a matplotlib figure."""
    from mmattn.viz import require_matplotlib

    plt = require_matplotlib()
    t, s = matrix.shape
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * s + 2), max(3, 0.35 * t + 1.5)), layout="constrained")
    shown = ax.imshow(matrix.cpu().float().numpy(), cmap="Greys", vmin=0, aspect="auto")
    fig.colorbar(shown, ax=ax, shrink=0.8)
    ax.set_xticks(range(s), list(src_tokens)[:s], rotation=90, fontsize=7)
    ax.set_yticks(range(t), list(tgt_tokens)[:t], fontsize=7)
    ax.set_xlabel(src_label)
    ax.set_ylabel("target (decoder input)")
    return fig


def _head_grid(heads: Tensor, title: str, *, cmap: str, origin: str = "upper", vmin: float | None = None):
    """One panel per head of maps [H, a, b], four to a row, as a matplotlib figure."""
    from mmattn.viz import require_matplotlib

    plt = require_matplotlib()
    values = heads.cpu().float().numpy()
    cols = min(4, values.shape[0])
    rows = -(-values.shape[0] // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.7 * rows), squeeze=False, layout="constrained")
    for h in range(rows * cols):
        ax = axes[h // cols, h % cols]
        ax.axis("off")
        if h < values.shape[0]:
            ax.imshow(values[h], cmap=cmap, origin=origin, vmin=vmin, aspect="auto")
            ax.set_title(f"head {h}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig


def alignment_heads_figure(heads: Tensor, *, title: str = ""):
    """The cross-attention of each head [H, T, S] in a grid (target down, source across), as a matplotlib figure."""
    return _head_grid(heads, title or "cross-attention per head (target down, source across)", cmap="Greys", vmin=0)


def _token_names(tokenizer: object, side: str, ids: list[int]) -> list[str]:
    """Token strings of ids through the HF tokenizer behind ours (`src`/`tgt`, or `tokenizer`); ids where none."""
    hf = getattr(tokenizer, side, None) or getattr(tokenizer, "tokenizer", None)
    if not callable(getattr(hf, "id_to_token", None)):
        return [str(i) for i in ids]
    return [hf.id_to_token(i) or str(i) for i in ids]


def seq2seq_figures(net: nn.Module, src: Any, tgt: Tensor, num_samples: int, tokenizer: Any) -> list:
    """For the first `num_samples` pairs, the last decoder layer's cross-attention while it reads the target: the
    alignment (`alignment_<i>`: target tokens down, source tokens across; `alignment_heads_<i>` per head) and, for a
    source of another modality, each target token's attention drawn over the input by its renderer (`words_<i>`).

    `tgt` holds the target ids (EOS-terminated, padded); `tokenizer` names the tokens (pad_id, bos_id, and the HF
    tokenizers behind it).
    """
    k = num_samples
    source = getattr(net, "source", None)
    src = src[:k] if source is None else source.select(src, k)
    tgt = tgt[:k]
    tgt_in = torch.cat([torch.full_like(tgt[:, :1], tokenizer.bos_id), tgt[:, :-1]], dim=1)
    heads = alignment(net, src, tgt_in, per_head=True)
    weights = heads.mean(dim=1)
    renderer = None if source is None else source.renderer()
    if renderer is not None:
        with torch.no_grad():
            layout = source(src).layout
        examples = source.examples(src, k)
    figures = []
    for i in range(tgt.shape[0]):
        t = int((tgt[i] != tokenizer.pad_id).sum())  # decoder inputs up to the one that produced EOS
        tgt_names = _token_names(tokenizer, "tgt", tgt_in[i, :t].tolist())
        if source is None:
            s = int((src[i] != tokenizer.pad_id).sum())
            src_names, label = _token_names(tokenizer, "src", src[i, :s].tolist()), "source tokens"
        else:
            s = int((weights[i].sum(0) > 0).sum())  # encoder positions that are not padding
            src_names, label = [str(j) for j in range(s)], f"source ({source.modality} tokens)"
        fig = alignment_figure(weights[i, :t, :s], src_names, tgt_names, src_label=label)
        figures.append((f"alignment_{i}", fig))
        figures.append((f"alignment_heads_{i}", alignment_heads_figure(heads[i, :, :t, :s])))
        if renderer is not None:
            shown = layout if not layout.is_sequence else TokenLayout.sequence(s)
            cut = shown.num_tokens
            # What the decoder attended to when it predicted each target token (the next word after its input).
            words = _token_names(tokenizer, "tgt", tgt[i, :t].tolist())
            items = [(f"-> {w}", weights[i, j, :cut]) for j, w in enumerate(words)]
            draw = functools.partial(_draw_heat, renderer, examples[i], shown, tokenizer)
            figures.append((f"words_{i}", _panels(items, draw, "cross-attention for each predicted token")))
    return figures


def _draw_heat(renderer: Any, example: Any, layout: TokenLayout, tokenizer: Any, ax: Any, heat: Tensor) -> None:
    renderer.draw(ax, example, heat, layout, tokenizer=tokenizer)


def attention_figures(
    module: nn.Module,
    batch: object,
    num_samples: int,
    classes: Sequence[str] | None = None,
    *,
    titles: Sequence[str] | None = None,
) -> list:
    """The attention figures of a module for the first `num_samples` examples of a batch of its own data (the
    module knows its batches and its family: `module.attention_figures`); `titles` replace the class names of the
    labels (e.g. file names). Returns `(name, figure)` pairs.

    Raises:
        ValueError: The module draws no attention pictures.
    """
    draw = getattr(module, "attention_figures", None)
    if not callable(draw):
        raise ValueError(f"{type(module).__name__} draws no attention pictures")
    return draw(batch, num_samples, classes=classes, titles=titles)


def save_figures(figures: list, out_dir: str | Path, *, dpi: int = 110) -> list[Path]:
    """Write `(name, figure)` pairs as `<out_dir>/<name>.png`, close the figures, return the paths."""
    from mmattn.viz import require_matplotlib

    plt = require_matplotlib()
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures:
        path = out / f"{name}.png"
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        paths.append(path)
    return paths
