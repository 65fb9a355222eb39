"""The scenes demo set on disk: determinism, one seed per image, PNG + captions.jsonl read back, geometry that makes
every caption true."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmattn.tasks.scenes import Scene, make_scenes, parse_caption, read_captions, render_scene, sample_scene

COUNTS = {"train": 24, "val": 8, "test": 6}


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def scenes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scenes(tmp_path_factory.mktemp("data"), counts=COUNTS, workers=1)


def test_layout_and_format(scenes_root: Path) -> None:
    assert scenes_root.name == "scenes"
    for split, n in COUNTS.items():
        files = sorted(p.name for p in (scenes_root / split).glob("*.png"))
        assert files == [f"{i:05d}.png" for i in range(n)]
        lines = (scenes_root / split / "captions.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["file"] for line in lines] == files
    with Image.open(scenes_root / "train" / "00000.png") as img:
        assert (img.format, img.mode, img.size) == ("PNG", "RGB", (48, 48))


def test_records_read_back_and_every_caption_describes_its_scene(scenes_root: Path) -> None:
    pairs = 0
    for split in COUNTS:
        for record in read_captions(scenes_root / split):
            scene = record["scene"]
            assert isinstance(scene, Scene) and Path(record["file"]).is_file()
            assert len(record["captions"]) == 6 == len(set(record["captions"]))
            assert all(parse_caption(c) == scene for c in record["captions"])
            assert len(record["boxes"]) == len(scene.objects)
            pairs += len(scene.objects) == 2
    assert 0 < pairs < sum(COUNTS.values())  # pair_fraction 0.5 gives both kinds


def test_geometry_makes_the_relation_true() -> None:
    seen = set()
    for i in range(300):
        scene = sample_scene(np.random.default_rng([5, i]), pair_fraction=1.0)
        pixels, boxes = render_scene(scene, np.random.default_rng([5, i, 1]), img_size=48)
        assert pixels.shape == (48, 48, 3) and pixels.dtype == np.uint8
        for x, y, d in boxes:  # the enclosing circles stay inside the image
            assert d / 2 <= x <= 48 - d / 2 and d / 2 <= y <= 48 - d / 2
        (xa, ya, da), (xb, yb, db) = boxes
        along, across = (yb - ya, xb - xa) if scene.relation == "above" else (xb - xa, yb - ya)
        assert along >= (da + db) / 2  # apart along the relation's axis: never overlapping, never reversed
        assert abs(across) <= 0.5 * along + 1e-9  # and never a near-diagonal call
        seen.add(scene.relation)
    assert seen == {"above", "left of"}


def test_sizes_are_apart() -> None:
    diameters = {"small": [], "large": []}
    for i in range(100):
        scene = sample_scene(np.random.default_rng([6, i]), pair_fraction=0.0)
        _, [(_, _, d)] = render_scene(scene, np.random.default_rng([6, i, 1]), img_size=48)
        diameters[scene.objects[0].size].append(d)
    assert max(diameters["small"]) * 1.5 < min(diameters["large"])


def test_same_seed_same_bytes_other_seed_differs(scenes_root: Path, tmp_path: Path) -> None:
    # workers=2 also checks that the output does not depend on how the work is shared out.
    again = make_scenes(tmp_path / "a", counts=COUNTS, workers=2)
    assert _tree_bytes(again) == _tree_bytes(scenes_root)
    other = _tree_bytes(make_scenes(tmp_path / "b", counts=COUNTS, seed=1, workers=1))
    pngs = [k for k in other if k.endswith(".png")]
    assert all(other[k] != _tree_bytes(scenes_root)[k] for k in pngs)


def test_each_image_has_its_own_seed(scenes_root: Path) -> None:
    # Image i of split s is reproducible alone from (seed, s, i): no dependence on generation order.
    rng = np.random.default_rng([0, 1, 3])
    scene = sample_scene(rng)
    expected, _ = render_scene(scene, rng)
    with Image.open(scenes_root / "val" / "00003.png") as img:
        np.testing.assert_array_equal(np.asarray(img), expected)
    assert read_captions(scenes_root / "val")[3]["scene"] == scene


def test_other_settings_are_not_silently_reused(scenes_root: Path) -> None:
    with pytest.raises(ValueError, match="delete it"):
        make_scenes(scenes_root.parent, counts={**COUNTS, "train": 25}, workers=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(counts={"train": 1, "val": 1}), "every split"),
        (dict(counts={"train": 0, "val": 1, "test": 1}), "every split"),
        (dict(img_size=24), "img_size 24 is too small"),
        (dict(pair_fraction=1.5), "pair_fraction"),
        (dict(captions_per_image=0), "captions_per_image"),
        (dict(noise=-1), "noise"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_scenes(tmp_path, **kwargs)
    assert not (tmp_path / "scenes").exists()


def test_broken_captions_file_names_the_line(tmp_path: Path) -> None:
    folder = tmp_path / "train"
    folder.mkdir()
    good = {"file": "0.png", "scene": {"objects": [{"shape": "star", "colour": "red", "size": "small"}]}}
    lines = [json.dumps({**good, "captions": ["a small red star"]}), json.dumps({**good, "captions": []})]
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"captions.jsonl:2: not a scene record"):
        read_captions(folder)
    with pytest.raises(FileNotFoundError, match="no captions.jsonl"):
        read_captions(tmp_path)
