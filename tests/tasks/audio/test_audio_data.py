"""Audio split finders (Speech Commands v2, ESC-50, audio folders), the clip dataset, and skipping bad files."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmattn.data import BadFile, collate_skipping
from mmattn.tasks.audio.data import (
    SPEECH_COMMANDS_12,
    SPEECH_COMMANDS_WORDS,
    AudioClipDataset,
    AudioDataLoader,
    Clip,
    audio_folder_splits,
    esc50_splits,
    speech_commands_splits,
)
from mmattn.tasks.audio.io import AudioDecodeError, read_audio

SR = 16000
CLIP = 1600  # 0.1 s clips keep the fixtures small


def _write(path: Path, num_samples: int = CLIP, sample_rate: int = SR, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, num_samples)
    sf.write(path, x, sample_rate, subtype="PCM_16" if path.suffix == ".wav" else None)
    return path


def _speech_commands(root: Path, words: tuple[str, ...] = (*SPEECH_COMMANDS_WORDS, "bed", "cat")) -> Path:
    """5 clips per word: the first in validation_list.txt, the second in testing_list.txt, three for training."""
    lists: dict[str, list[str]] = {"validation_list.txt": [], "testing_list.txt": []}
    for w, word in enumerate(words):
        for i in range(5):
            rel = f"{word}/{w:04x}{i:04x}_nohash_0.wav"
            _write(root / rel, seed=w * 10 + i)
            if i < 2:
                lists[["validation_list.txt", "testing_list.txt"][i]].append(rel)
    for name, entries in lists.items():
        (root / name).write_text("".join(f"{e}\n" for e in entries))
    noise = root / "_background_noise_"
    _write(noise / "white_noise.wav", num_samples=SR)
    _write(noise / "hum.wav", num_samples=4000, sample_rate=8000)  # 0.5 s at 8 kHz = 8000 samples at 16 kHz
    (noise / "README.md").write_text("not audio")
    return root


def _labels(clips: list[Clip]) -> list[int]:
    return [c.label for c in clips]


# Speech Commands -----------------------------------------------------------------------------------------------------


def test_speech_commands_all_words(tmp_path: Path) -> None:
    root = _speech_commands(tmp_path / "sc")
    (root / ".DS_Store_dir").mkdir()  # hidden folders and files are not words
    (root / "yes" / "._resource_fork.wav").write_bytes(b"\x00\x05\x16\x07")
    splits, classes, background = speech_commands_splits(root)
    assert classes == sorted([*SPEECH_COMMANDS_WORDS, "bed", "cat"])
    assert {k: len(v) for k, v in splits.items()} == {"train": 36, "val": 12, "test": 12}
    assert sorted(_labels(splits["val"])) == list(range(12))
    assert all(c.offset is None and c.path.is_file() for s in splits.values() for c in s)
    assert {c.path.parent.name for c in splits["train"] if c.label == classes.index("go")} == {"go"}
    val_files = {c.path.relative_to(root).as_posix() for c in splits["val"]}
    assert val_files == set((root / "validation_list.txt").read_text().split())
    assert [p.name for p in background] == ["hum.wav", "white_noise.wav"]


def test_speech_commands_12_protocol(tmp_path: Path) -> None:
    root = _speech_commands(tmp_path / "sc")
    splits, classes, _ = speech_commands_splits(root, protocol="12", clip_samples=CLIP)
    assert classes == list(SPEECH_COMMANDS_12) and classes[-2:] == ["_silence_", "_unknown_"]
    silence, unknown = classes.index("_silence_"), classes.index("_unknown_")
    # train: 30 keyword clips + 6 unknown (bed, cat) = 36, then 10% silence: round(0.1 * 36 / 0.9) = 4.
    counts = {split: np.bincount(_labels(clips), minlength=12).tolist() for split, clips in splits.items()}
    assert counts["train"] == [3] * 10 + [4, 6]
    assert counts["val"] == counts["test"] == [1] * 10 + [1, 2]
    lengths = {"white_noise.wav": SR, "hum.wav": 8000}
    for clip in (c for s in splits.values() for c in s if c.label == silence):
        assert clip.path.parent.name == "_background_noise_"
        assert 0 <= clip.offset <= lengths[clip.path.name] - CLIP
    assert {c.path.parent.name for c in splits["train"] if c.label == unknown} == {"bed", "cat"}

    again, _, _ = speech_commands_splits(root, protocol="12", clip_samples=CLIP)
    assert again == splits
    other, _, _ = speech_commands_splits(root, protocol="12", clip_samples=CLIP, seed=1)
    assert [c for c in other["train"] if c.label == silence] != [c for c in splits["train"] if c.label == silence]


def test_speech_commands_12_fractions(tmp_path: Path) -> None:
    root = _speech_commands(tmp_path / "sc")
    splits, _, _ = speech_commands_splits(
        root, protocol="12", unknown_fraction=0.1, silence_fraction=0.2, clip_samples=CLIP
    )
    counts = np.bincount(_labels(splits["train"]), minlength=12).tolist()
    # unknown: round(0.1 * 30 / 0.7) = 4 of 6; silence: round(0.2 * 34 / 0.8) = 8 (of 42: 10% and 19%).
    assert counts == [3] * 10 + [8, 4]
    splits, _, _ = speech_commands_splits(root, protocol="12", unknown_fraction=0, silence_fraction=0)
    assert np.bincount(_labels(splits["train"]), minlength=12).tolist() == [3] * 10 + [0, 0]


def test_silence_clip_reads_its_window(tmp_path: Path) -> None:
    root = _speech_commands(tmp_path / "sc")
    splits, _, _ = speech_commands_splits(root, protocol="12", silence_fraction=0.5, clip_samples=CLIP)
    silence = [c for c in splits["train"] if c.label == SPEECH_COMMANDS_12.index("_silence_")]
    assert {c.path.name for c in silence} == {"white_noise.wav", "hum.wav"}, "both files (same rate or resampled)"
    dataset = AudioClipDataset(silence, sample_rate=SR, num_samples=CLIP, train=True)
    for i in range(len(silence)):
        wave, label = dataset[i]
        full = read_audio(silence[i].path, SR)
        torch.testing.assert_close(wave, full[silence[i].offset : silence[i].offset + CLIP])
        assert label == 10


def test_empty_testing_list_leaves_out_test(tmp_path: Path) -> None:
    root = _speech_commands(tmp_path / "sc")
    (root / "testing_list.txt").write_text("")
    splits, _, _ = speech_commands_splits(root)
    assert sorted(splits) == ["train", "val"] and len(splits["train"]) == 48


def test_speech_commands_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no Speech Commands folder at .*nowhere.*data.download=true"):
        speech_commands_splits(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"unknown Speech Commands protocol '35'; choose one of \['all', '12'\]"):
        speech_commands_splits(tmp_path, protocol="35")
    with pytest.raises(ValueError, match=r"unknown_fraction 0.5 \+ silence_fraction 0.5 must be < 1"):
        speech_commands_splits(tmp_path, unknown_fraction=0.5, silence_fraction=0.5)
    root = _speech_commands(tmp_path / "sc", words=("yes", "no", "bed"))
    with pytest.raises(ValueError, match=r"protocol '12' needs the word folders .* lacks \['up', 'down'"):
        speech_commands_splits(root, protocol="12")

    (root / "testing_list.txt").rename(root / "moved.txt")
    with pytest.raises(FileNotFoundError, match=r"split list .*testing_list.txt not found"):
        speech_commands_splits(root)
    (root / "moved.txt").rename(root / "testing_list.txt")
    with open(root / "validation_list.txt", "a") as f:
        f.write("yes/gone_nohash_0.wav\n")
    with pytest.raises(ValueError, match=r"validation_list.txt lists 'yes/gone_nohash_0.wav', which is not an audio"):
        speech_commands_splits(root)


def test_speech_commands_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "_background_noise_").mkdir()
    with pytest.raises(ValueError, match=r"holds no word folders"):
        speech_commands_splits(tmp_path)
    root = _speech_commands(tmp_path / "sc")
    (root / "wow").mkdir()
    with pytest.raises(ValueError, match=r"word folder .*wow holds no audio files \(extensions .wav, .flac, .ogg\)"):
        speech_commands_splits(root)
    (root / "wow").rmdir()
    for p in (root / "_background_noise_").iterdir():
        p.unlink()
    with pytest.raises(FileNotFoundError, match=r"no background noise recordings in .*_background_noise_"):
        speech_commands_splits(root, protocol="12")
    _write(root / "_background_noise_" / "short.wav", num_samples=100)
    with pytest.raises(ValueError, match=r"shorter than clip_samples=16000"):
        speech_commands_splits(root, protocol="12")
    splits, _, _ = speech_commands_splits(root, protocol="12", silence_fraction=0)
    assert "_silence_" not in {c.path.parent.name for c in splits["train"]}


# ESC-50 --------------------------------------------------------------------------------------------------------------

ESC50_CATEGORIES = ("dog", "rain", "crying_baby")  # by target, deliberately not alphabetical


def _esc50(root: Path, drop_column: str | None = None) -> Path:
    """One clip per fold and class, in ESC-50's layout and csv format."""
    columns = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    rows = []
    for fold in range(1, 6):
        for target, category in enumerate(ESC50_CATEGORIES):
            name = f"{fold}-{100 + target}-A-{target}.wav"
            _write(root / "audio" / name, seed=fold * 10 + target)
            rows.append([name, fold, target, category, "False", str(100 + target), "A"])
    (root / "meta").mkdir()
    keep = [i for i, c in enumerate(columns) if c != drop_column]
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        writer = csv.writer(f)
        for row in [columns, *rows]:
            writer.writerow([row[i] for i in keep])
    return root


def test_esc50_folds(tmp_path: Path) -> None:
    root = _esc50(tmp_path / "esc")
    splits, classes = esc50_splits(root)
    assert classes == list(ESC50_CATEGORIES)
    assert {k: len(v) for k, v in splits.items()} == {"train": 9, "val": 3, "test": 3}
    assert {c.path.name[0] for c in splits["test"]} == {"5"} and {c.path.name[0] for c in splits["val"]} == {"4"}
    assert {c.path.name[0] for c in splits["train"]} == {"1", "2", "3"}
    assert all(int(c.path.stem[-1]) == c.label for s in splits.values() for c in s)

    splits, _ = esc50_splits(root, test_fold=1, val_fold=None)
    assert splits["val"] == splits["test"] and {c.path.name[0] for c in splits["test"]} == {"1"}
    assert len(splits["train"]) == 12


def test_esc50_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ESC-50 metadata .*meta/esc50.csv not found.*data.download=true"):
        esc50_splits(tmp_path)
    with pytest.raises(ValueError, match=r"test_fold 6 is not an ESC-50 fold"):
        esc50_splits(tmp_path, test_fold=6)
    with pytest.raises(ValueError, match=r"val_fold and test_fold are both 3"):
        esc50_splits(tmp_path, test_fold=3, val_fold=3)
    with pytest.raises(ValueError, match=r"esc50.csv has no column 'fold'"):
        esc50_splits(_esc50(tmp_path / "a", drop_column="fold"))
    root = _esc50(tmp_path / "b")
    (root / "audio" / "3-101-A-1.wav").unlink()
    with pytest.raises(ValueError, match=r"esc50.csv line 9 lists .*audio/3-101-A-1.wav, which does not exist"):
        esc50_splits(root)


# Audio folder --------------------------------------------------------------------------------------------------------


def _audio_folder(root: Path, n: int = 5, exts: tuple[str, ...] = (".wav", ".flac", ".ogg")) -> Path:
    for c, name in enumerate(("bird", "car", "drum")):
        for i in range(n):
            _write(root / name / f"{i}{exts[c % len(exts)]}", seed=c * 10 + i)
    return root


def test_audio_folder_split_per_class(tmp_path: Path) -> None:
    root = _audio_folder(tmp_path / "af")
    (root / "car" / "notes.txt").write_text("not audio")
    (root / "_background_noise_").mkdir()

    def split(seed: int) -> tuple[list[Clip], list[Clip]]:
        splits, classes = audio_folder_splits(root, val_fraction=0.2, seed=seed)
        assert classes == ["bird", "car", "drum"] and sorted(splits) == ["train", "val"]
        assert sorted(_labels(splits["val"])) == [0, 1, 2] and len(splits["train"]) == 12
        return splits["train"], splits["val"]

    train, val = split(0)
    assert not {c.path for c in train} & {c.path for c in val}
    assert {c.path.suffix for c in train} == {".wav", ".flac", ".ogg"}
    assert split(0) == (train, val)
    assert any(split(s)[1] != val for s in (1, 2, 3))


def test_audio_folder_split_folders(tmp_path: Path) -> None:
    _audio_folder(tmp_path / "train", n=3)
    _audio_folder(tmp_path / "val", n=1)
    splits, classes = audio_folder_splits(tmp_path)
    assert classes == ["bird", "car", "drum"] and sorted(splits) == ["train", "val"]
    assert _labels(splits["train"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2] and _labels(splits["val"]) == [0, 1, 2]
    _audio_folder(tmp_path / "test", n=2)
    assert len(audio_folder_splits(tmp_path)[0]["test"]) == 6


def test_audio_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no audio folder at .*missing; point data.root at an audio folder"):
        audio_folder_splits(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"val_fraction 1.0 must lie in \(0, 1\)"):
        audio_folder_splits(tmp_path, val_fraction=1.0)
    root = _audio_folder(tmp_path / "af", n=2)
    (root / "eel").mkdir()
    (root / "eel" / "eel.mp4").write_bytes(b"")
    with pytest.raises(
        ValueError, match=r"class folder .*af/eel holds no audio files \(extensions .wav, .flac, .ogg\)"
    ):
        audio_folder_splits(root)
    _audio_folder(tmp_path / "s" / "train", n=1)
    with pytest.raises(FileNotFoundError, match=r"train/ folder but no val/ folder"):
        audio_folder_splits(tmp_path / "s")
    _write(tmp_path / "s" / "val" / "cat" / "0.wav")
    with pytest.raises(ValueError, match=r"only in train: \['bird', 'car', 'drum'\], only in val: \['cat'\]"):
        audio_folder_splits(tmp_path / "s")


# Dataset and loader --------------------------------------------------------------------------------------------------


def test_dataset_crops_pads_and_transforms(tmp_path: Path) -> None:
    long = _write(tmp_path / "long.wav", num_samples=3000)
    short = _write(tmp_path / "short.wav", num_samples=500)
    clips = [Clip(long, 0), Clip(short, 1)]
    evaluation = AudioClipDataset(clips, sample_rate=SR, num_samples=CLIP, train=False)
    wave, label = evaluation[0]
    assert wave.shape == (CLIP,) and wave.dtype == torch.float32 and label == 0
    torch.testing.assert_close(wave, read_audio(long, SR)[700:2300])
    wave, label = evaluation[1]
    assert (
        label == 1 and wave[:550].abs().sum() == 0 and wave[550:1050].abs().min() > 0 and wave[1050:].abs().sum() == 0
    )

    training = AudioClipDataset(clips, sample_rate=SR, num_samples=CLIP, train=True, transform=lambda w: 2 * w)
    torch.manual_seed(0)
    starts = {int(torch.nonzero(training[1][0])[0]) for _ in range(20)}
    assert len(starts) > 5, "training places a short clip at random"
    assert training[0][0].abs().max() > evaluation[0][0].abs().max() * 1.5, "transform applied"
    with pytest.raises(ValueError, match="num_samples must be > 0, got 0"):
        AudioClipDataset(clips, sample_rate=SR, num_samples=0, train=True)


def _with_bad_files(tmp_path: Path) -> list[Clip]:
    """Good, good, bad, bad, good, good: with batch_size=2 the middle batch is empty after skipping."""
    clips = []
    for i, bad in enumerate([False, False, True, True, False, False]):
        path = tmp_path / f"{i}.wav"
        if bad:
            path.write_bytes(b"RIFF....WAVEjunk")
        else:
            _write(path, seed=i)
        clips.append(Clip(path, i))
    return clips


def test_bad_files_raise_unless_skipped(tmp_path: Path) -> None:
    clips = _with_bad_files(tmp_path)
    with pytest.raises(AudioDecodeError, match=r"2\.wav"):
        AudioClipDataset(clips, sample_rate=SR, num_samples=CLIP, train=False)[2]
    item = AudioClipDataset(clips, sample_rate=SR, num_samples=CLIP, train=False, skip_bad_files=True)[2]
    assert isinstance(item, BadFile) and item.path == str(clips[2].path) and "cannot decode" in item.error
    batch, skipped = collate_skipping([item, item])
    assert batch is None and skipped == [item.path] * 2


@pytest.mark.parametrize("num_workers", [0, 1])
def test_loader_skips_and_reports_bad_files(tmp_path: Path, num_workers: int, caplog: pytest.LogCaptureFixture) -> None:
    clips = _with_bad_files(tmp_path)
    dataset = AudioClipDataset(clips, sample_rate=SR, num_samples=CLIP, train=True, skip_bad_files=True)
    loader = AudioDataLoader(dataset, batch_size=2, num_workers=num_workers, collate_fn=collate_skipping)
    for _ in range(2):  # each pass reports its own skips
        caplog.clear()
        with pytest.warns(RuntimeWarning, match=r"skipped 2 audio file\(s\) .*2\.wav, .*3\.wav$") as record:
            batches = list(loader)
        assert len(record) == 1
        assert [y.tolist() for _, y in batches] == [[0, 1], [4, 5]]
        assert all(x.shape == (2, CLIP) and x.dtype == torch.float32 for x, _ in batches)
        assert [r.levelno for r in caplog.records if "skipped 2 audio file" in r.message] == [logging.WARNING]


def test_loader_needs_collate_skipping(tmp_path: Path) -> None:
    dataset = AudioClipDataset([Clip(_write(tmp_path / "a.wav"), 0)], sample_rate=SR, num_samples=CLIP, train=False)
    with pytest.raises(TypeError, match="pass collate_fn=collate_skipping"):
        next(iter(AudioDataLoader(dataset, batch_size=1)))


def test_lightning_can_recreate_the_loader(tmp_path: Path) -> None:
    # Lightning rebuilds a DataLoader from its __init__ arguments to insert a DistributedSampler.
    from lightning.pytorch.utilities.data import _update_dataloader
    from torch.utils.data import DistributedSampler

    clips = [Clip(_write(tmp_path / f"{i}.wav", seed=i), i) for i in range(4)]
    dataset = AudioClipDataset(clips, sample_rate=SR, num_samples=CLIP, train=False)
    loader = AudioDataLoader(dataset, batch_size=2, collate_fn=collate_skipping)
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=False)
    again = _update_dataloader(loader, sampler)
    assert type(again) is AudioDataLoader and again.sampler is sampler
    assert [y.tolist() for _, y in again] == [[1, 3]]
