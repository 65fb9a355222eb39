"""Pair lists of the fusion demo: (shape image, DTMF key tone) pairs whose label needs both inputs.

label = (shape index + key index) mod n. Every (shape, key) cell holds the same number of pairs, so for each shape
the n keys, and hence the n labels, are equally frequent, and the same for each key: one input alone predicts the
label no better than chance. The images and tones of a cell are drawn at random from the cell's shape and key pools
of one split (each image and tone used as evenly as the counts allow), so test pairs hold only test files.

A split's pairs are written as `pairs_<split>.csv`, one pair a row: `image` and `audio` (paths relative to the
folder above the pair folder), `shape` and `key` (class names) and `label`.
"""

from __future__ import annotations

import csv
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from mmattn.data import ensure_dataset

__all__ = ["PAIR_COLUMNS", "Pair", "check_pair_counts", "draw_pairs", "make_pairs", "read_pairs", "write_pairs"]

# Bump when the drawing changes, so an existing pair folder of an older version is detected, not silently reused.
GENERATOR_VERSION = "1"
SPLITS = ("train", "val", "test")
PAIR_COLUMNS = ("image", "audio", "shape", "key", "label")


@dataclass(frozen=True)
class Pair:
    """One example: an image file of shape `shape`, a tone file of key `key` and the label of the two."""

    image: str
    audio: str
    shape: int
    key: int
    label: int


def _even_draw(pool_size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` indices into a pool: whole random permutations one after the other, so each is used evenly."""
    rounds = math.ceil(count / pool_size)
    return np.concatenate([rng.permutation(pool_size) for _ in range(rounds)])[:count]


def check_pair_counts(counts: Mapping[str, int], n: int) -> dict[str, int]:
    """`counts` as ints after checking each fills the n x n (shape, key) cells equally (a positive multiple of n**2).

    Raises:
        ValueError: A count that is not, named with the nearest valid ones.
    """
    checked = {}
    for name, count in counts.items():
        per_cell, rest = divmod(int(count), n * n)
        if rest or per_cell < 1:
            low = max(per_cell, 1) * n * n
            raise ValueError(
                f"{name}={count} pairs cannot fill the {n} x {n} (shape, key) cells equally; use a multiple of "
                f"{n * n}, e.g. {low} or {low + n * n}"
            )
        checked[name] = int(count)
    return checked


def draw_pairs(
    images: Sequence[Sequence[str]], tones: Sequence[Sequence[str]], count: int, rng: np.random.Generator
) -> list[Pair]:
    """Draw `count` pairs, `count / n**2` in each (shape, key) cell, in random order; n = len(images) = len(tones).

    Args:
        images: `images[s]` = the image files of shape s.
        tones: `tones[k]` = the tone files of key k.
        count: Pairs to draw; a multiple of n**2.
        rng: Source of the order and of the files chosen.

    Raises:
        ValueError: `count` is no positive multiple of n**2, the pools differ in number or one is empty.
    """
    n = len(images)
    if n != len(tones) or n < 1:
        raise ValueError(f"need as many tone pools as image pools (>= 1), got {n} and {len(tones)}")
    empty = [f"shape {s}" for s, pool in enumerate(images) if not pool] + [
        f"key {k}" for k, p in enumerate(tones) if not p
    ]
    if empty:
        raise ValueError(f"no files for {', '.join(empty)}; generate more images and tones per class")
    per_cell = check_pair_counts({"pairs": count}, n)["pairs"] // (n * n)
    shape = np.repeat(np.arange(n), n * per_cell)
    key = np.tile(np.repeat(np.arange(n), per_cell), n)
    order = rng.permutation(count)
    shape, key = shape[order], key[order]
    image_idx = np.empty(count, dtype=np.int64)
    tone_idx = np.empty(count, dtype=np.int64)
    for c in range(n):
        where = np.flatnonzero(shape == c)
        image_idx[where] = _even_draw(len(images[c]), len(where), rng)
        where = np.flatnonzero(key == c)
        tone_idx[where] = _even_draw(len(tones[c]), len(where), rng)
    return [
        Pair(images[s][i], tones[k][j], int(s), int(k), int((s + k) % n))
        for s, k, i, j in zip(shape.tolist(), key.tolist(), image_idx.tolist(), tone_idx.tolist())
    ]


def write_pairs(path: Path | str, pairs: Sequence[Pair], shape_names: Sequence[str], key_names: Sequence[str]) -> None:
    """Write `pairs` as a CSV file with the header `PAIR_COLUMNS` (shape and key as class names)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PAIR_COLUMNS)
        for p in pairs:
            writer.writerow([p.image, p.audio, shape_names[p.shape], key_names[p.key], p.label])


def read_pairs(path: Path | str, shape_names: Sequence[str], key_names: Sequence[str]) -> list[Pair]:
    """Read a file of `write_pairs`, checking its header, names and that every label is (shape + key) mod n.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: Another header, an unknown shape or key name, or a label that is not (shape + key) mod n.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair list {path} does not exist; pass data.generate=true to create it")
    n = len(shape_names)
    shapes = {name: i for i, name in enumerate(shape_names)}
    keys = {name: i for i, name in enumerate(key_names)}
    pairs = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        if header != PAIR_COLUMNS:
            raise ValueError(f"{path} has columns {list(header)}, expected {list(PAIR_COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            image, audio, shape, key, label = row
            if shape not in shapes or key not in keys:
                raise ValueError(f"{path}:{line}: unknown shape {shape!r} or key {key!r} for {n} classes")
            pair = Pair(image, audio, shapes[shape], keys[key], int(label))
            if pair.label != (pair.shape + pair.key) % n:
                raise ValueError(f"{path}:{line}: label {label} is not (shape + key) mod {n}")
            pairs.append(pair)
    return pairs


def _readme(counts: Mapping[str, int], n: int, seed: int, shape_names: Sequence[str], key_names: Sequence[str]) -> str:
    shapes = ", ".join(f"{i}={name}" for i, name in enumerate(shape_names))
    keys = ", ".join(f"{i}={name}" for i, name in enumerate(key_names))
    per_cell = ", ".join(f"{split} {count // (n * n)}" for split, count in counts.items())
    paragraphs = [
        "Generated by mmattn/tasks/audiovisual/pairs.py (make_pairs): the pairs of the fusion demo, each a shape "
        "image and a DTMF key tone whose label needs both.",
        f"label = (shape index + key index) mod {n}, with shapes {shapes} and keys {keys}.",
        f"Every (shape, key) cell holds the same number of pairs ({per_cell} per cell), so either input alone says "
        "nothing about the label. A split's pairs use only that split's images and tones, each about equally often.",
        "Files: pairs_<split>.csv with columns " + ", ".join(PAIR_COLUMNS) + "; paths are relative to the folder "
        f"above this one. Pairs: {', '.join(f'{s} {c}' for s, c in counts.items())}; seed {seed}.",
    ]
    lines = ["Shape + tone pairs (mmattn built-in fusion demo)", ""]
    for paragraph in paragraphs:
        lines += [*textwrap.wrap(paragraph, width=100), ""]
    return "\n".join(lines)


def _generate(
    out_dir: Path,
    *,
    pools: Mapping[str, tuple[list[list[str]], list[list[str]]]],
    counts: Mapping[str, int],
    seed: int,
    shape_names: Sequence[str],
    key_names: Sequence[str],
) -> None:
    for split_idx, split in enumerate(SPLITS):
        pairs = draw_pairs(*pools[split], counts[split], np.random.default_rng([seed, split_idx]))
        write_pairs(out_dir / f"pairs_{split}.csv", pairs, shape_names, key_names)
    (out_dir / "README.txt").write_text(_readme(counts, len(shape_names), seed, shape_names, key_names))


def make_pairs(
    root: Path | str,
    pools: Mapping[str, tuple[list[list[str]], list[list[str]]]],
    *,
    counts: Mapping[str, int],
    seed: int,
    shape_names: Sequence[str],
    key_names: Sequence[str],
    source: str,
) -> Path:
    """Write the pair lists of every split once into `root` (atomic, process-safe) and return `root`.

    Args:
        root: The pair folder, e.g. `data_dir / "shape_tone" / "pairs"`.
        pools: split -> (image files by shape, tone files by key), paths as they go into the file.
        counts: Pairs per split, keys "train", "val", "test".
        seed: Seed of the drawing.
        shape_names: Name of each shape index.
        key_names: Name of each key index.
        source: What made the pools (the generators' settings); part of the version, so pairs of other files are
            detected, not reused.

    Raises:
        ValueError: Counts that cannot fill the cells equally, or `root` holds pairs made with other settings.
    """
    counts = check_pair_counts({split: counts[split] for split in SPLITS}, len(shape_names))
    version = (
        f"{GENERATOR_VERSION} counts={','.join(f'{k}:{v}' for k, v in counts.items())} seed={seed} "
        f"shapes={','.join(shape_names)} keys={','.join(key_names)} source={source}"
    )
    generate = partial(
        _generate, pools=pools, counts=counts, seed=int(seed), shape_names=shape_names, key_names=key_names
    )
    return ensure_dataset(root, generate, name="shape_tone_pairs", version=version)
