"""Procedural "scenes" demo dataset: one or two coloured shapes in a spatial relation, with paraphrased captions.

On disk (`root/scenes/`)::

    {train,val,test}/00000.png ...       RGB images, img_size x img_size
    {train,val,test}/captions.jsonl      one JSON object per image, in file order:
        {"file": "00000.png",
         "scene": {"objects": [{"shape": "star", "colour": "red", "size": "large"}, ...], "relation": "above"},
         "captions": ["a large red star above a small blue ring", "a little blue ring under a big red star", ...],
         "boxes": [[x, y, diameter], ...]}

The scene is in canonical form (`mmattn.tasks.scenes.grammar`): the first object is the upper (or left) one and
`captions[0]` is the canonical caption. `boxes` give each object's centre and enclosing-circle diameter in pixels,
in the order of `objects`. Image i of split s is drawn from its own seed `(seed, s, i)`, so the result does not depend
on generation order or on the number of worker processes. Shapes are drawn with `mmattn.tasks.vision.shapes`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from mmattn.data import ensure_dataset
from mmattn.tasks.vision.shapes import DEFAULT_NOISE, png_bytes, shape_coverage

from .grammar import COLOURS, RELATIONS, SHAPES, SIZES, Scene, SceneObject, sample_captions

__all__ = ["CAPTIONS_FILE", "SPLITS", "generate_scenes", "make_scenes", "read_captions", "render_scene", "sample_scene"]

# Bump when drawing, sampling or the file format changes, so an older tree is detected, not silently reused.
GENERATOR_VERSION = "1"
SPLITS = ("train", "val", "test")
CAPTIONS_FILE = "captions.jsonl"
DEFAULT_COUNTS = {"train": 16000, "val": 500, "test": 1000}

# Saturated, far apart in RGB (each pair differs by >= 150 in some channel), so +-20 of jitter keeps every name right.
PALETTE = {
    "blue": (50, 90, 235),
    "green": (40, 180, 60),
    "red": (220, 40, 40),
    "white": (235, 235, 235),
    "yellow": (235, 215, 40),
}
COLOUR_JITTER = 20
# Diameters of the enclosing circle as fractions of the image side: large is ~1.8x small, so size is read absolutely.
SIZE_RANGES = {"small": (0.20, 0.25), "large": (0.38, 0.44)}
# Small tilts only: the outlines stay recognisable at ~10 px, and "triangle" need not be learnt upside down too.
MAX_ANGLE = 0.3
# Least empty space between two objects along the relation's axis, as a fraction of the side.
GAP = 0.06
# Along the other axis the second object stays within this fraction of the distance along the relation's axis, so
# "above" is never a near-diagonal call.
CROSS_RATIO = 0.5
_JOB_SIZE = 500  # images per process-pool job


def sample_scene(rng: np.random.Generator, pair_fraction: float = 0.5) -> Scene:
    """A random scene: two objects with probability `pair_fraction`, else one; every attribute uniform."""

    def obj() -> SceneObject:
        return SceneObject(
            SHAPES[rng.integers(len(SHAPES))], COLOURS[rng.integers(len(COLOURS))], SIZES[rng.integers(2)]
        )

    if rng.random() < pair_fraction:
        return Scene((obj(), obj()), RELATIONS[rng.integers(len(RELATIONS))])
    return Scene((obj(),))


def _layout(scene: Scene, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """(x, y, diameter) of each object as fractions of the side; the enclosing circles stay inside the image."""
    diameters = [rng.uniform(*SIZE_RANGES[o.size]) for o in scene.objects]
    if len(diameters) == 1:
        r = diameters[0] / 2
        x, y = rng.uniform(r, 1 - r, size=2)
        return [(x, y, diameters[0])]
    (da, db), (ra, rb) = diameters, (diameters[0] / 2, diameters[1] / 2)
    # Along the relation's axis: the slack (side minus both objects and the gap) is cut in three random parts.
    u1, u2 = np.sort(rng.uniform(0, 1 - da - db - GAP, size=2))
    along_a = ra + u1
    along_b = da + GAP + rb + u2
    across_a = rng.uniform(ra, 1 - ra)
    reach = CROSS_RATIO * (along_b - along_a)
    across_b = rng.uniform(max(rb, across_a - reach), min(1 - rb, across_a + reach))
    if scene.relation == "above":  # the relation's axis is y, growing downwards
        return [(across_a, along_a, da), (across_b, along_b, db)]
    return [(along_a, across_a, da), (along_b, across_b, db)]


def render_scene(
    scene: Scene, rng: np.random.Generator, img_size: int = 48, noise: float = DEFAULT_NOISE
) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """Draw `scene` as an [img_size, img_size, 3] uint8 array; also return each object's (x, y, diameter) in px.

    Args:
        scene: The scene (its objects in canonical order).
        rng: Source of all randomness for this image.
        img_size: Image side in pixels.
        noise: Standard deviation of the Gaussian pixel noise, in 0-255 units.
    """
    boxes = [(x * img_size, y * img_size, d * img_size) for x, y, d in _layout(scene, rng)]
    img = np.broadcast_to(rng.uniform(0, 60, size=3).astype(np.float32), (img_size, img_size, 3)).copy()
    for obj, (x, y, d) in zip(scene.objects, boxes):
        colour = np.asarray(PALETTE[obj.colour], np.float32) + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, size=3)
        alpha = shape_coverage(obj.shape, img_size, center=(x, y), diameter=d, angle=rng.uniform(-MAX_ANGLE, MAX_ANGLE))
        img += alpha * (np.clip(colour, 0, 255).astype(np.float32) - img)
    img += rng.standard_normal((img_size, img_size, 3), dtype=np.float32) * np.float32(noise)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), boxes


def _write_images(
    folder: Path,
    key: tuple[int, int],
    start: int,
    stop: int,
    *,
    img_size: int,
    noise: float,
    pair_fraction: float,
    captions_per_image: int,
) -> list[str]:
    """Write images `start..stop-1` of one split (`key` = (seed, split index)); return their JSON lines."""
    lines = []
    for i in range(start, stop):
        rng = np.random.default_rng([*key, i])
        scene = sample_scene(rng, pair_fraction)
        pixels, boxes = render_scene(scene, rng, img_size, noise)
        name = f"{i:05d}.png"
        (folder / name).write_bytes(png_bytes(pixels))
        record = {
            "file": name,
            "scene": scene.to_dict(),
            "captions": sample_captions(scene, rng, captions_per_image),
            "boxes": [[round(v, 2) for v in box] for box in boxes],
        }
        lines.append(json.dumps(record))
    return lines


def generate_scenes(
    out_dir: Path | str,
    *,
    counts: Mapping[str, int] = DEFAULT_COUNTS,
    img_size: int = 48,
    pair_fraction: float = 0.5,
    captions_per_image: int = 6,
    seed: int = 0,
    noise: float = DEFAULT_NOISE,
    workers: int | None = None,
) -> None:
    """Write the scenes dataset into `out_dir` (not atomic; see `make_scenes`).

    `workers` processes share the work (default: one per CPU, at most 8); the output does not depend on it.
    """
    out_dir = Path(out_dir)
    options = dict(img_size=img_size, noise=noise, pair_fraction=pair_fraction, captions_per_image=captions_per_image)
    jobs = []
    for split_idx, split in enumerate(SPLITS):
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        n = counts[split]
        jobs += [(split, (seed, split_idx), start, min(start + _JOB_SIZE, n)) for start in range(0, n, _JOB_SIZE)]
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    lines: dict[str, list[str]] = {split: [] for split in SPLITS}
    # A daemonic process (e.g. a DataLoader worker) may not start children, so it generates alone.
    if workers <= 1 or multiprocessing.current_process().daemon:
        for split, *job in jobs:
            lines[split] += _write_images(out_dir / split, *job, **options)
    else:
        with ProcessPoolExecutor(workers) as pool:
            futures = [(split, pool.submit(_write_images, out_dir / split, *job, **options)) for split, *job in jobs]
            for split, future in futures:  # in submission order: the lines stay in file order
                lines[split] += future.result()
    for split in SPLITS:
        (out_dir / split / CAPTIONS_FILE).write_text("".join(line + "\n" for line in lines[split]), encoding="utf-8")


def make_scenes(
    root: Path | str,
    *,
    counts: Mapping[str, int] | None = None,
    img_size: int = 48,
    pair_fraction: float = 0.5,
    captions_per_image: int = 6,
    seed: int = 0,
    noise: float = DEFAULT_NOISE,
    workers: int | None = None,
) -> Path:
    """Generate the scenes dataset once under `root/scenes` (atomic, process-safe) and return that folder.

    Args:
        root: Data directory; the dataset goes to `root/scenes`.
        counts: Images per split, {"train": n, "val": n, "test": n} (default 16000 / 500 / 1000).
        img_size: Image side in pixels.
        pair_fraction: Share of scenes with two objects (the others hold one).
        captions_per_image: Captions stored per image: the canonical one and paraphrases (fewer when a one-object
            scene has fewer, 6 at most).
        seed: Seed of the whole dataset.
        noise: Standard deviation of the Gaussian pixel noise, in 0-255 units.
        workers: Processes that write images (default: one per CPU); does not change the output.

    Raises:
        ValueError: A count or option is out of bounds, or `root/scenes` holds a dataset made with other settings.
    """
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    if sorted(counts) != sorted(SPLITS) or any(int(n) < 1 for n in counts.values()):
        raise ValueError(f"counts {counts} must give every split of {list(SPLITS)} at least one image")
    if img_size < 32:
        raise ValueError(f"img_size {img_size} is too small: a small object would span < 7 px; use img_size >= 32")
    if not 0 <= pair_fraction <= 1:
        raise ValueError(f"pair_fraction {pair_fraction} must be in [0, 1]")
    if captions_per_image < 1:
        raise ValueError(f"captions_per_image must be >= 1, got {captions_per_image}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    settings: dict[str, Any] = dict(
        counts={split: int(counts[split]) for split in SPLITS},
        img_size=int(img_size),
        pair_fraction=float(pair_fraction),
        captions_per_image=int(captions_per_image),
        seed=int(seed),
        noise=float(noise),
    )
    version = f"{GENERATOR_VERSION} " + " ".join(f"{k}={v}" for k, v in settings.items())
    generate = partial(generate_scenes, **settings, workers=workers)
    return ensure_dataset(Path(root) / "scenes", generate, name="scenes", version=version)


def read_captions(folder: Path | str) -> list[dict[str, Any]]:
    """The records of one split folder's `captions.jsonl`, each with "file" made a full path and "scene" a `Scene`.

    Raises:
        FileNotFoundError: The folder has no `captions.jsonl`.
        ValueError: A line is not JSON, lacks a field, has no caption, or describes no valid scene (the message
            names the file and line).
    """
    path = Path(folder) / CAPTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {CAPTIONS_FILE} in {folder}; generate the scenes (data.generate=true)")
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                record = {**raw, "file": str(path.parent / raw["file"]), "scene": Scene.from_dict(raw["scene"])}
                captions = raw["captions"]
                if not captions or not all(isinstance(c, str) for c in captions):
                    raise ValueError("captions must be a non-empty list of strings")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: not a scene record ({type(e).__name__}: {e})") from e
            records.append(record)
    return records
