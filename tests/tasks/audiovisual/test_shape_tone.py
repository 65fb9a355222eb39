"""The fusion demo's data: (shape image, key tone) pairs labelled (shape + key) mod n, written as pair lists."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from mmattn.tasks.audiovisual import PAIR_COLUMNS, ShapeToneDataModule, draw_pairs
from mmattn.tasks.vision.shapes import SHAPE_CLASSES

N = 3
PAIRS = {"train": 36, "val": 18, "test": 9}
IMAGE = {"img_size": 16, "train_per_class": 3, "val_per_class": 2, "test_per_class": 2}
AUDIO = {"train_per_class": 2, "val_per_class": 1, "test_per_class": 1, "num_mel_bins": 32, "target_length": 100}


def _module(root: Path, **kw) -> ShapeToneDataModule:
    args = dict(num_classes=N, pairs=PAIRS, image=IMAGE, audio=AUDIO, batch_size=6)
    return ShapeToneDataModule(root, **{**args, **kw})


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data")
    _module(path).prepare_data()
    return path


def _rows(root: Path, split: str) -> list[dict[str, str]]:
    with open(root / "shape_tone" / "pairs" / f"pairs_{split}.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_batches_hold_images_features_flags_and_labels(root: Path) -> None:
    dm = _module(root)
    dm.setup("fit")
    assert dm.classes == ["0", "1", "2"] and dm.num_classes == N
    assert [len(s) for s in (dm.train_set, dm.val_set, dm.test_set)] == list(PAIRS.values())
    batches = list(dm.train_dataloader())
    assert len(batches) == 6  # 36 pairs, batches of 6, none short
    inputs, labels = batches[0]
    assert set(inputs) == {"image", "audio", "present"} and set(inputs["present"]) == {"image", "audio"}
    assert inputs["image"].shape == (6, 3, 16, 16) and inputs["image"].dtype == torch.float32
    assert inputs["audio"].shape == (6, 100, 32) and inputs["audio"].dtype == torch.float32
    for flags in inputs["present"].values():
        assert flags.dtype == torch.bool and flags.shape == (6,) and flags.all()
    assert labels.dtype == torch.long and labels.shape == (6,)
    # The inputs are the inner datamodules' own: the shapes eval transform and the DTMF features.
    image_idx, tone_idx, label = dm.val_set.pairs[0]
    (inputs, labels) = next(iter(dm.val_dataloader()))
    assert torch.equal(inputs["image"][0], dm.shapes.val_set[image_idx][0])
    assert torch.equal(inputs["audio"][0], dm.tones.val_set[tone_idx][0]) and labels[0] == label
    assert sum(len(y) for _, y in dm.test_dataloader()) == PAIRS["test"]  # evaluation keeps the short batch


def test_pair_lists_are_the_label_rule_on_real_files(root: Path) -> None:
    base = root / "shape_tone"
    testing = set((base / "dtmf" / "testing_list.txt").read_text().split())
    for split in ("train", "val", "test"):
        rows = _rows(root, split)
        assert list(rows[0]) == list(PAIR_COLUMNS) and len(rows) == PAIRS[split]
        for row in rows:
            image, audio = Path(row["image"]), Path(row["audio"])
            assert (base / image).is_file() and (base / audio).is_file()
            assert image.parts[:3] == ("shapes", split, row["shape"]) and audio.parts[:2] == ("dtmf", row["key"])
            shape, key = SHAPE_CLASSES.index(row["shape"]), int(row["key"])
            assert int(row["label"]) == (shape + key) % N
            # Each split pairs only its own files.
            assert (Path(*audio.parts[1:]).as_posix() in testing) == (split == "test")


def test_either_input_alone_leaves_the_label_uniform(root: Path) -> None:
    for split in ("train", "val", "test"):
        rows = _rows(root, split)
        for given in ("shape", "key"):
            counts = Counter((row[given], row["label"]) for row in rows)
            assert len(counts) == N * N and set(counts.values()) == {PAIRS[split] // (N * N)}, (split, given)
    # The full-size demo's design too, without generating files: 10 x 10 cells of 160 pairs each.
    names = [[f"{c}/{i}" for i in range(500)] for c in range(10)]
    pairs = draw_pairs(names, [n[:200] for n in names], 16000, np.random.default_rng(0))
    assert set(Counter((p.shape, p.label) for p in pairs).values()) == {160}
    assert set(Counter((p.key, p.label) for p in pairs).values()) == {160}
    assert max(Counter(p.image for p in pairs).values()) == 4  # 1600 pairs a shape over 500 images: 3 or 4 each


def test_pairs_are_drawn_from_the_seed(root: Path, tmp_path: Path) -> None:
    files = {s: (root / "shape_tone" / "pairs" / f"pairs_{s}.csv").read_bytes() for s in PAIRS}
    same = _module(tmp_path / "a")
    same.prepare_data()
    assert files == {s: (same.pair_dir / f"pairs_{s}.csv").read_bytes() for s in PAIRS}
    other = _module(tmp_path / "a", pair_seed=1)
    with pytest.raises(ValueError, match="delete it"):  # other pairs are not silently mixed with these
        other.prepare_data()
    other = _module(tmp_path / "b", pair_seed=1)
    other.prepare_data()
    assert files["train"] != (other.pair_dir / "pairs_train.csv").read_bytes()


def test_drop_modality_zeroes_and_flags_one_input_in_training_only(root: Path) -> None:
    dm = _module(root, drop_modality=1.0)
    dm.setup("fit")
    torch.manual_seed(0)
    inputs, _ = next(iter(dm.train_dataloader()))
    image, audio = inputs["present"]["image"], inputs["present"]["audio"]
    assert (image ^ audio).all() and image.any() and audio.any()  # exactly one absent, either one
    assert (inputs["image"][~image] == 0).all() and (inputs["image"][image] != 0).any(dim=(1, 2, 3)).all()
    assert (inputs["audio"][~audio] == 0).all() and (inputs["audio"][audio] != 0).any(dim=(1, 2)).all()
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        for inputs, _ in loader:
            assert all(flags.all() for flags in inputs["present"].values())


@pytest.mark.parametrize("only", ["image", "audio"])
def test_only_marks_the_other_input_absent_everywhere(root: Path, only: str) -> None:
    dm = _module(root, only=only)
    dm.setup("fit")
    other = "audio" if only == "image" else "image"
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        for inputs, _ in loader:
            assert inputs["present"][only].all() and not inputs["present"][other].any()
            assert (inputs[other] == 0).all() and inputs[only].abs().sum() > 0


def test_bad_options_fail_at_construction(root: Path) -> None:
    with pytest.raises(ValueError, match=r"pairs.train=40 pairs cannot fill the 3 x 3.*multiple of 9, e.g. 36 or 45"):
        _module(root, pairs={**PAIRS, "train": 40})
    with pytest.raises(ValueError, match="set data.drop_modality=0"):
        _module(root, only="image", drop_modality=0.1)
    with pytest.raises(ValueError, match="only must be null, 'image' or 'audio'"):
        _module(root, only="text")
    with pytest.raises(ValueError, match="num_classes must be 2 to 10"):
        _module(root, num_classes=11)
    with pytest.raises(ValueError, match=r"data.audio may not set \['features_on'\]"):
        _module(root, audio={**AUDIO, "features_on": "device"})
    with pytest.raises(FileNotFoundError, match="data.generate=true"):
        _module(root / "missing", generate=False).setup()


def test_a_pair_list_that_breaks_the_rule_is_refused(root: Path, tmp_path: Path) -> None:
    _module(tmp_path).prepare_data()
    path = tmp_path / "shape_tone" / "pairs" / "pairs_val.csv"
    lines = path.read_text().splitlines()
    row = lines[1].split(",")
    row[-1] = str((int(row[-1]) + 1) % N)
    path.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    with pytest.raises(ValueError, match=r"pairs_val.csv:2: label .* is not \(shape \+ key\) mod 3"):
        _module(tmp_path).setup()
