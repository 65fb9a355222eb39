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

from mmattn.nn import (
    ALiBi,
    LearnedPositionalEmbedding,
    LearnedPositionalEmbedding2D,
    RandomPositions,
    RotaryEmbedding,
    RotaryEmbedding2D,
    T5RelativeBias,
    relative_position_bucket,
    sinusoidal_table,
)

__all__ = [
    "alibi_biases",
    "relative_modules",
    "rotary2d_scores",
    "t5_bias_by_offset",
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


def t5_bias_by_offset(module: T5RelativeBias, max_offset: int) -> Tensor:
    """A T5 bias's value per head [H, 2 * max_offset + 1] for key - query offsets -max_offset..max_offset."""
    offsets = torch.arange(-max_offset, max_offset + 1, device=module.table.weight.device)
    return module.bias(torch.zeros(1, dtype=torch.long, device=offsets.device), offsets)[:, 0].detach()


def rotary2d_scores(module: RotaryEmbedding2D, grid: int, *, layer: int = 0) -> Tensor:
    """Score [H, grid, grid] of the centre cell's query against every cell's key, one all-ones vector per head
    rotated by the module: what 2-D rotary alone says about where a patch is."""
    angles = module.angles((grid, grid), device=next(module.buffers(), torch.zeros(0)).device)[layer]
    n, d = grid * grid, module.head_dim
    u = torch.ones(1, module.num_heads, n, d) / math.sqrt(d)
    q, k = angles(u, u)
    centre = (grid // 2) * grid + grid // 2
    return (q[0, :, centre : centre + 1] @ k[0].transpose(-1, -2))[:, 0].reshape(-1, grid, grid).detach()


def relative_modules(model: nn.Module) -> dict[str, nn.Module]:
    """A model's learned relative-position modules by name: T5 biases and mixed 2-D rotary frequencies."""
    found: dict[str, nn.Module] = {}
    for name, m in model.named_modules():
        if isinstance(m, T5RelativeBias) or (isinstance(m, RotaryEmbedding2D) and m.mode == "mixed"):
            found[name] = m
    return found


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
    relative: dict[str, nn.Module] | None = None,
    dpi: int = 110,
) -> list[Path]:
    """Write the position-encoding and softmax pictures as PNG files into `out_dir`; return their paths.

    Args:
        out_dir: Folder for the files (created).
        num_positions: Positions shown.
        dim: Model width of the sinusoidal table, and head width of the rotary picture.
        num_heads: Heads of the ALiBi picture.
        learned: Learned tables by name (see `learned_tables`), drawn beside the fixed encodings.
        relative: A model's learned relative modules by name (see `relative_modules`): T5 biases are drawn per head
            over the offset, mixed 2-D rotary frequencies as score maps beside the fresh ones.
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

    written.append(_t5_picture(plt, out / "positions_t5_bias.png", num_positions, num_heads, relative or {}, dpi))
    written.append(_rotary2d_picture(plt, out / "positions_rotary2d.png", dim, num_heads, relative or {}, dpi))
    written.append(_random_picture(plt, out / "positions_random.png", num_positions, dpi))

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


def _t5_picture(plt, path: Path, num_positions: int, num_heads: int, relative: dict[str, nn.Module], dpi: int) -> Path:
    """T5's buckets over the offset (both directions and causal), and each given T5 bias per head."""
    learned = {name: m for name, m in relative.items() if isinstance(m, T5RelativeBias)}
    fig, axes = plt.subplots(1, 1 + len(learned), figsize=(5.5 * (1 + len(learned)), 4), layout="constrained")
    axes = [axes] if not learned else list(axes)
    offsets = torch.arange(-num_positions, num_positions + 1)
    for bidirectional, style in ((True, "-"), (False, "--")):
        buckets = relative_position_bucket(offsets, bidirectional=bidirectional, num_buckets=32, max_distance=128)
        axes[0].plot(offsets.numpy(), buckets.numpy(), style, label="encoder" if bidirectional else "causal decoder")
    axes[0].set_title("T5 buckets (32, last from distance 128): exact near, log-spaced far", fontsize=9)
    axes[0].set_xlabel("key - query offset")
    axes[0].set_ylabel("bucket")
    axes[0].legend(fontsize=8)
    for ax, (name, module) in zip(axes[1:], learned.items(), strict=True):
        values = t5_bias_by_offset(module, num_positions).cpu()
        for h in range(min(values.shape[0], 8)):
            ax.plot(offsets.numpy(), values[h].numpy(), lw=1, label=f"head {h}")
        ax.set_title(f"learned T5 bias {name}", fontsize=9)
        ax.set_xlabel("key - query offset")
        ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def _rotary2d_picture(plt, path: Path, dim: int, num_heads: int, relative: dict[str, nn.Module], dpi: int) -> Path:
    """Centre-query score maps of axial and (fresh or learned) mixed 2-D rotary, a few heads each."""
    head_dim = max(4, (dim // num_heads) // 4 * 4)
    fresh = RotaryEmbedding2D(head_dim, num_heads, mode="mixed", generator=torch.Generator().manual_seed(0))
    panels = [("axial", RotaryEmbedding2D(head_dim, num_heads, mode="axial")), ("mixed, at initialisation", fresh)]
    panels += [(f"learned mixed {name}", m) for name, m in relative.items() if isinstance(m, RotaryEmbedding2D)]
    heads = min(max(m.num_heads for _, m in panels), 3)
    fig, axes = plt.subplots(len(panels), heads, figsize=(3.2 * heads, 3 * len(panels)), squeeze=False)
    for row, (title, module) in enumerate(panels):
        scores = rotary2d_scores(module, 15)
        for h in range(heads):
            if h < module.num_heads:
                _heatmap(axes[row, h], scores[h], f"{title}\nhead {h}")
            else:
                axes[row, h].axis("off")
    fig.suptitle("2-D rotary: score of the centre patch's query against every patch's key", fontsize=10)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def _random_picture(plt, path: Path, num_positions: int, dpi: int) -> Path:
    """Eight training draws of randomised positions for a 16-token sequence."""
    sampler = RandomPositions(max(num_positions, 16))
    g = torch.Generator().manual_seed(0)
    draws = [sampler.draw(16, generator=g) for _ in range(8)]
    fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
    for row, pos in enumerate(draws):
        ax.plot(pos.numpy(), [row] * len(pos), "o", ms=4)
    ax.plot(range(16), [-1.2] * 16, "ks", ms=4, label="0, 1, 2, ... (without randomising)")
    ax.set_xlim(-1, sampler.max_len)
    ax.set_xlabel("position")
    ax.set_ylabel("training step")
    top = sampler.max_len - 1
    ax.set_title(f"Randomised positions: 16 tokens get sorted positions drawn from 0..{top}", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
