"""The speech datamodules of each source: JSON-lines manifests, the LibriSpeech layout, and the built-in
spoken-digits demo (read through its manifests). What they share is `mmattn.tasks.speech.datamodule.SpeechDataModule`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmattn.data import GeneratedData

from .corpus import Utterance, read_librispeech, read_manifest
from .datamodule import SpeechDataModule
from .digits import GENERATOR_VERSION, make_spoken_digits

__all__ = ["LibriSpeechDataModule", "ManifestDataModule", "SpokenDigitsDataModule"]


class ManifestDataModule(SpeechDataModule):
    """Utterances listed in JSON-lines manifests (`{"audio": path, "duration": seconds, "text": transcript}` a line;
    relative paths are relative to the manifest; NeMo's `audio_filepath` is accepted for `audio`).

    Args:
        train_manifest: Manifest of the training split.
        valid_manifest: Manifest of the validation split.
        test_manifest: Manifest of the test split (None: validation is the test split).
        **kwargs: Options of `SpeechDataModule`.
    """

    def __init__(
        self,
        train_manifest: str | Path,
        valid_manifest: str | Path,
        test_manifest: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.manifests: Mapping[str, Path | None] = {
            "train": Path(train_manifest).expanduser(),
            "val": Path(valid_manifest).expanduser(),
            "test": None if test_manifest is None else Path(test_manifest).expanduser(),
        }

    def shard_identity(self) -> dict[str, Any]:
        """Manifests: whether a test split is listed (their own paths may differ where shards are read)."""
        return {"dataset": "speech_manifest", "test": self.manifests["test"] is not None}

    def read_split(self, split: str, max_duration: float | None) -> tuple[list[Utterance], int] | None:
        """Read the split's manifest."""
        path = self.manifests[split]
        if path is None:
            return None
        if not path.is_file():
            key = {"train": "train_manifest", "val": "valid_manifest", "test": "test_manifest"}[split]
            raise FileNotFoundError(f"manifest {path} does not exist; point data.{key} at a JSON-lines manifest")
        return read_manifest(path, max_duration=max_duration)


class LibriSpeechDataModule(SpeechDataModule):
    """LibriSpeech as unpacked from openslr.org/12: `root/<subset>/<speaker>/<chapter>/*.flac` + `*.trans.txt`
    (or under `root/LibriSpeech/`). Nothing is downloaded.

    Args:
        root: Folder holding the subset folders.
        train_subsets: Subsets trained on, e.g. ["train-clean-100"] or all three training subsets (960 h).
        valid_subset: Validation subset.
        test_subset: Test subset (None: validation is the test split).
        **kwargs: Options of `SpeechDataModule`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        train_subsets: Sequence[str] = ("train-clean-100",),
        valid_subset: str = "dev-clean",
        test_subset: str | None = "test-clean",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(train_subsets, str) or not train_subsets:
            raise ValueError(f"data.train_subsets must be a non-empty list of subsets, got {train_subsets!r}")
        self.root = Path(root).expanduser()
        test = [test_subset] if test_subset else []
        self.subsets = {"train": list(train_subsets), "val": [valid_subset], "test": test}

    def shard_identity(self) -> dict[str, Any]:
        """The subsets of each split."""
        return {
            "dataset": "librispeech",
            "train_subsets": self.subsets["train"],
            "valid_subset": self.subsets["val"][0],
            "test_subset": self.subsets["test"][0] if self.subsets["test"] else None,
        }

    def read_split(self, split: str, max_duration: float | None) -> tuple[list[Utterance], int] | None:
        """Read the split's subsets."""
        if not self.subsets[split]:
            return None
        utterances: list[Utterance] = []
        dropped = 0
        for subset in self.subsets[split]:
            found, n = read_librispeech(self.root, subset, max_duration=max_duration)
            utterances += found
            dropped += n
        return utterances, dropped


class SpokenDigitsDataModule(GeneratedData, ManifestDataModule):
    """The built-in speech demo: spoken digit strings ("three seven one") synthesised once with espeak-ng (or, where
    it cannot be had, dialled as DTMF tones, with a warning) under `root/spoken_digits/`, read through its manifests.

    Args:
        root: Data directory.
        generate: Generate the files when missing; if False, a missing folder is an error.
        counts: Utterances per split, {"train": n, "valid": n, "test": n}.
        min_digits: Shortest digit string.
        max_digits: Longest digit string.
        data_seed: Seed of the synthesis.
        backend: "auto" (espeak-ng if installed, else DTMF), "espeak" or "dtmf".
        **kwargs: Options of `SpeechDataModule`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        generate: bool = True,
        counts: Mapping[str, int] | None = None,
        min_digits: int = 3,
        max_digits: int = 7,
        data_seed: int = 0,
        backend: str = "auto",
        **kwargs: Any,
    ) -> None:
        self.data_root = Path(root).expanduser() / "spoken_digits"
        split_files = {split: self.data_root / f"{split}.jsonl" for split in ("train", "valid", "test")}
        super().__init__(split_files["train"], split_files["valid"], split_files["test"], **kwargs)
        self.generate = generate
        self.counts = dict(counts or {"train": 3000, "valid": 200, "test": 200})
        self.min_digits, self.max_digits = min_digits, max_digits
        self.data_seed = data_seed
        self.backend = backend

    def shard_identity(self) -> dict[str, Any]:
        """The synthesis's version and settings: they fix every utterance."""
        return {
            "dataset": "spoken_digits",
            "generator": GENERATOR_VERSION,
            "counts": self.counts,
            "min_digits": self.min_digits,
            "max_digits": self.max_digits,
            "data_seed": self.data_seed,
            "backend": self.backend,
            "sample_rate": self.sample_rate,
        }

    def prepare_sources(self) -> None:
        """Synthesise the utterances when missing."""
        self.ensure_data()

    def ensure_data(self) -> None:
        """Synthesise the utterances when missing (write-once, process-safe); nothing when reading shards."""
        if self.format == "shards":
            return
        if self.generate:
            make_spoken_digits(
                self.data_root,
                counts=self.counts,
                min_digits=self.min_digits,
                max_digits=self.max_digits,
                seed=self.data_seed,
                sample_rate=self.sample_rate,
                backend=self.backend,
            )
        elif not self.data_root.is_dir():
            raise FileNotFoundError(
                f"spoken digits not found at {self.data_root}; pass data.generate=true to create them"
            )
