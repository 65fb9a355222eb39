"""The procedural shapes demo set: determinism, layout, image format."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmattn.tasks.vision.shapes import SHAPE_CLASSES, make_shapes, png_bytes, render_shape

SMALL = dict(train_per_class=3, val_per_class=2, test_per_class=1)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("data"), **SMALL, workers=1)


def test_layout_counts_and_format(shapes_root: Path) -> None:
    assert len(SHAPE_CLASSES) >= 10
    assert shapes_root.name == "shapes"
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        assert sorted(p.name for p in (shapes_root / split).iterdir()) == sorted(SHAPE_CLASSES)
        for name in SHAPE_CLASSES:
            files = sorted((shapes_root / split / name).iterdir())
            assert [f.name for f in files] == [f"{i:05d}.png" for i in range(n)]
    with Image.open(shapes_root / "train" / "star" / "00000.png") as img:
        assert (img.format, img.mode, img.size) == ("PNG", "RGB", (32, 32))


def test_same_seed_same_bytes_other_seed_differs(shapes_root: Path, tmp_path: Path) -> None:
    # workers=2 also checks that the output does not depend on how the work is shared out.
    again = make_shapes(tmp_path / "a", **SMALL, workers=2)
    assert _tree_bytes(again) == _tree_bytes(shapes_root)
    other = make_shapes(tmp_path / "b", **SMALL, seed=1, workers=1)
    differ = [k for k, v in _tree_bytes(other).items() if v != _tree_bytes(shapes_root)[k]]
    assert len(differ) == len(_tree_bytes(shapes_root))


def test_each_image_has_its_own_seed(shapes_root: Path) -> None:
    # Image i of class c in split s is reproducible alone from (seed, s, c, i): no dependence on generation order.
    class_idx = SHAPE_CLASSES.index("ring")
    expected = render_shape("ring", np.random.default_rng([0, 1, class_idx, 1]))
    with Image.open(shapes_root / "val" / "ring" / "00001.png") as img:
        np.testing.assert_array_equal(np.asarray(img), expected)


def test_png_encoder_round_trips() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(png_bytes(pixels))) as img:
        assert img.size == (7, 5)
        np.testing.assert_array_equal(np.asarray(img), pixels)


@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_shapes_are_visible_and_inside(name: str) -> None:
    for i in range(5):
        img = render_shape(name, np.random.default_rng([7, i]), img_size=32, noise=0.0).astype(int)
        background = img[0, 0]
        fg = np.abs(img - background).sum(-1) > 30
        assert 0.04 < fg.mean() < 0.8, f"{name}: shape covers {fg.mean():.2f} of the image"
        # The enclosing circle lies inside the image, so no more than a touch of the border is covered.
        border = np.concatenate([fg[0], fg[-1], fg[:, 0], fg[:, -1]])
        assert border.mean() < 0.1


def test_settings_are_versioned(tmp_path: Path) -> None:
    make_shapes(tmp_path, **SMALL, workers=1)
    with pytest.raises(ValueError, match=r"img_size=16.*delete it"):
        make_shapes(tmp_path, **SMALL, img_size=16, workers=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(size_range=(0.5, 1.2)), r"size_range \(0.5, 1.2\)"),
        (dict(img_size=4), "img_size 4 is too small"),
        (dict(train_per_class=0), "train_per_class must be >= 1"),
        (dict(noise=-1.0), "noise must be >= 0"),
    ],
)
def test_bad_settings_raise(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_shapes(tmp_path, **kwargs)


def test_unknown_shape_name() -> None:
    with pytest.raises(ValueError, match="unknown shape 'blob'"):
        render_shape("blob", np.random.default_rng(0))
