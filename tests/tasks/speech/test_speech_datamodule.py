"""Speech datamodules on small real files: manifests and the LibriSpeech layout, frame-budget batches, transcripts
outside the tokenizer counted, too-long clips filtered and counted, the tokenizer saved and reused."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmattn.tasks.speech import LibriSpeechDataModule, ManifestDataModule
from mmattn.tasks.text.bpe import EOS_ID, UNK_ID

RATE = 16000
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


def _clip(path: Path, seconds: float, seed: int, rate: int = RATE) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.2 * np.sin(2 * np.pi * rng.uniform(200, 800) * t) + 0.01 * rng.standard_normal(t.size), rate)


def _manifest(folder: Path, name: str, rows: list[tuple[float, str]], seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (seconds, text) in enumerate(rows):
        audio = folder / f"{name}-{i}.flac"
        _clip(audio, seconds, seed + i)
        lines.append(json.dumps({"audio": audio.name, "duration": seconds, "text": text}))
    path = folder / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(n: int, seed: int) -> list[tuple[float, str]]:
    rng = np.random.default_rng(seed)
    return [
        (round(float(rng.uniform(0.3, 1.5)), 3), " ".join(rng.choice(WORDS, rng.integers(1, 4)).tolist()).upper())
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("manifests")
    train = _rows(24, 0) + [(3.0, "ALPHA  BRAVO")]  # the last clip is longer than max_duration below
    return {
        "train": _manifest(root, "train", train, 0),
        "valid": _manifest(root, "valid", _rows(6, 1) + [(0.5, "CAFÉ DELTA")], 100),  # É was never in training
        "root": root,
    }


def _module(corpus: dict[str, Path], tmp_path: Path, **kw) -> ManifestDataModule:
    args = dict(
        tokenizer_dir=tmp_path / "tok", vocab_size=40, min_frequency=1, max_duration=2.0, max_frames=400, seed=0
    )
    args.update(kw)
    return ManifestDataModule(corpus["train"], corpus["valid"], **args)


def test_manifest_batches_hold_waves_targets_and_normalised_refs(corpus, tmp_path: Path, caplog) -> None:
    dm = _module(corpus, tmp_path)
    with caplog.at_level(logging.WARNING, logger="mmattn.tasks.speech.datamodule"):
        dm.prepare_data()
        dm.setup("fit")
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "train split: dropped 1 clip(s) longer than data.max_duration=2.0 s (24 kept)" in messages
    assert "val split: 1 character run(s) in 1 transcript(s)" in messages and "<unk>" in messages
    assert len(dm.datasets["train"]) == 24 and len(dm.datasets["val"]) == 7
    assert dm.datasets["test"] is dm.datasets["val"]
    val_targets = dm.datasets["val"].targets
    assert sum(ids.count(UNK_ID) for ids in val_targets) == 1

    seen = 0
    for batch in dm.train_dataloader():
        audio, lengths = batch["src"]["audio"], batch["src"]["audio_lengths"]
        assert audio.ndim == 2 and audio.shape[0] == lengths.shape[0] == batch["tgt"].shape[0]
        assert int(lengths.max()) == audio.shape[1]
        frames = torch.ceil(lengths / RATE * 100)
        assert float(frames.max()) * len(lengths) <= 400  # the frame budget, padding counted
        ends = batch["tgt"].gather(1, ((batch["tgt"] != 0).sum(1) - 1)[:, None])
        assert (ends == EOS_ID).all()
        assert all(r == r.lower() and "  " not in r for r in batch["ref"])
        seen += len(lengths)
    assert seen == 24
    # Evaluation batches follow one order every epoch; the decoded tokens give back the reference.
    first = [b["ref"] for b in dm.val_dataloader()]
    assert first == [b["ref"] for b in dm.val_dataloader()]
    tok = dm.tokenizer
    assert tok.decode(dm.datasets["train"].targets[0]) == dm.datasets["train"].refs[0]

    # A second datamodule (a resumed run) loads the saved tokenizer instead of training another.
    again = _module(corpus, tmp_path)
    again.setup("fit")
    assert again.tokenizer == tok


def test_filter_eval_and_bad_options(corpus, tmp_path: Path) -> None:
    dm = _module(corpus, tmp_path, max_duration=0.8, filter_eval=True)
    dm.setup("fit")
    assert max(u.duration for u in dm.datasets["val"].utterances) <= 0.8
    with pytest.raises(ValueError, match="raise data.max_frames or lower data.max_duration"):
        _module(corpus, tmp_path, max_frames=100, max_duration=2.0)
    missing = ManifestDataModule(corpus["train"], corpus["root"] / "nope.jsonl", tokenizer_dir=tmp_path / "t2")
    with pytest.raises(FileNotFoundError, match="data.valid_manifest"):
        missing.setup("fit")


def test_librispeech_layout(tmp_path: Path, librispeech) -> None:
    librispeech(tmp_path / "LibriSpeech")
    dm = LibriSpeechDataModule(tmp_path, tokenizer_dir=tmp_path / "tok", vocab_size=40, min_frequency=1)
    dm.setup("fit")
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [6, 3, 3]
    batch = next(iter(dm.test_dataloader()))
    assert set(batch) == {"src", "tgt", "ref"} and all(r.islower() for r in batch["ref"])
    with pytest.raises(ValueError, match="train_subsets"):
        LibriSpeechDataModule(tmp_path, train_subsets="train-clean-100")
