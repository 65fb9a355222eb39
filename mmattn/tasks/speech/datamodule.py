"""Speech-recognition datamodules: JSON-lines manifests, the LibriSpeech layout, and the built-in spoken-digits demo.

Batches are dicts for `mmattn.lit.Seq2SeqModule`: `src` = `{"audio": [B, T] waveforms, "audio_lengths": [B]}` (the
input of `mmattn.tasks.speech.SpeechFrontEnd`, which computes the features in the model), `tgt` = transcript ids [B, L]
(EOS-terminated, padded) and `ref` = the normalised transcripts that WER/CER compare against. Batches hold up to
`max_frames` padded 10 ms feature frames of duration-bucketed utterances (`mmattn.data.TokenBudgetBatchSampler`
with frames as tokens), so short clips make big batches and little compute goes to padding.
"""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from mmattn.data import GeneratedData, TokenBudgetLoaders
from mmattn.tasks.audio.augment import WaveAugment
from mmattn.tasks.audio.io import read_audio
from mmattn.tasks.text.bpe import EOS_ID, PAD_ID, UNK_ID
from mmattn.tasks.text.tokenizer import TextTokenizer
from mmattn.tasks.text.tokenizer_dir import TokenizerInRunDir

from .corpus import Utterance, read_librispeech, read_manifest
from .digits import make_spoken_digits
from .frontend import collate_audio

__all__ = [
    "LibriSpeechDataModule",
    "ManifestDataModule",
    "SpeechDataModule",
    "SpeechDataset",
    "SpokenDigitsDataModule",
    "collate_speech",
]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# Feature frames per second (10 ms hops): the unit of `max_frames` and of the batching lengths.
FRAMES_PER_SECOND = 100


def normalize_transcript(text: str, lowercase: bool) -> str:
    """The form the model learns and WER scores: whitespace runs collapsed, optionally lowercased."""
    text = " ".join(text.split())
    return text.lower() if lowercase else text


class SpeechDataset(Dataset):
    """Utterances with encoded transcripts: item i = (waveform [T] at `sample_rate`, target ids, reference text)."""

    def __init__(
        self,
        utterances: Sequence[Utterance],
        targets: Sequence[list[int]],
        refs: Sequence[str],
        *,
        sample_rate: int,
        augment: WaveAugment | None = None,
    ) -> None:
        self.utterances, self.targets, self.refs = list(utterances), list(targets), list(refs)
        self.sample_rate = sample_rate
        self.augment = augment

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int) -> tuple[Tensor, list[int], str]:
        wave = read_audio(self.utterances[i].path, self.sample_rate)
        if self.augment is not None:
            wave = self.augment(wave)
        return wave, self.targets[i], self.refs[i]

    def lengths(self) -> list[int]:
        """Cost of each utterance for batching: its feature frames (from the listed duration)."""
        return [max(1, math.ceil(u.duration * FRAMES_PER_SECOND)) for u in self.utterances]


def collate_speech(batch: Sequence[tuple[Tensor, list[int], str]]) -> dict[str, Any]:
    """Pad a list of items into {"src": {"audio", "audio_lengths"}, "tgt": [B, L], "ref": list of texts}."""
    return {
        "src": collate_audio([b[0] for b in batch]),
        # Every target ends with EOS, so no row is empty.
        "tgt": pad_sequence([torch.tensor(b[1]) for b in batch], batch_first=True, padding_value=PAD_ID),
        "ref": [b[2] for b in batch],
    }


class SpeechDataModule(TokenizerInRunDir, TokenBudgetLoaders, L.LightningDataModule):
    """Base of the speech datamodules: subclasses say where the utterances of each split are (`read_split`).

    A BPE tokenizer is trained on the training transcripts, saved in `tokenizer_dir` and loaded from there on resume
    and on other DDP ranks (`TokenizerInRunDir`); `Seq2SeqModule` also stores it in every checkpoint. Characters
    outside it become `<unk>` and are counted.

    Args:
        tokenizer_dir: Where the tokenizer is saved (and loaded from, when it exists).
        vocab_size: BPE vocabulary size (an upper bound: few distinct transcripts give fewer).
        min_frequency: Least count of a merge.
        lowercase: Lowercase transcripts (for training and for scoring).
        sample_rate: Rate the audio is read at (the model's front end must use the same).
        max_duration: Longest training clip in seconds; longer ones are dropped and counted. Evaluation keeps every
            clip unless `filter_eval`.
        filter_eval: Apply `max_duration` to validation and test too.
        max_frames: Padded 10 ms frames per batch (per process), the frame budget of a batch.
        max_utterances: Cap on utterances per batch (None = the budget alone).
        gain_db: (low, high) random gain in training; None = off.
        noise_dir: Folder of background-noise recordings mixed into training clips with `noise_prob`.
        noise_prob: Probability of mixing noise into a training clip.
        snr_db: (low, high) SNR of that mix.
        num_workers: Loader workers (they read and decode audio).
        pin_memory: Pin host memory.
        seed: Seed of the batch order.
    """

    tokenizer_class = TextTokenizer

    def __init__(
        self,
        *,
        tokenizer_dir: str | Path | None = None,
        vocab_size: int = 1000,
        min_frequency: int = 2,
        lowercase: bool = True,
        sample_rate: int = 16000,
        max_duration: float | None = 20.0,
        filter_eval: bool = False,
        max_frames: int = 20000,
        max_utterances: int | None = None,
        gain_db: Sequence[float] | None = None,
        noise_dir: str | Path | None = None,
        noise_prob: float = 0.0,
        snr_db: Sequence[float] = (10.0, 30.0),
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        if max_duration is not None and max_duration * FRAMES_PER_SECOND > max_frames:
            raise ValueError(
                f"max_duration {max_duration} s ({max_duration * FRAMES_PER_SECOND:.0f} frames) exceeds max_frames "
                f"{max_frames}: such a clip fits in no batch; raise data.max_frames or lower data.max_duration"
            )
        self.tokenizer_dir = None if tokenizer_dir is None else Path(tokenizer_dir).expanduser()
        self.tokenizer_options = dict(vocab_size=vocab_size, min_frequency=min_frequency, lowercase=lowercase)
        self.lowercase = lowercase
        self.sample_rate = sample_rate
        self.max_duration = max_duration
        self.filter_eval = filter_eval
        self.max_frames = max_frames
        self.max_utterances = max_utterances
        noise_files: list[Path] = []
        if noise_dir is not None:
            noise_files = sorted(p for p in Path(noise_dir).expanduser().rglob("*") if p.suffix in (".wav", ".flac"))
            if not noise_files:
                raise FileNotFoundError(f"data.noise_dir {noise_dir} holds no .wav or .flac files")
        self.augment = (
            WaveAugment(
                gain_db=gain_db, noise_files=noise_files, noise_prob=noise_prob, snr_db=snr_db, sample_rate=sample_rate
            )
            if gain_db is not None or noise_prob > 0
            else None
        )
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self.tokenizer: TextTokenizer | None = None
        self.datasets: dict[str, SpeechDataset] = {}

    # -------------------------------------------------------------------------------------------- subclasses

    @abstractmethod
    def read_split(self, split: str, max_duration: float | None) -> tuple[list[Utterance], int] | None:
        """The utterances of `split` ("train", "val", "test") and how many were longer than `max_duration`;
        None when the split does not exist (only "test" may be missing: validation then serves as test)."""

    # -------------------------------------------------------------------------------------------------- setup

    def _split(self, split: str) -> tuple[list[Utterance], int] | None:
        limit = self.max_duration if split == "train" or self.filter_eval else None
        found = self.read_split(split, limit)
        if found is not None and found[1]:
            log.warning(
                f"{split} split: dropped {found[1]} clip(s) longer than data.max_duration={self.max_duration} s "
                f"({len(found[0])} kept)"
            )
        return found

    def build_tokenizer(self) -> TextTokenizer:
        """A BPE trained on the training transcripts."""
        train = self._split("train")
        if train is None:
            raise ValueError(f"{type(self).__name__} found no train split to train its tokenizer on")
        utterances = train[0]
        log.info(
            f"training a BPE tokenizer (vocab_size {self.tokenizer_options['vocab_size']}) on {len(utterances)} "
            "training transcripts"
        )
        return TextTokenizer.train([u.text for u in utterances], **self.tokenizer_options)

    def setup(self, stage: str | None = None) -> None:
        """Load (or train) the tokenizer, read every split's list and encode its transcripts once."""
        if self.datasets:
            return
        found = {split: self._split(split) for split in SPLITS}
        if found["train"] is None or found["val"] is None:
            raise ValueError(f"{type(self).__name__} found no {'train' if found['train'] is None else 'val'} split")
        self.setup_tokenizer()
        for split in SPLITS:
            if found[split] is None:
                self.datasets[split] = self.datasets["val"]
                continue
            utterances = found[split][0]
            refs = [normalize_transcript(u.text, self.lowercase) for u in utterances]
            targets = [ids + [EOS_ID] for ids in self.tokenizer.encode_batch(refs)]
            unknown = [sum(i == UNK_ID for i in ids) for ids in targets]
            if any(unknown):
                first = next(u for u, n in zip(utterances, unknown) if n)
                log.warning(
                    f"{split} split: {sum(unknown)} character run(s) in {sum(n > 0 for n in unknown)} transcript(s) "
                    f"are outside the tokenizer's vocabulary and became <unk> (first: {first.id})"
                )
            self.datasets[split] = SpeechDataset(
                utterances,
                targets,
                refs,
                sample_rate=self.sample_rate,
                augment=self.augment if split == "train" else None,
            )

    def loader_options(self) -> tuple[int, int | None, Any]:
        """The batch budget, the cap on examples per batch and the collate function of the loaders."""
        return self.max_frames, self.max_utterances, collate_speech


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

    def ensure_data(self) -> None:
        """Synthesise the utterances when missing (write-once, process-safe)."""
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
