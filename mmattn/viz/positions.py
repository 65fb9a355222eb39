"""Pictures of position encodings and of the softmax scale: what each encoding tells attention about position.

The numbers come from the core's own modules (`sinusoidal_table`, `RotaryEmbedding`, `ALiBi`, a model's learned
table), so the pictures show what the models compute, not a re-derivation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from mmattn.nn import ALiBi, LearnedPositionalEmbedding, LearnedPositionalEmbedding2D, RotaryEmbedding, sinusoidal_table

__all__ = [
    "alibi_biases",
    "learned_similarity",
    "rotary_similarity",
    "sinusoidal_similarity",
    "softmax_saturation",
    "write_position_pictures",
]


def sinusoidal_similarity(num_positions: int, dim: int) -> Tensor:
    """Dot products PE[p] . PE[r] of the sinusoidal table [P, P]: a function of p - r alone."""
    pe = sinusoidal_table(num_positions, dim).double()
    return (pe @ pe.T).float()


def rotary_similarity(num_positions: int, head_dim: int) -> Tensor:
    """Score q_p . k_r [P, P] of one query/key vector (all ones) rotated to positions p and r by `RotaryEmbedding`."""
    rope = RotaryEmbedding(head_dim, max_len=num_positions)
    u = torch.ones(1, 1, num_positions, head_dim) / math.sqrt(head_dim)
    rotated = rope.rotate(u)[0, 0]  # [P, d]
    return rotated @ rotated.T


def learned_similarity(table: Tensor) -> Tensor:
    """Cosine similarity [P, P] of the rows of a learned position table [P, D]."""
    t = torch.nn.functional.normalize(table.detach().float(), dim=-1)
    return t @ t.T


def alibi_biases(num_heads: int, num_positions: int) -> Tensor:
    """ALiBi's score bias [H, P, P] per head, -m_h |i - j|."""
    return ALiBi(num_heads)(num_positions, num_positions).reshape(num_heads, num_positions, num_positions)


def softmax_saturation(
    dims: Sequence[int] = (4, 16, 64, 256, 1024), *, num_keys: int = 64, trials: int = 256, seed: int = 0
) -> dict[str, list[float]]:
    """Mean largest softmax weight of random queries against `num_keys` random keys (unit-variance entries), per d_k,
    with and without the 1/sqrt(d_k) scale: unscaled scores grow like sqrt(d_k) and the softmax turns one-hot."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, list[float]] = {"scaled": [], "unscaled": []}
    for d in dims:
        q = torch.randn(trials, 1, d, generator=g, dtype=torch.float64)
        k = torch.randn(trials, num_keys, d, generator=g, dtype=torch.float64)
        scores = (q @ k.transpose(1, 2))[:, 0]
        out["unscaled"].append(float(scores.softmax(-1).amax(-1).mean()))
        out["scaled"].append(float((scores / math.sqrt(d)).softmax(-1).amax(-1).mean()))
    return out


def learned_tables(model: nn.Module) -> dict[str, Tensor]:
    """A model's learned position tables by module name: [P, D] for sequences, [h*w, D] (prefix tokens dropped) for
    grids, with the grid shape kept in the name ("<name> (h x w)")."""
    tables: dict[str, Tensor] = {}
    for name, m in model.named_modules():
        if isinstance(m, LearnedPositionalEmbedding):
            tables[name] = m.weight.detach()
        elif isinstance(m, LearnedPositionalEmbedding2D):
            h, w = m.grid_size
            tables[f"{name} ({h} x {w})"] = m.weight.detach()[0, m.num_prefix_tokens :]
    return tables


def _heatmap(ax, data: Tensor, title: str, *, cmap: str = "RdBu_r", symmetric: bool = True) -> None:
    values = data.detach().float().cpu().numpy()
    limit = float(abs(values).max()) or 1.0
    shown = ax.imshow(values, cmap=cmap, vmin=-limit if symmetric else None, vmax=limit if symmetric else None)
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(shown, ax=ax, shrink=0.8)


def write_position_pictures(
    out_dir: str | Path,
    *,
    num_positions: int = 128,
    dim: int = 128,
    num_heads: int = 8,
    learned: dict[str, Tensor] | None = None,
    dpi: int = 110,
) -> list[Path]:
    """Write the position-encoding and softmax pictures as PNG files into `out_dir`; return their paths.

    Args:
        out_dir: Folder for the files (created).
        num_positions: Positions shown.
        dim: Model width of the sinusoidal table, and head width of the rotary picture.
        num_heads: Heads of the ALiBi picture.
        learned: Learned tables by name (see `learned_tables`), drawn beside the fixed encodings.
        dpi: Resolution.
    """
    from mmattn.viz import require_matplotlib

    plt = require_matplotlib()
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig, name: str) -> None:
        path = out / name
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    _heatmap(ax, sinusoidal_table(num_positions, dim), f"sinusoidal table PE[p, i], D={dim}: sin on even i, cos on odd")
    ax.set_xlabel("channel i")
    ax.set_ylabel("position p")
    save(fig, "positions_sinusoidal_table.png")

    panels = [
        ("sinusoidal PE[p] . PE[r]", sinusoidal_similarity(num_positions, dim)),
        (f"rotary q_p . k_r (head dim {dim})", rotary_similarity(num_positions, dim)),
    ]
    for name, table in (learned or {}).items():
        panels.append((f"learned {name}: cosine", learned_similarity(table)))
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 7.5), layout="constrained", squeeze=False)
    middle = num_positions // 2
    for col, (title, sim) in enumerate(panels):
        _heatmap(axes[0, col], sim, title)
        axes[0, col].set_xlabel("position r")
        axes[0, col].set_ylabel("position p")
        row = min(middle, sim.shape[0] - 1)
        axes[1, col].plot(sim[row].cpu().numpy())
        axes[1, col].axvline(row, color="grey", lw=0.8, ls="--")
        axes[1, col].set_title(f"row p = {row}", fontsize=9)
        axes[1, col].set_xlabel("position r")
    save(fig, "positions_similarity.png")

    biases = alibi_biases(num_heads, min(num_positions, 64))
    cols = min(4, num_heads)
    rows = math.ceil(num_heads / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3 * rows), layout="constrained", squeeze=False)
    for h in range(rows * cols):
        ax = axes[h // cols, h % cols]
        if h >= num_heads:
            ax.axis("off")
            continue
        _heatmap(
            ax,
            biases[h],
            f"ALiBi head {h}: m = {float(ALiBi(num_heads).slopes[h]):.4g}",
            cmap="viridis",
            symmetric=False,
        )
    save(fig, "positions_alibi.png")

    dims = (4, 16, 64, 256, 1024)
    sat = softmax_saturation(dims)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.plot(dims, sat["unscaled"], "o-", label="softmax(q . k)")
    ax.plot(dims, sat["scaled"], "o-", label="softmax(q . k / sqrt(d_k))")
    ax.axhline(1 / 64, color="grey", lw=0.8, ls="--", label="uniform over 64 keys")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("d_k")
    ax.set_ylabel("mean largest attention weight")
    ax.set_title("Without the scale the softmax saturates as d_k grows", fontsize=10)
    ax.legend(fontsize=8)
    save(fig, "softmax_saturation.png")
    return written
