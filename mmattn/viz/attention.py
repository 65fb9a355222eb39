"""Attention pictures of trained models: rollout and class-token attention over an image or spectrogram for
classifiers (ViT, AST), and the decoder's cross-attention alignment for sequence-to-sequence models (translation,
speech), as PNG files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmattn.nn import capture_attention
from mmattn.viz.rollout import attention_rollout

__all__ = [
    "alignment",
    "alignment_figure",
    "alignment_heads_figure",
    "attention_figures",
    "classifier_figures",
    "classifier_maps",
    "save_figures",
]


@torch.no_grad()
def classifier_maps(net: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Where an `EncoderClassifier` (ViT, AST) looks for inputs `x` at the size it was built for.

    Returns `rollout` [B, h, w] (the class token's row of the attention rollout over the patch tokens; without a
    class token the mean row) and `last` [B, H, h, w] (the last layer's attention of that query to the patches, per
    head), both on the patch grid `net.grid_size`.

    Raises:
        ValueError: The net is no token-grid encoder, or `x` gives another grid than the one it was built for.
    """
    if not all(hasattr(net, a) for a in ("encoder", "grid_size", "num_prefix_tokens")):
        raise ValueError(f"{type(net).__name__} is no token-grid encoder (EncoderClassifier: ViT, AST)")
    with capture_attention(net.encoder) as maps:
        net.eval()(x)
    layers = [calls[0] for calls in maps.values()]
    h, w = net.grid_size
    p = net.num_prefix_tokens
    n = layers[0].shape[-1]
    if n != p + h * w:
        raise ValueError(f"the input gives {n - p} patches, not the {h} x {w} grid the model was built for")
    rolled = attention_rollout(layers)  # [B, N, N]
    row = rolled[:, 0] if p else rolled.mean(dim=1)
    last = layers[-1][:, :, 0] if p else layers[-1].mean(dim=2)  # [B, H, N]
    b = x.shape[0]
    return {"rollout": row[:, p:].reshape(b, h, w), "last": last[:, :, p:].reshape(b, -1, h, w)}


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


def _display(x: Tensor) -> tuple[Tensor, str]:
    """An input as an image to draw: [H, W, 3] for images, [mel, frames] (frequency up) for spectrograms (2-D inputs
    on a 1 x w token grid, such as sensor channels [C, T], are drawn as curves instead)."""
    if x.ndim == 3 and x.shape[0] in (1, 3):  # an image [C, H, W]
        img = x.float()
        img = (img - img.amin()) / (img.amax() - img.amin()).clamp_min(1e-8)  # as the model sees it, rescaled
        return (img.expand(3, -1, -1) if img.shape[0] == 1 else img).permute(1, 2, 0), "image"
    if x.ndim == 2:  # features [frames, mel]
        return x.float().T, "spectrogram"
    raise ValueError(f"cannot draw an input of shape {tuple(x.shape)}; expected an image [C, H, W] or [frames, mel]")


def _upsample(grid: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(grid[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]


def classifier_figures(inputs: Tensor, maps: dict[str, Tensor], *, titles: Sequence[str] | None = None) -> list:
    """Per input, figures `attention_<i>` (input, rollout overlay, last-layer class-token overlay) and `heads_<i>`
    (the last layer's heads on the patch grid), as `(name, matplotlib figure)` pairs."""
    from mmattn.viz import require_matplotlib

    plt = require_matplotlib()
    figures: list = []
    for i, x in enumerate(inputs):
        shown, kind = _display(x.cpu())
        shown = shown.numpy()
        size = tuple(shown.shape[:2])
        cmap = None if kind == "image" else "magma"
        origin = "upper" if kind == "image" else "lower"
        title = titles[i] if titles else f"input {i}"
        fig, axes = plt.subplots(1, 3, figsize=(12, 4), layout="constrained")
        panels = (("input", None), ("attention rollout", maps["rollout"][i]), ("last layer", maps["last"][i].mean(0)))
        sequence = kind == "spectrogram" and maps["rollout"].shape[1] == 1
        for ax, (name, grid) in zip(axes, panels):
            if sequence:
                # A 1 x w grid over channels [C, T]: the channels as curves, the attention as a band over time.
                series = x.cpu().float().numpy()
                if grid is not None:
                    band = _upsample(grid.cpu(), (1, series.shape[-1])).numpy()
                    low, high = float(series.min()), float(series.max())
                    extent = (0, series.shape[-1], low, high)
                    ax.imshow(band, cmap="jet", alpha=0.4, aspect="auto", extent=extent, origin="lower")
                for channel in series:
                    ax.plot(channel, lw=0.8)
                ax.set_xlabel("time step", fontsize=8)
            else:
                ax.imshow(shown, cmap=cmap, origin=origin, aspect="auto")
                if grid is not None:
                    heat = _upsample(grid.cpu(), size).numpy()
                    ax.imshow(heat, cmap="jet", alpha=0.5, origin=origin, aspect="auto")
                ax.axis("off")
            ax.set_title(f"{title}: {name}" if grid is None else name, fontsize=9)
        figures.append((f"attention_{i}", fig))

        heads_title = f"{title}: last-layer attention of the class token, per head"
        fig = _head_grid(maps["last"][i], heads_title, cmap="viridis", origin=origin)
        figures.append((f"heads_{i}", fig))
    return figures


def alignment_figure(
    matrix: Tensor, src_tokens: Sequence[str], tgt_tokens: Sequence[str], *, src_label: str = "source"
):
    """One cross-attention matrix [T, S] with target tokens down and source tokens across, as a matplotlib figure."""
    from mmattn.viz import require_matplotlib

    plt = require_matplotlib()
    t, s = matrix.shape
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * s + 2), max(3, 0.35 * t + 1.5)), layout="constrained")
    image = ax.imshow(matrix.cpu().float().numpy(), cmap="Greys", vmin=0, aspect="auto")
    fig.colorbar(image, ax=ax, shrink=0.8)
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


def attention_figures(
    module: nn.Module,
    batch: object,
    num_samples: int,
    classes: Sequence[str] | None = None,
    *,
    titles: Sequence[str] | None = None,
) -> list:
    """The attention figures of a module's net for the first `num_samples` examples of a batch of its own data:
    classifier maps for `(inputs, labels)` batches, cross-attention alignments for seq2seq batches (dicts with
    `src` and `tgt`); `titles` replace the class names of the labels (e.g. file names). Returns `(name, figure)`
    pairs."""
    net, k = module.net, num_samples
    if isinstance(batch, dict) and "tgt" in batch:
        src, tgt = batch["src"], batch["tgt"][:k]
        src = {n: v[:k] for n, v in src.items()} if isinstance(src, dict) else src[:k]
        tok = module.tokenizer
        tgt_in = torch.cat([torch.full_like(tgt[:, :1], tok.bos_id), tgt[:, :-1]], dim=1)
        heads = alignment(net, src, tgt_in, per_head=True)
        weights = heads.mean(dim=1)
        figures = []
        for i in range(tgt.shape[0]):
            t = int((tgt[i] != tok.pad_id).sum())  # decoder inputs up to the one that produced EOS
            if torch.is_tensor(src):
                s = int((src[i] != tok.pad_id).sum())
                src_names, label = _token_names(tok, "src", src[i, :s].tolist()), "source tokens"
            else:
                s = int((weights[i].sum(0) > 0).sum())  # encoder positions that are not padding
                src_names, label = [str(j) for j in range(s)], "source (encoder positions)"
            tgt_names = _token_names(tok, "tgt", tgt_in[i, :t].tolist())
            fig = alignment_figure(weights[i, :t, :s], src_names, tgt_names, src_label=label)
            figures.append((f"alignment_{i}", fig))
            figures.append((f"alignment_heads_{i}", alignment_heads_figure(heads[i, :, :t, :s])))
        return figures
    x, y = batch[0][:k], batch[1][:k]
    if titles is None:
        titles = [classes[int(c)] if classes else f"class {int(c)}" for c in y]
    return classifier_figures(x, classifier_maps(net, x), titles=titles)


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
