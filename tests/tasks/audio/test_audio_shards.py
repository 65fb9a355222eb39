"""Audio data written to shards and read back: the same features and labels as from the files (augmentation off), for
the DTMF demo, Speech Commands with cut `_silence_` windows and background noise, ESC-50 and audio folders."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmattn.data.shard_data import write_shards
from mmattn.data.shards import ShardError, read_info
from mmattn.data.streaming import read_records
from mmattn.tasks.audio import (
    AudioFolderDataModule,
    DTMFDataModule,
    ESC50DataModule,
    SpeechCommandsDataModule,
)
from mmattn.tasks.audio.data import SPEECH_COMMANDS_WORDS

FAST = dict(batch_size=4, num_workers=0)
TINY = dict(train_per_class=3, val_per_class=2, test_per_class=1, target_length=100, **FAST)


def _same_items(files, shards) -> None:
    """Every split read from shards equals the files' split: eval splits item by item, training by key."""
    files.setup()
    shards.setup()
    assert shards.classes == files.classes
    for split in ("val_set", "test_set"):
        a, b = getattr(files, split), getattr(shards, split)
        assert len(a) == len(b)
        for i in range(len(a)):
            assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1], (split, i)
    decode = shards.decode_record(train=True)
    by_key = {}
    for i, clip in enumerate(files.train_set.clips):
        key = Path(clip.path).relative_to(files.root).as_posix()
        by_key[key if clip.offset is None else f"{key}@{clip.offset}"] = files.train_set[i]
    records = read_records(str(shards.shards), "train", shards)
    assert sorted(r.key for r in records) == sorted(by_key)
    for record in records:
        x, y = decode(record)
        assert torch.equal(x, by_key[record.key][0]) and y == by_key[record.key][1], record.key


def test_dtmf_from_shards_equals_dtmf_from_files(tmp_path: Path) -> None:
    files = DTMFDataModule(tmp_path / "data", **TINY)
    files.prepare_data()
    out = tmp_path / "shards"
    written = {s.split: s.num_items for s in write_shards(files, str(out))}
    assert written == {"train": 51, "val": 34, "test": 17, "noise": 5}
    shards = DTMFDataModule(tmp_path / "elsewhere", format="shards", shards=out, **TINY)
    shards.prepare_data()
    assert not (tmp_path / "elsewhere").exists()
    _same_items(files, shards)
    info = read_info(str(out / "val"))
    assert info.codec == "audio" and info.identity["dataset"] == "dtmf" and info.identity["val_per_class"] == 2
    wav_bytes = sum(p.stat().st_size for p in files.root.rglob("*.wav") if p.parent.name != "_background_noise_")
    assert sum(read_info(str(out / s)).num_bytes for s in ("train", "val", "test")) == wav_bytes
    x, y = next(iter(shards.train_dataloader()))
    assert x.shape == (4, 100, 128) and y.dtype == torch.int64
    other = DTMFDataModule(tmp_path, format="shards", shards=out, **{**TINY, "data_seed": 1})
    with pytest.raises(ShardError, match="seed is 0 in the shards but 1 in the config"):
        other.setup()


def _speech_commands(root: Path) -> Path:
    """Ten keywords and one other word, two clips each, lists for val and test, and two background recordings."""
    t = np.arange(16000) / 16000
    for w, word in enumerate([*SPEECH_COMMANDS_WORDS, "zebra"]):
        (root / word).mkdir(parents=True)
        for i in range(3):
            sf.write(root / word / f"s{i}_nohash_0.wav", 0.1 * np.sin(2 * math.pi * (200 + 40 * w) * t), 16000)
    (root / "validation_list.txt").write_text("yes/s1_nohash_0.wav\nzebra/s1_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("no/s2_nohash_0.wav\n")
    (root / "_background_noise_").mkdir()
    rng = np.random.default_rng(0)
    for name, seconds in (("white.wav", 3), ("pink.wav", 2)):
        sf.write(root / "_background_noise_" / name, 0.05 * rng.standard_normal(16000 * seconds), 16000)
    return root


def test_speech_commands_12_with_silence_windows_and_noise(tmp_path: Path) -> None:
    root = _speech_commands(tmp_path / "sc")
    options = dict(protocol="12", silence_fraction=0.2, num_classes=12, target_length=100, **FAST)
    files = SpeechCommandsDataModule(root, **options)
    write_shards(files, str(tmp_path / "shards"))
    shards = SpeechCommandsDataModule(tmp_path, format="shards", shards=tmp_path / "shards", **options)
    _same_items(files, shards)
    silence = [r for r in read_records(str(tmp_path / "shards"), "train", shards) if "@" in r.key]
    # A window is stored alone (a float WAV of its one second), not the whole recording.
    assert silence and all(r.key.startswith("_background_noise_/") for r in silence)
    assert all(len(r.data) < 16000 * 4 + 100 for r in silence)
    assert [r.key for r in read_records(str(tmp_path / "shards"), "noise", shards)] == [
        "_background_noise_/pink.wav",
        "_background_noise_/white.wav",
    ]
    # Noise mixing from the stored recordings.
    noisy = SpeechCommandsDataModule(tmp_path, format="shards", shards=tmp_path / "shards", noise_prob=1.0, **options)
    noisy.setup()
    x, _ = next(iter(noisy.train_dataloader()))
    assert x.shape == (4, 100, 128) and len(noisy.noise_files) == 2 and isinstance(noisy.noise_files[0], bytes)
    seeds = SpeechCommandsDataModule(tmp_path, format="shards", shards=tmp_path / "shards", **{**options, "seed": 3})
    with pytest.raises(ShardError, match="seed is 0 in the shards but 3 in the config"):
        seeds.setup()


def _esc50(root: Path) -> Path:
    rows = []
    (root / "audio").mkdir(parents=True)
    t = np.arange(22050 * 5) / 22050
    for fold in range(1, 6):
        for target, category in enumerate(["dog", "rain"]):
            name = f"{fold}-{100 + target}-A-{target}.wav"
            sf.write(root / "audio" / name, 0.3 * np.sin(2 * math.pi * (300 + 400 * target) * t), 22050)
            rows.append([name, fold, target, category, False, f"{100 + target}", "A"])
    (root / "meta").mkdir()
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        csv.writer(f).writerows([["filename", "fold", "target", "category", "esc10", "src_file", "take"], *rows])
    return root


def test_esc50_folds_from_shards(tmp_path: Path) -> None:
    options = dict(num_classes=2, test_fold=2, val_fold=3, **FAST)
    files = ESC50DataModule(_esc50(tmp_path / "ESC-50-master"), **options)
    write_shards(files, str(tmp_path / "shards"))
    shards = ESC50DataModule(tmp_path, format="shards", shards=tmp_path / "shards", **options)
    _same_items(files, shards)
    assert read_info(str(tmp_path / "shards" / "test")).identity == {"dataset": "esc50", "test_fold": 2, "val_fold": 3}
    assert not (tmp_path / "shards" / "noise").exists()
    refolded = ESC50DataModule(tmp_path, format="shards", shards=tmp_path / "shards", **{**options, "test_fold": 1})
    with pytest.raises(ShardError, match="test_fold is 2 in the shards but 1 in the config"):
        refolded.setup()
    noisy = ESC50DataModule(tmp_path, format="shards", shards=tmp_path / "shards", noise_prob=0.5, **options)
    with pytest.raises(ValueError, match="noise_prob > 0 but the shards at .* hold no background-noise recordings"):
        noisy.setup()


def test_audio_folder_from_shards(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    for c, name in enumerate(["high", "low"]):
        (root / name).mkdir(parents=True)
        for i in range(4):
            wave = (0.1 + 0.05 * i) * np.sin(2 * math.pi * (1500 - 1000 * c) * np.arange(8000) / 8000)
            sf.write(root / name / f"{i}.flac", wave, 8000)  # FLAC at another rate: resampled from the stored bytes
    files = AudioFolderDataModule(root, val_fraction=0.25, **FAST)
    write_shards(files, str(tmp_path / "shards"))
    shards = AudioFolderDataModule(tmp_path, val_fraction=0.25, format="shards", shards=tmp_path / "shards", **FAST)
    _same_items(files, shards)
