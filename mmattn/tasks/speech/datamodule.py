"""Speech-recognition data: the dataset, the batches, and the datamodule base that JSON-lines manifests, the
LibriSpeech layout and the built-in spoken-digits demo share (`mmattn.tasks.speech.datamodules`).

Batches are dicts for `mmattn.lit.Seq2SeqModule`: `src` = `{"audio": [B, T] waveforms, "audio_lengths": [B]}` (the
input of `mmattn.tasks.speech.SpeechFrontEnd`, which computes the features in the model), `tgt` = transcript ids [B, L]
(EOS-terminated, padded) and `ref` = the normalised transcripts that WER/CER compare against. Batches hold up to
`max_frames` padded 10 ms feature frames of duration-bucketed utterances (`mmattn.data.TokenBudgetBatchSampler`
with frames as tokens), so short clips make big batches and little compute goes to padding.

`mmattn-shards` writes every utterance's audio file as it is, with its id, duration and transcript in the split's
`items.jsonl`; `format="shards"` reads those back without touching the audio (the tokenizer, the duration filter and
the batch lengths come from them) and then each clip by index, so batches, items and their order are the files'.
"""

from __future__ import annotations

import logging
import math
import os
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset, Subset

from mmattn.data import TokenBudgetLoaders
from mmattn.data.shard_data import ShardedData, check_format
from mmattn.data.shards import FileSource, Record, RecordSource
from mmattn.tasks.audio.augment import WaveAugment
from mmattn.tasks.audio.io import decode_audio, read_audio
from mmattn.tasks.text.bpe import EOS_ID, PAD_ID, UNK_ID
from mmattn.tasks.text.tokenizer import TextTokenizer
from mmattn.tasks.text.tokenizer_dir import TokenizerInRunDir

from .corpus import Utterance, keep_short
from .frontend import collate_audio

if TYPE_CHECKING:
    from mmattn.data.streaming import RecordSplit

__all__ = ["SpeechDataModule", "SpeechDataset", "collate_speech", "normalize_transcript"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# Feature frames per second (10 ms hops): the unit of `max_frames` and of the batching lengths.
FRAMES_PER_SECOND = 100


def normalize_transcript(text: str, lowercase: bool) -> str:
    """The form the model learns and WER scores: whitespace runs collapsed, optionally lowercased."""
    text = " ".join(text.split())
    return text.lower() if lowercase else text


class SpeechDataset(Dataset):
    """Utterances with encoded transcripts: item i = (waveform [T] at `sample_rate`, target ids, reference text).

    The audio of utterance i is its file, or with `records` (read from shards) the stored bytes of that file,
    `records[i]`: the same decoder reads both, and the same augmentation follows.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        targets: Sequence[list[int]],
        refs: Sequence[str],
        *,
        sample_rate: int,
        augment: WaveAugment | None = None,
        records: Dataset | None = None,
    ) -> None:
        self.utterances, self.targets, self.refs = list(utterances), list(targets), list(refs)
        self.sample_rate = sample_rate
        self.augment = augment
        self.records = records

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int) -> tuple[Tensor, list[int], str]:
        if self.records is None:
            wave = read_audio(self.utterances[i].path, self.sample_rate)
        else:
            record: Record = self.records[i]
            wave = decode_audio(record.data, self.sample_rate, name=record.name)
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


class SpeechDataModule(ShardedData, TokenizerInRunDir, TokenBudgetLoaders, L.LightningDataModule):
    """Base of the speech datamodules: subclasses say where the utterances of each split are (`read_split`) and what
    identifies them (`shard_identity`).

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
        format: "files" (the audio files the splits list) or "shards" (the shard folder `shards`, from
            `mmattn-shards`).
        shards: Shard folder or object-store URL, for format "shards".
    """

    tokenizer_class = TextTokenizer
    shard_codec = "speech"
    # Read by index under the token-budget sampler: kept in the source order, an index is the same utterance.
    shard_shuffle = False

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
        format: str = "files",
        shards: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.shards = check_format(self, format, shards)
        self.format = format
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
        self._stored: dict[str, RecordSplit] | None = None
        self._records: dict[str, Dataset] = {}

    # -------------------------------------------------------------------------------------------- subclasses

    @abstractmethod
    def read_split(self, split: str, max_duration: float | None) -> tuple[list[Utterance], int] | None:
        """The utterances of `split` ("train", "val", "test") and how many were longer than `max_duration`;
        None when the split does not exist (only "test" may be missing: validation then serves as test)."""

    # -------------------------------------------------------------------------------------------------- setup

    def prepare_sources(self) -> None:
        """Nothing to prepare for `mmattn-shards`: the audio files are read as they are (and no tokenizer is
        trained: that happens where the shards are read)."""

    def shard_sources(self) -> tuple[dict[str, list[RecordSource]], list[str]]:
        """Every utterance of every split, longer ones too (`max_duration` applies when they are read), in the
        split's order: its audio file's bytes, keyed by the file's path under the folder common to all, with its id,
        duration and transcript as metadata."""
        found = {split: self.read_split(split, None) for split in SPLITS}
        utterances = {split: f[0] for split, f in found.items() if f is not None}
        base = os.path.commonpath([str(u.path.parent) for split in utterances.values() for u in split])
        sources: dict[str, list[RecordSource]] = {}
        for split, listed in utterances.items():
            sources[split] = [
                FileSource(
                    Path(os.path.relpath(u.path, base)).as_posix(),
                    0,
                    str(u.path),
                    meta={"id": u.id, "duration": u.duration, "text": u.text},
                )
                for u in listed
            ]
        return sources, []

    def _stored_split(self, split: str, max_duration: float | None) -> tuple[list[Utterance], int] | None:
        """A split of the shards: its utterances from the stored metadata (path = the record's key), filtered by
        `max_duration` as the files are; the records of the kept ones are kept for the dataset."""
        from mmattn.data.streaming import load_record_splits

        if self._stored is None:
            self._stored = load_record_splits(str(self.shards), self)
        stored = self._stored.get(split)
        if stored is None:
            return None
        utterances = [Utterance(i["id"], Path(i["key"]), float(i["duration"]), i["text"]) for i in stored.items]
        kept = keep_short(utterances, max_duration, stored.records.split_dir)
        self._records[split] = Subset(stored.records, kept)
        return [utterances[i] for i in kept], len(utterances) - len(kept)

    def _split(self, split: str) -> tuple[list[Utterance], int] | None:
        limit = self.max_duration if split == "train" or self.filter_eval else None
        found = self._stored_split(split, limit) if self.format == "shards" else self.read_split(split, limit)
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
                records=self._records.get(split),
            )

    def loader_options(self) -> tuple[int, int | None, Any]:
        """The batch budget, the cap on examples per batch and the collate function of the loaders."""
        return self.max_frames, self.max_utterances, collate_speech
