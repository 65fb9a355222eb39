"""Audio clip datasets and the split finders behind the audio datamodules: Speech Commands v2, ESC-50, audio folders.

A split finder turns a dataset folder into lists of `Clip`s (file, label, optional window) per split, checking the
layout on the way; `AudioClipDataset` reads clips as fixed-length waveforms, and `AudioDataLoader` with
`mmattn.data.collate_skipping` batches them while counting the files that could not be decoded. The same clips
written to shards (`clip_sources`) are read back by `AudioRecordDecoder`: both decode with `read_audio`'s decoder
and finish the waveform with `clip_item` (crop or pad, then the split's transform).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from torch import Tensor
from torch.utils.data import Dataset

from mmattn.data import stratified_split
from mmattn.data.skipping import BadFile, SkippingDataLoader

from .io import AUDIO_EXTENSIONS, AudioDecodeError, fix_length, read_audio

log = logging.getLogger(__name__)

SPEECH_COMMANDS_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE, UNKNOWN = "_silence_", "_unknown_"
# The label order of the 12-class protocol as in SUPERB's keyword spotting task (and the checkpoints trained on it).
SPEECH_COMMANDS_12 = (*SPEECH_COMMANDS_WORDS, SILENCE, UNKNOWN)
SPEECH_COMMANDS_PROTOCOLS = ("all", "12")
BACKGROUND_DIR = "_background_noise_"
SPEECH_COMMANDS_LISTS = {"val": "validation_list.txt", "test": "testing_list.txt"}
ESC50_COLUMNS = ("filename", "fold", "target", "category")
ESC50_FOLDS = (1, 2, 3, 4, 5)
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Clip:
    """One example: an audio file, its class index and, for a window of a long recording, the first sample.

    `offset` (counted at the dataset's sample rate) selects the window of `num_samples` samples starting there;
    None takes the whole file, cropped or padded to `num_samples` by `AudioClipDataset`.
    """

    path: Path
    label: int
    offset: int | None = None


def _is_audio(name: str) -> bool:
    # Hidden files are skipped too: macOS leaves "._x.wav" resource forks next to copied files, which are not audio.
    return not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS)


def _audio_files(folder: Path) -> list[Path]:
    """Audio files under `folder` (recursively, hidden folders skipped), sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath) / f for f in filenames if _is_audio(f)]
    return sorted(found)


def _class_dirs(path: Path) -> list[str]:
    """Sorted class folder names; names starting with "_" (e.g. `_background_noise_`) or "." are not classes."""
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith(("_", ".")))


def _check_fraction(key: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{key} {value} must lie in [0, 1)")


# Speech Commands ------------------------------------------------------------------------------------------------------


def _read_list(list_path: Path, known: set[str]) -> list[str]:
    """The entries (`<word>/<file>.wav`) of a Speech Commands split list, each checked against the files found."""
    if not list_path.is_file():
        raise FileNotFoundError(
            f"split list {list_path} not found; a Speech Commands v2 folder holds validation_list.txt and "
            "testing_list.txt next to the word folders (data.download=true fetches the full dataset)"
        )
    entries = [line.strip() for line in list_path.read_text().splitlines() if line.strip()]
    for entry in entries:
        if entry not in known:
            raise ValueError(
                f"{list_path} lists {entry!r}, which is not an audio file in a word folder of {list_path.parent}; "
                "restore the file or remove the line"
            )
    return entries


def _background_windows(files: Sequence[Path], clip_samples: int, sample_rate: int) -> tuple[list[Path], np.ndarray]:
    """Background files long enough for one clip, and the number of clip windows in each (at `sample_rate`)."""
    usable, windows = [], []
    for path in files:
        try:
            info = sf.info(str(path))
        except (sf.SoundFileError, RuntimeError) as e:
            raise AudioDecodeError(f"cannot read background noise file {path}: {e}") from e
        # Floor: torchaudio's resampler returns ceil(frames * new / old) samples, so every window exists.
        length = info.frames * sample_rate // info.samplerate
        if length >= clip_samples:
            usable.append(path)
            windows.append(length - clip_samples + 1)
    return usable, np.asarray(windows, dtype=np.int64)


def _silence_clips(
    count: int, files: Sequence[Path], windows: np.ndarray, label: int, rng: np.random.Generator
) -> list[Clip]:
    """`count` windows drawn uniformly from all clip-long windows of all background files."""
    if count == 0:
        return []
    ends = np.cumsum(windows)
    draws = rng.integers(0, ends[-1], size=count)
    which = np.searchsorted(ends, draws, side="right")
    offsets = draws - (ends[which] - windows[which])
    return [Clip(files[f], label, int(o)) for f, o in zip(which, offsets)]


def speech_commands_splits(
    root: Path | str,
    *,
    protocol: str = "all",
    silence_fraction: float = 0.1,
    unknown_fraction: float | None = None,
    seed: int = 0,
    clip_samples: int = 16000,
    sample_rate: int = 16000,
) -> tuple[dict[str, list[Clip]], list[str], list[Path]]:
    """Find the train/val/test clips of a Speech Commands v2 folder (or the DTMF demo, which has the same layout).

    The layout: `root/<word>/<file>.wav`, `root/validation_list.txt` and `root/testing_list.txt` (one
    `<word>/<file>.wav` a line), and `root/_background_noise_/` with long noise recordings. Training is every clip in
    neither list. Folders whose names start with "_" or "." are not words.

    Protocol "all" makes every word folder a class (35 in v2), in sorted order. Protocol "12" keeps the ten
    `SPEECH_COMMANDS_WORDS`, puts every other word into `_unknown_` and adds `_silence_`: windows of the background
    recordings at seeded random offsets. Class order is `SPEECH_COMMANDS_12`. Fractions are of the whole split after
    adding both, e.g. silence_fraction=0.1 makes every tenth clip of each split silence (TensorFlow's recipe counts its
    percentages against the ten words alone).

    Args:
        root: Dataset folder, e.g. `data/speech_commands_v0.02`.
        protocol: "all" or "12".
        silence_fraction: Protocol "12": share of `_silence_` clips in each split.
        unknown_fraction: Protocol "12": share of `_unknown_` clips in each split, subsampled by `seed`; None keeps
            every clip of the other words.
        seed: Seed of the unknown subsample and the silence windows.
        clip_samples: Protocol "12": length of a silence window, in samples at `sample_rate`.
        sample_rate: Protocol "12": the rate the dataset reads at, in which silence offsets are counted.

    Returns:
        `{split: clips}` ("test" only when `testing_list.txt` lists any clip), the class names, and the background
        noise files (for noise augmentation; empty without `_background_noise_/`).

    Raises:
        FileNotFoundError: `root`, a split list or (for silence) `_background_noise_/` is missing.
        ValueError: A bad argument, a list entry without its file, a word folder without audio, no word folders, or
            a protocol "12" class without clips.
        AudioDecodeError: A background recording cannot be read.
    """
    if protocol not in SPEECH_COMMANDS_PROTOCOLS:
        raise ValueError(
            f"unknown Speech Commands protocol {protocol!r}; choose one of {list(SPEECH_COMMANDS_PROTOCOLS)}"
        )
    _check_fraction("silence_fraction", silence_fraction)
    if unknown_fraction is not None:
        _check_fraction("unknown_fraction", unknown_fraction)
        if unknown_fraction + silence_fraction >= 1:
            raise ValueError(
                f"unknown_fraction {unknown_fraction} + silence_fraction {silence_fraction} must be < 1 "
                "to leave room for the ten words"
            )
    for key, value in (("clip_samples", clip_samples), ("sample_rate", sample_rate)):
        if value <= 0:
            raise ValueError(f"{key} must be > 0, got {value}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"no Speech Commands folder at {root}; point data.root at an extracted speech_commands_v0.02 folder, "
            "or set data.download=true to fetch Speech Commands"
        )
    words = _class_dirs(root)
    if not words:
        raise ValueError(f"{root} holds no word folders; the Speech Commands layout is {root}/<word>/<file>.wav")
    files = {word: [p.relative_to(root).as_posix() for p in _audio_files(root / word)] for word in words}
    for word, found in files.items():
        if not found:
            raise ValueError(
                f"word folder {root / word} holds no audio files (extensions {', '.join(AUDIO_EXTENSIONS)})"
            )
    known = {rel for found in files.values() for rel in found}
    split_of: dict[str, str] = {}
    for split, name in SPEECH_COMMANDS_LISTS.items():
        for entry in _read_list(root / name, known):
            if split_of.setdefault(entry, split) != split:
                raise ValueError(f"{entry!r} is listed in both {', '.join(SPEECH_COMMANDS_LISTS.values())}; keep one")
    background = _audio_files(root / BACKGROUND_DIR) if (root / BACKGROUND_DIR).is_dir() else []

    def clips_of(word: str, label: int) -> dict[str, list[Clip]]:
        out: dict[str, list[Clip]] = {split: [] for split in SPLITS}
        for rel in files[word]:
            out[split_of.get(rel, "train")].append(Clip(root / rel, label))
        return out

    if protocol == "all":
        splits: dict[str, list[Clip]] = {split: [] for split in SPLITS}
        for label, word in enumerate(words):
            for split, clips in clips_of(word, label).items():
                splits[split] += clips
        return _drop_empty_test(splits), words, background

    missing = [w for w in SPEECH_COMMANDS_WORDS if w not in files]
    if missing:
        raise ValueError(
            f"protocol '12' needs the word folders {list(SPEECH_COMMANDS_WORDS)}, but {root} lacks {missing}; "
            "use protocol=all for a dataset with other words"
        )
    others = [w for w in words if w not in SPEECH_COMMANDS_WORDS]
    if not others and unknown_fraction != 0:
        raise ValueError(
            f"{root} has no words besides the ten keywords, so class {UNKNOWN} would be empty; "
            "add other word folders or set unknown_fraction=0"
        )
    background_usable: list[Path] = []
    windows = np.zeros(0, dtype=np.int64)
    if silence_fraction > 0:
        if not background:
            raise FileNotFoundError(
                f"no background noise recordings in {root / BACKGROUND_DIR}, which protocol '12' cuts {SILENCE} "
                "clips from; add them or set silence_fraction=0"
            )
        background_usable, windows = _background_windows(background, clip_samples, sample_rate)
        if not background_usable:
            raise ValueError(
                f"every recording in {root / BACKGROUND_DIR} is shorter than clip_samples={clip_samples} "
                f"at {sample_rate} Hz, so no {SILENCE} clip can be cut; set silence_fraction=0"
            )

    word_label = {w: i for i, w in enumerate(SPEECH_COMMANDS_WORDS)}
    unknown_label, silence_label = SPEECH_COMMANDS_12.index(UNKNOWN), SPEECH_COMMANDS_12.index(SILENCE)
    keyword_clips = [clips_of(w, word_label[w]) for w in SPEECH_COMMANDS_WORDS]
    unknown_clips = [clips_of(w, unknown_label) for w in others]
    splits = {}
    for split_idx, split in enumerate(SPLITS):
        words_here = [c for per_word in keyword_clips for c in per_word[split]]
        unknown = [c for per_word in unknown_clips for c in per_word[split]]
        if unknown_fraction is not None:
            # n_unknown / total == unknown_fraction, with total = keywords / (1 - unknown - silence fraction).
            wanted = round(unknown_fraction * len(words_here) / (1 - unknown_fraction - silence_fraction))
            keep = np.random.default_rng([seed, 0, split_idx]).choice(len(unknown), min(wanted, len(unknown)), False)
            unknown = [unknown[i] for i in sorted(keep)]
        num_silence = round(silence_fraction * (len(words_here) + len(unknown)) / (1 - silence_fraction))
        rng = np.random.default_rng([seed, 1, split_idx])
        silence = _silence_clips(num_silence, background_usable, windows, silence_label, rng)
        splits[split] = words_here + unknown + silence
    return _drop_empty_test(splits), list(SPEECH_COMMANDS_12), background


def _drop_empty_test(splits: dict[str, list[Clip]]) -> dict[str, list[Clip]]:
    """Leave out an empty test split, so that readers fall back to val as they do for folders without test/."""
    return {split: clips for split, clips in splits.items() if clips or split != "test"}


# ESC-50 ---------------------------------------------------------------------------------------------------------------


def esc50_splits(
    root: Path | str, *, test_fold: int = 5, val_fold: int | None = 4
) -> tuple[dict[str, list[Clip]], list[str]]:
    """Find the fold-based train/val/test clips of an ESC-50 folder.

    The layout: `root/meta/esc50.csv` (columns filename, fold, target, category, esc10, src_file, take; only the
    first four are read) and the clips in `root/audio/`. Classes are the categories ordered by `target`.

    Args:
        root: Dataset folder, e.g. `data/ESC-50-master`.
        test_fold: Fold (1-5) held out for testing.
        val_fold: Fold (1-5) held out for validation; None validates on the test fold (the usual 5-fold
            cross-validation protocol, which has no separate validation fold).

    Returns:
        `{split: clips}` for "train", "val" and "test", and the 50 class names.

    Raises:
        FileNotFoundError: `esc50.csv` or `audio/` is missing.
        ValueError: A bad fold, a missing column, a malformed row, a row naming a missing file, or targets that do
            not number the categories 0..K-1.
    """
    for key, fold in (("test_fold", test_fold), ("val_fold", val_fold)):
        if fold is not None and fold not in ESC50_FOLDS:
            raise ValueError(f"{key} {fold} is not an ESC-50 fold; choose one of {list(ESC50_FOLDS)}")
    if val_fold == test_fold:
        raise ValueError(f"val_fold and test_fold are both {test_fold}; choose two folds, or val_fold=None")
    root = Path(root)
    csv_path = root / "meta" / "esc50.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"ESC-50 metadata {csv_path} not found; point data.root at an extracted ESC-50 folder (with meta/ and "
            "audio/), or set data.download=true to fetch ESC-50"
        )
    audio_dir = root / "audio"
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"ESC-50 audio folder {audio_dir} not found; it belongs next to {csv_path.parent}")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        for column in ESC50_COLUMNS:
            if column not in (reader.fieldnames or []):
                raise ValueError(
                    f"{csv_path} has no column {column!r} (found {reader.fieldnames}); ESC-50's esc50.csv has "
                    f"the columns {', '.join(ESC50_COLUMNS)}, esc10, src_file, take"
                )
        rows = list(reader)
    present = set(os.listdir(audio_dir))
    names: dict[int, str] = {}
    by_fold: dict[int, list[Clip]] = {fold: [] for fold in ESC50_FOLDS}
    for line, row in enumerate(rows, start=2):
        try:
            fold, target = int(row["fold"]), int(row["target"])
        except (TypeError, ValueError):
            raise ValueError(
                f"{csv_path} line {line}: fold {row['fold']!r} and target {row['target']!r} must be integers"
            ) from None
        if fold not in ESC50_FOLDS:
            raise ValueError(f"{csv_path} line {line}: fold {fold} is not one of {list(ESC50_FOLDS)}")
        if names.setdefault(target, row["category"]) != row["category"]:
            raise ValueError(
                f"{csv_path} line {line}: target {target} is {row['category']!r} here but {names[target]!r} "
                "earlier; each target must name one category"
            )
        if row["filename"] not in present:
            raise ValueError(
                f"{csv_path} line {line} lists {audio_dir / row['filename']}, which does not exist; "
                "restore it or re-extract ESC-50"
            )
        by_fold[fold].append(Clip(audio_dir / row["filename"], target))
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"the targets in {csv_path} must number the categories 0..K-1, found {sorted(names)}")
    val_from = test_fold if val_fold is None else val_fold
    splits = {
        "train": [c for fold, clips in by_fold.items() if fold not in (test_fold, val_from) for c in clips],
        "val": by_fold[val_from],
        "test": by_fold[test_fold],
    }
    for split, clips in splits.items():
        if not clips:
            raise ValueError(f"the {split} split of {csv_path} is empty (test_fold={test_fold}, val_fold={val_fold})")
    return splits, [names[t] for t in range(len(names))]


# Audio folder ---------------------------------------------------------------------------------------------------------


def _scan_audio_folder(path: Path) -> tuple[list[str], dict[str, list[Path]]]:
    """Class names and audio files of an audio folder tree `path/<class>/<audio>` (nested folders allowed)."""
    if not path.is_dir():
        raise FileNotFoundError(
            f"no audio folder at {path}; point data.root at an audio folder tree (root/<class>/<audio>)"
        )
    classes = _class_dirs(path)
    if not classes:
        raise ValueError(f"{path} holds no class folders; an audio folder tree looks like {path}/<class>/<audio>")
    files = {name: _audio_files(path / name) for name in classes}
    for name, found in files.items():
        if not found:
            raise ValueError(
                f"class folder {path / name} holds no audio files (extensions {', '.join(AUDIO_EXTENSIONS)})"
            )
    return classes, files


def audio_folder_splits(
    root: Path | str, *, val_fraction: float = 0.1, seed: int = 0
) -> tuple[dict[str, list[Clip]], list[str]]:
    """Find the train/val[/test] clips of an audio folder tree.

    With `root/train`, the splits are `root/{train,val[,test]}/<class>/<audio>`, which must hold the same class
    folders; otherwise `root/<class>/<audio>` is split per class into train/val by `val_fraction` and `seed` (each
    class with two or more files keeps at least one for each). Folders whose names start with "_" or "." are not
    classes, so a Speech Commands tree reads as one too (ignoring its lists).

    Returns:
        `{split: clips}` (no "test" key without a test split) and the sorted class names.

    Raises:
        FileNotFoundError: `root` (or `root/val` next to `root/train`) does not exist.
        ValueError: A bad `val_fraction`, a folder without classes, a class without audio, or splits that disagree
            on the class folders.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction {val_fraction} must lie in (0, 1)")
    root = Path(root)
    if not (root / "train").is_dir():
        classes, files = _scan_audio_folder(root)
        items = [(path, label) for label, name in enumerate(classes) for path in files[name]]
        train_idx, val_idx = stratified_split([label for _, label in items], val_fraction, seed)
        splits: dict[str, list[Clip]] = {
            "train": [Clip(*items[i]) for i in train_idx],
            "val": [Clip(*items[i]) for i in val_idx],
        }
        return splits, classes

    paths = {split: root / split for split in SPLITS if (root / split).is_dir()}
    if "val" not in paths:
        raise FileNotFoundError(f"{root} has a train/ folder but no val/ folder; add {root / 'val'}/<class>/<audio>")
    found = {split: _scan_audio_folder(path) for split, path in paths.items()}
    classes = found["train"][0]
    for split, (here, _) in found.items():
        if here != classes:
            only_train, only_here = sorted(set(classes) - set(here)), sorted(set(here) - set(classes))
            raise ValueError(
                f"class folders differ between {paths['train']} and {paths[split]}: only in train: {only_train}, "
                f"only in {split}: {only_here}; both need the same class folders"
            )
    splits = {
        split: [Clip(p, label) for label, name in enumerate(classes) for p in files[name]]
        for split, (_, files) in found.items()
    }
    return splits, classes


# Dataset and loader ---------------------------------------------------------------------------------------------------


class AudioClipDataset(Dataset):
    """Clips read as fixed-length float32 mono waveforms, with their labels.

    Nothing is cached: each item is read from disk. Training crops (or places a short clip) at a random position,
    drawn from torch's global RNG, which Lightning seeds in each worker; evaluation centres.

    Args:
        clips: The examples, e.g. one split from a split finder.
        sample_rate: Rate to read at, in Hz (files at other rates are resampled).
        num_samples: Length of every returned waveform.
        train: Random (True) or centred (False) cropping and padding.
        transform: Applied to each waveform [num_samples] after cropping, e.g. waveform augmentation.
        skip_bad_files: Return a `mmattn.data.BadFile` in place of a clip that cannot be decoded, for
            `collate_skipping` to drop and `AudioDataLoader` to report, instead of raising `AudioDecodeError`.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        *,
        sample_rate: int,
        num_samples: int,
        train: bool,
        transform: Callable[[Tensor], Tensor] | None = None,
        skip_bad_files: bool = False,
    ) -> None:
        for key, value in (("sample_rate", sample_rate), ("num_samples", num_samples)):
            if value <= 0:
                raise ValueError(f"{key} must be > 0, got {value}")
        self.clips = list(clips)
        self.sample_rate = sample_rate
        self.num_samples = num_samples
        self.train = train
        self.transform = transform
        self.skip_bad_files = skip_bad_files

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[Tensor, int] | BadFile:
        """Waveform [num_samples] and label of clip `i`, or a `BadFile` (with `skip_bad_files`)."""
        clip = self.clips[i]
        window = {} if clip.offset is None else {"offset": clip.offset, "num_samples": self.num_samples}
        return clip_item(
            lambda: read_audio(clip.path, self.sample_rate, **window),
            clip.label,
            str(clip.path),
            num_samples=self.num_samples,
            train=self.train,
            transform=self.transform,
            skip_bad_files=self.skip_bad_files,
        )


def clip_item(
    load: Callable[[], Tensor],
    label: int,
    name: str,
    *,
    num_samples: int,
    train: bool,
    transform: Callable[[Tensor], Tensor] | None,
    skip_bad_files: bool,
) -> tuple[Tensor, int] | BadFile:
    """One clip as an item: the loaded waveform cropped or padded to `num_samples` (random in training, centred
    otherwise), then `transform`; a `BadFile` naming `name` when it cannot be decoded and `skip_bad_files` is on."""
    try:
        wave = load()
    except AudioDecodeError as e:
        if not skip_bad_files:
            raise
        return BadFile(name, str(e))
    wave = fix_length(wave, num_samples, mode="random" if train else "center")
    if transform is not None:
        wave = transform(wave)
    return wave, label


class AudioDataLoader(SkippingDataLoader):
    """`mmattn.data.SkippingDataLoader` whose warning calls the skipped files audio files."""

    kind = "audio"
