"""Pictures of a dual encoder: the similarity matrix of a few pairs, with their correct matches marked, and the
pairs' inputs drawn by their modalities' renderers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["dual_encoder_figures", "pairs_figure", "similarity_figure"]


def similarity_figure(sims: Tensor, row_match: Tensor, col_match: Tensor, *, rows: str, cols: str, title: str = ""):
    """The matrix `sims` [n, m] (cosine similarities of `rows` embeddings to `cols` embeddings) as a heat map, each
    cell whose match ids agree (a correct match) outlined, each row's most similar column dotted.

    Returns:
        A matplotlib figure.
    """
    from matplotlib.patches import Rectangle

    from mmattn.viz import require_matplotlib

    plt = require_matplotlib()
    values = sims.detach().float().cpu()
    n, m = values.shape
    side = max(3.5, 0.45 * max(n, m) + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side), layout="constrained")
    shown = ax.imshow(values.numpy(), cmap="viridis", vmin=-1, vmax=1)
    fig.colorbar(shown, ax=ax, shrink=0.8, label="cosine similarity")
    same = (row_match.cpu()[:, None] == col_match.cpu()[None, :]).tolist()
    for i in range(n):
        for j in range(m):
            if same[i][j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=2))
        ax.plot(int(values[i].argmax()), i, "o", color="red", markersize=4)
    ax.set_yticks(range(n), [f"{i} (match {int(k)})" for i, k in enumerate(row_match.tolist())], fontsize=7)
    ax.set_xticks(range(m), [f"{j} (match {int(k)})" for j, k in enumerate(col_match.tolist())], fontsize=7)
    ax.tick_params(axis="x", labelrotation=90)
    ax.set_ylabel(rows)
    ax.set_xlabel(cols)
    ax.set_title(title or f"{rows} x {cols}: white = correct match, red = most similar", fontsize=9)
    return fig


def pairs_figure(columns: Sequence[tuple[str, Any, Sequence[Any], Any]], *, tokenizer: Any = None):
    """The first examples of each tower drawn by its renderer, one row per example: `columns` holds
    `(tower name, renderer, examples, layout)` per tower that has a renderer.

    Returns:
        A matplotlib figure.
    """
    from mmattn.viz import require_matplotlib

    plt = require_matplotlib()
    rows = max(len(examples) for _, _, examples, _ in columns)
    fig, axes = plt.subplots(
        rows, len(columns), figsize=(4.5 * len(columns), 1.8 * rows), squeeze=False, layout="constrained"
    )
    for c, (name, renderer, examples, layout) in enumerate(columns):
        for r in range(rows):
            ax = axes[r, c]
            if r < len(examples):
                renderer.draw(ax, examples[r], None, layout, tokenizer=tokenizer)
                ax.set_title(f"{name} {r}", fontsize=8)
            else:
                ax.axis("off")
    return fig


@torch.no_grad()
def dual_encoder_figures(net: Any, batch: Any, match: Tensor, num_samples: int, *, tokenizer: Any = None) -> list:
    """`("similarity", figure)` of the first `num_samples` pairs of a batch of a `DualEncoder` (a mapping with each
    tower's input), and `("pairs", figure)` of those inputs when a tower's modality has a renderer."""
    first, second = net.names
    inputs, embeddings = {}, {}
    for name in net.names:
        embedding = net.embedding(name)
        inputs[name] = embedding.select(batch[name], num_samples)
        embeddings[name] = net.encode(name, inputs[name])
    match = match[:num_samples]
    sims = embeddings[first] @ embeddings[second].T
    figures = [("similarity", similarity_figure(sims, match, match, rows=first, cols=second))]
    columns = []
    for name, x in inputs.items():
        embedding = net.embedding(name)
        renderer = embedding.renderer()
        if renderer is not None:
            columns.append((name, renderer, embedding.examples(x, num_samples), embedding.embed(x).layout))
    if columns:
        figures.append(("pairs", pairs_figure(columns, tokenizer=tokenizer)))
    return figures
