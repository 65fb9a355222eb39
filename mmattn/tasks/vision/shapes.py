"""Procedural "shapes" demo dataset: coloured geometric shapes on noisy backgrounds, written as PNG ImageFolder tree.

Each image is drawn from its own seed `(seed, split, class, index)`, so the result does not depend on generation
order and any single image can be reproduced alone. Shapes are drawn as a mask at 4x resolution and box-downsampled
(anti-aliasing), then composited in a bright colour over a dark background colour, plus Gaussian pixel noise.

The classes were chosen to stay distinct after rotation at 32 px for a small ViT with a short budget: filled blobs
that differ only in fine outline (heart, half disk) and a thin-shafted arrow were tried and dropped.
"""

from __future__ import annotations

import multiprocessing
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mmattn.data import ensure_dataset

# Bump when the drawing code changes, so an existing tree of an older generator is detected, not silently reused.
GENERATOR_VERSION = "2"
SPLITS = ("train", "val", "test")
SUPERSAMPLE = 4
# Defaults shared by every entry point (render, generate, make, the datamodule), so they cannot drift apart.
DEFAULT_SIZE_RANGE = (0.55, 0.9)
DEFAULT_NOISE = 4.0

# A shape is a list of (polygon [K, 2] in unit coordinates, mask value): 255 paints, 0 cuts a hole.
Polygon = tuple[np.ndarray, int]


def _arc(radius: float, start: float, stop: float, n: int = 96, center: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Points on a circular arc from angle `start` towards `stop` (radians), `stop` itself left out."""
    t = np.linspace(start, stop, n, endpoint=False)
    return np.stack([center[0] + radius * np.cos(t), center[1] + radius * np.sin(t)], axis=1)


def _regular(n: int, radius: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    """Vertices of a regular n-gon."""
    return _arc(radius, phase, phase + 2 * np.pi, n)


def _circle() -> list[Polygon]:
    return [(_arc(1.0, 0, 2 * np.pi), 255)]


def _ring() -> list[Polygon]:
    # A wide hole keeps the ring clearly different from the disk even at 12 px.
    return [(_arc(1.0, 0, 2 * np.pi), 255), (_arc(0.55, 0, 2 * np.pi), 0)]


def _triangle() -> list[Polygon]:
    return [(_regular(3), 255)]


def _square() -> list[Polygon]:
    return [(_regular(4, phase=np.pi / 4), 255)]


def _star() -> list[Polygon]:
    radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.4)
    pts = _regular(10) * radii[:, None]
    return [(pts, 255)]


def _cross() -> list[Polygon]:
    a, w = 1.0, 0.32
    pts = [(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w)]
    return [(np.array(pts, dtype=np.float64), 255)]


def _crescent() -> list[Polygon]:
    return [(_arc(1.0, 0, 2 * np.pi), 255), (_arc(0.82, 0, 2 * np.pi, center=(0.5, 0.0)), 0)]


def _frame() -> list[Polygon]:
    # A square outline: the ring's counterpart with corners.
    return [(_regular(4, phase=np.pi / 4), 255), (_regular(4, 0.5, phase=np.pi / 4), 0)]


def _bar() -> list[Polygon]:
    return [(np.array([(-1.0, -0.3), (1.0, -0.3), (1.0, 0.3), (-1.0, 0.3)]), 255)]


def _bowtie() -> list[Polygon]:
    # Tall wings and a narrow waist keep it apart from the bar at low resolution.
    return [(np.array([(-1.0, -1.0), (0.0, -0.1), (1.0, -1.0), (1.0, 1.0), (0.0, 0.1), (-1.0, 1.0)]), 255)]


SHAPES: dict[str, Callable[[], list[Polygon]]] = {
    "circle": _circle,
    "ring": _ring,
    "triangle": _triangle,
    "square": _square,
    "star": _star,
    "cross": _cross,
    "crescent": _crescent,
    "frame": _frame,
    "bar": _bar,
    "bowtie": _bowtie,
}
SHAPE_CLASSES: tuple[str, ...] = tuple(sorted(SHAPES))  # sorted = the class order ImageFolder assigns


def _normalised(shape: list[Polygon]) -> list[Polygon]:
    """Centre a shape on its bounding box and scale it so every point lies inside the unit circle."""
    outer = np.concatenate([p for p, v in shape if v])
    center = (outer.min(0) + outer.max(0)) / 2
    radius = np.linalg.norm(outer - center, axis=1).max()
    return [((p - center) / radius, v) for p, v in shape]


_UNIT_SHAPES = {name: _normalised(fn()) for name, fn in SHAPES.items()}


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Background and fill colours (RGB floats): a dark ground and a bright fill, each channel >= 35 apart.

    Colours still vary, but one polarity (light shape on dark ground) gives every edge the same sign, so the short
    demo budget of a small ViT goes into shape, not into invariance to inverted contrast.
    """
    return rng.uniform(0, 110, size=3), rng.uniform(145, 255, size=3)


def shape_coverage(
    name: str, img_size: int, *, center: Sequence[float], diameter: float, angle: float = 0.0
) -> np.ndarray:
    """Anti-aliased coverage [img_size, img_size, 1] (float32 in 0..1) of shape `name` drawn in an image.

    Args:
        name: One of `SHAPE_CLASSES`.
        img_size: Image side in pixels.
        center: (x, y) of the shape's centre in pixels.
        diameter: Diameter of the shape's enclosing circle in pixels.
        angle: Rotation in radians.

    Raises:
        ValueError: `name` is not a shape.
    """
    if name not in _UNIT_SHAPES:
        raise ValueError(f"unknown shape {name!r}; choose one of {list(SHAPE_CLASSES)}")
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    big = img_size * SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    for pts, value in _UNIT_SHAPES[name]:
        xy = (pts @ rot.T * (diameter / 2) + np.asarray(center)) * SUPERSAMPLE
        draw.polygon(xy.ravel().tolist(), fill=value)
    return np.asarray(mask.reduce(SUPERSAMPLE), dtype=np.float32)[..., None] * np.float32(1 / 255)


def render_shape(
    name: str,
    rng: np.random.Generator,
    img_size: int = 32,
    size_range: tuple[float, float] = DEFAULT_SIZE_RANGE,
    noise: float = DEFAULT_NOISE,
) -> np.ndarray:
    """Draw one image of shape class `name` as an [img_size, img_size, 3] uint8 array.

    Args:
        name: One of `SHAPE_CLASSES`.
        rng: Source of all randomness for this image.
        img_size: Image side in pixels.
        size_range: Diameter of the shape's enclosing circle as a fraction of the image side.
        noise: Standard deviation of the Gaussian pixel noise, in 0-255 units.
    """
    if name not in _UNIT_SHAPES:
        raise ValueError(f"unknown shape {name!r}; choose one of {list(SHAPE_CLASSES)}")
    diameter = rng.uniform(*size_range) * img_size
    angle = rng.uniform(0, 2 * np.pi)
    # The enclosing circle stays inside the image, so no part of the shape is ever cut off.
    center = rng.uniform(diameter / 2, img_size - diameter / 2, size=2)
    bg, fg = _colours(rng)

    alpha = shape_coverage(name, img_size, center=center, diameter=diameter, angle=angle)
    img = bg.astype(np.float32) + alpha * (fg - bg).astype(np.float32)
    img += rng.standard_normal((img_size, img_size, 3), dtype=np.float32) * np.float32(noise)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode an [H, W, 3] uint8 array as an 8-bit RGB PNG file.

    Written out here because PIL's PNG plugin costs ~0.4 ms per tiny image (5x the zlib work), which dominated the
    generation time, and because the bytes then depend only on zlib, not on the installed Pillow version.
    """
    h, w, _ = pixels.shape
    # Each scanline is prefixed with filter type 0 (none).
    raw = np.concatenate([np.zeros((h, 1), np.uint8), pixels.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit depth, colour type 2 (RGB), no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _write_class(folder: Path, name: str, key: tuple[int, int, int], count: int, **render_kw: object) -> None:
    """Write `count` images of one class of one split; `key` = (seed, split index, class index)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = render_shape(name, np.random.default_rng([*key, i]), **render_kw)
        (folder / f"{i:05d}.png").write_bytes(png_bytes(pixels))


def generate_shapes(
    out_dir: Path | str,
    *,
    img_size: int = 32,
    train_per_class: int = 600,
    val_per_class: int = 100,
    test_per_class: int = 100,
    seed: int = 0,
    size_range: tuple[float, float] = DEFAULT_SIZE_RANGE,
    noise: float = DEFAULT_NOISE,
    workers: int | None = None,
) -> None:
    """Write the shapes dataset as `out_dir/{train,val,test}/<class>/<index>.png` (not atomic; see `make_shapes`).

    `workers` processes share the work (default: one per CPU, at most 8); the output does not depend on it.
    """
    out_dir = Path(out_dir)
    counts = {"train": train_per_class, "val": val_per_class, "test": test_per_class}
    render_kw = dict(img_size=img_size, size_range=size_range, noise=noise)
    jobs = [
        (out_dir / split / name, name, (seed, split_idx, class_idx), counts[split])
        for split_idx, split in enumerate(SPLITS)
        for class_idx, name in enumerate(SHAPE_CLASSES)
        if counts[split] > 0  # no folder at all for an empty split, so readers fall back (test = val)
    ]
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    # Creating a file costs ~1 ms on some VM file systems, which dominates; it scales with processes. A daemonic
    # process (e.g. a DataLoader worker) may not start children, so it generates alone.
    if workers <= 1 or multiprocessing.current_process().daemon:
        for job in jobs:
            _write_class(*job, **render_kw)
        return
    with ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(_write_class, *job, **render_kw) for job in jobs]
        for future in futures:
            future.result()


def make_shapes(
    root: Path | str,
    *,
    img_size: int = 32,
    train_per_class: int = 600,
    val_per_class: int = 100,
    test_per_class: int = 100,
    seed: int = 0,
    size_range: tuple[float, float] = DEFAULT_SIZE_RANGE,
    noise: float = DEFAULT_NOISE,
    workers: int | None = None,
) -> Path:
    """Generate the shapes dataset once under `root/shapes` (atomic, process-safe) and return that folder.

    Args:
        root: Data directory; the dataset goes to `root/shapes`.
        img_size: Image side in pixels.
        train_per_class: Training images per class.
        val_per_class: Validation images per class.
        test_per_class: Test images per class.
        seed: Seed of the whole dataset.
        size_range: Diameter of the shape's enclosing circle as a fraction of the image side.
        noise: Standard deviation of the Gaussian pixel noise, in 0-255 units.
        workers: Processes that write images (default: one per CPU); does not change the output.

    Raises:
        ValueError: A size or range is out of bounds, or `root/shapes` holds a dataset made with other settings.
    """
    if img_size < 8:
        raise ValueError(f"img_size {img_size} is too small to draw recognisable shapes; use img_size >= 8")
    for key, n in (("train_per_class", train_per_class), ("val_per_class", val_per_class)):
        if n < 1:
            raise ValueError(f"{key} must be >= 1, got {n}")
    if test_per_class < 0:
        raise ValueError(f"test_per_class must be >= 0, got {test_per_class}")
    lo, hi = (float(v) for v in size_range)
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"size_range {size_range} must satisfy 0 < low <= high <= 1 (fractions of the image side)")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    settings = dict(
        img_size=img_size,
        train_per_class=train_per_class,
        val_per_class=val_per_class,
        test_per_class=test_per_class,
        seed=seed,
        size_range=(lo, hi),
        noise=float(noise),
    )
    version = f"{GENERATOR_VERSION} " + " ".join(f"{k}={v}" for k, v in settings.items())
    generate = partial(generate_shapes, **settings, workers=workers)
    return ensure_dataset(Path(root) / "shapes", generate, name="shapes", version=version)
