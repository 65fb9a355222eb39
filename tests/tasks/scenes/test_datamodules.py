"""The scene datamodules on a tiny generated set: batch formats, scene ids, the tokenizer, texts outside it, files."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmattn.tasks.scenes import (
    SHAPES,
    SceneCaptionDataModule,
    SceneTextDataModule,
    all_captions,
    parse_caption,
    read_captions,
    sample_scene,
)
from mmattn.tasks.text import TextTokenizer
from mmattn.tasks.text.bpe import EOS_ID, PAD_ID, UNK_ID

SMALL = dict(num_train=60, num_val=10, num_test=8, batch_size=8)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    SceneCaptionDataModule(root, **SMALL).prepare_data()  # generates once; the tests below reuse it
    return root


def _captions(data_root: Path, tmp_path: Path, **kw) -> SceneCaptionDataModule:
    dm = SceneCaptionDataModule(data_root, tokenizer_dir=tmp_path / "tok", **{**SMALL, **kw})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _text(data_root: Path, tmp_path: Path, **kw) -> SceneTextDataModule:
    dm = SceneTextDataModule(data_root, tokenizer_dir=tmp_path / "tok", **{**SMALL, **kw})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _content(row: torch.Tensor) -> list[int]:
    """The ids of a padded, EOS-terminated row, checking that layout."""
    ids = row.tolist()
    end = ids.index(EOS_ID)
    assert all(i == PAD_ID for i in ids[end + 1 :]) and PAD_ID not in ids[:end]
    return ids[:end]


def test_caption_batches(data_root: Path, tmp_path: Path) -> None:
    dm = _captions(data_root, tmp_path)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"src", "tgt", "ref"}
    assert batch["src"].shape == (8, 3, 48, 48) and batch["src"].dtype == torch.float32
    assert batch["tgt"].dtype == torch.long and batch["tgt"].shape[0] == 8
    assert isinstance(batch["ref"], list) and len(batch["ref"]) == 8
    for row, ref in zip(batch["tgt"], batch["ref"]):
        _content(row)
        assert dm.tokenizer.decode(row) == ref and parse_caption(ref) is not None
    # Validation and test: the canonical caption of each image, the same every pass.
    records = read_captions(data_root / "scenes" / "val")
    refs = [r for b in dm.val_dataloader() for r in b["ref"]]
    assert refs == [r["captions"][0] for r in records] == [r for b in dm.val_dataloader() for r in b["ref"]]
    assert len(list(dm.test_dataloader())) == 1  # 8 test images: one batch


def test_training_draws_random_paraphrases_and_can_be_fixed(data_root: Path, tmp_path: Path) -> None:
    dm = _captions(data_root, tmp_path)
    train = dm.datasets["train"]
    torch.manual_seed(0)
    drawn = {train[0][2] for _ in range(30)}
    assert len(drawn) > 1 and {parse_caption(t) for t in drawn} == {parse_caption(train.texts[0][0])}
    fixed = _captions(data_root, tmp_path, random_caption=False).datasets["train"]
    assert {fixed[0][2] for _ in range(10)} == {fixed.texts[0][0]}


def test_text_batches(data_root: Path, tmp_path: Path) -> None:
    dm = _text(data_root, tmp_path)
    batches = list(dm.train_dataloader())
    assert len(batches) == 60 // 8  # drop_last: every contrastive batch is full
    batch = batches[0]
    assert set(batch) == {"image", "text", "match", "label"}
    assert batch["image"].shape == (8, 3, 48, 48) and batch["image"].dtype == torch.float32
    for key in ("text", "match", "label"):
        assert batch[key].dtype == torch.long and batch[key].shape[0] == 8
    records = read_captions(data_root / "scenes" / "test")
    test = [b for b in dm.test_dataloader()]
    matches = torch.cat([b["match"] for b in test]).tolist()
    labels = torch.cat([b["label"] for b in test]).tolist()
    texts = [dm.tokenizer.decode(row) for b in test for row in b["text"]]
    assert matches == [r["scene"].id for r in records]
    assert labels == [SHAPES.index(r["scene"].objects[0].shape) for r in records]
    assert texts == [r["captions"][0] for r in records]
    for b in test:
        for row in b["text"]:
            _content(row)


def test_match_ids_are_equal_exactly_for_identical_scenes(data_root: Path, tmp_path: Path) -> None:
    dm = _text(data_root, tmp_path)
    records = [r for split in ("train", "val", "test") for r in read_captions(data_root / "scenes" / split)]
    ids = [i for split in ("train", "val", "test") for i in dm.datasets[split].scene_ids]
    by_id: dict[int, set] = {}
    for record, i in zip(records, ids):
        by_id.setdefault(i, set()).add(record["scene"])
    assert all(len(scenes) == 1 for scenes in by_id.values())  # one scene per id
    assert len(by_id) < len(records)  # and identical scenes (here: repeated single objects) share their id


def test_pair_label_and_prompts(data_root: Path, tmp_path: Path) -> None:
    dm = _text(data_root, tmp_path, pair_label="ignore")
    assert dm.classes == list(SHAPES) and dm.num_classes == 5
    assert dm.prompts == ["a cross", "a ring", "a square", "a star", "a triangle"]
    prompts = dm.encode_texts(dm.prompts)
    assert prompts.shape == (5, 3) and UNK_ID not in prompts and dm.unknown_texts == 0
    for shape, prompt_set in zip(dm.classes, dm.prompt_sets):
        assert len(prompt_set) == 10 and {parse_caption(p).objects[0].shape for p in prompt_set} == {shape}
    records = read_captions(data_root / "scenes" / "train")
    expected = [-1 if len(r["scene"].objects) == 2 else SHAPES.index(r["scene"].objects[0].shape) for r in records]
    assert dm.datasets["train"].labels == expected and -1 in expected
    with pytest.raises(ValueError, match="needs '\\{shape\\}'"):
        SceneTextDataModule(data_root, prompt_template="a thing")
    with pytest.raises(ValueError, match="pair_label"):
        SceneTextDataModule(data_root, pair_label="second")


def test_tokenizer_round_trips_and_is_saved_and_reused(data_root: Path, tmp_path: Path) -> None:
    dm = _captions(data_root, tmp_path)
    tok = dm.tokenizer
    rng = np.random.default_rng(0)
    for _ in range(40):
        for caption in all_captions(sample_scene(rng)):
            assert tok.decode(tok.encode(caption)) == caption
    assert TextTokenizer.from_dict(tok.to_dict()) == tok
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
    again = SceneTextDataModule(data_root, tokenizer_dir=tmp_path / "tok", **SMALL)
    again.setup("fit")
    assert again.tokenizer == tok and tok.vocab_size <= dm.vocab_size


def test_texts_outside_the_tokenizer_are_counted_not_crashed(data_root: Path, tmp_path: Path, caplog) -> None:
    dm = _text(data_root, tmp_path)
    with caplog.at_level(logging.WARNING, logger="mmattn.tasks.text.encode"):
        ids = dm.encode_texts(["a purple ✨ star", "a small red star", ""])
    assert ids.dtype == torch.long and ids.shape[0] == 3
    assert UNK_ID in ids[0] and UNK_ID not in ids[1] and _content(ids[2]) == []
    assert dm.tokenizer.decode(ids[1]) == "a small red star"
    assert dm.unknown_texts == 1 and "1 of 3 text(s) hold characters outside" in caplog.text
    with pytest.raises(ValueError, match="non-empty list"):
        dm.encode_texts("a small red star")
    with pytest.raises(ValueError, match="non-empty list"):
        dm.encode_texts([])
    with pytest.raises(ValueError, match="non-empty list of strings"):
        dm.encode_texts([3])

    # A captions file with a character the tokenizer never saw is read, warned about and encoded with <unk>.
    other = tmp_path / "other"
    shutil.copytree(data_root / "scenes", other / "scenes")
    path = other / "scenes" / "val" / "captions.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[0])
    record["captions"][0] = "a small red ✨ star"
    path.write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n", encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mmattn.tasks.text.encode"):
        odd = _text(other, tmp_path, generate=False)
    assert re.search(r"val split: 1 of \d+ text\(s\) hold characters outside", caplog.text)
    assert UNK_ID in next(iter(odd.val_dataloader()))["text"][0]


def test_load_inputs_reads_files_like_evaluation(data_root: Path, tmp_path: Path) -> None:
    dm = _captions(data_root, tmp_path)
    files = [data_root / "scenes" / "val" / f"0000{i}.png" for i in range(2)]
    assert ".png" in dm.extensions  # what mmattn-predict takes from a folder
    images = dm.load_inputs(files)
    assert images.shape == (2, 3, 48, 48) and images.dtype == torch.float32
    torch.testing.assert_close(images[1], dm.datasets["val"][1][0])
    big = tmp_path / "big.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(big)
    with pytest.warns(UserWarning, match="64 x 64 px; resized"):
        assert dm.load_inputs([big]).shape == (1, 3, 48, 48)
    with pytest.raises(FileNotFoundError):
        dm.load_inputs([tmp_path / "missing.png"])


def test_setup_order_and_missing_data(tmp_path: Path) -> None:
    dm = SceneCaptionDataModule(tmp_path, generate=False, **SMALL)
    with pytest.raises(RuntimeError, match="setup"):
        dm.encode_texts(["a small red star"])
    with pytest.raises(RuntimeError, match="setup"):
        dm.train_dataloader()
    with pytest.raises(FileNotFoundError, match="data.generate=true"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="batch_size"):
        SceneCaptionDataModule(tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="color_jitter"):
        SceneCaptionDataModule(tmp_path, color_jitter=-0.1)
