"""Spoken digit strings paired with their text, for contrastive audio <-> text training (the `clap_demo` data).

The clips, manifests, tokenizer and transcript normalisation are the speech demo's (`SpokenDigitsDataModule`); only
the batches differ. Each batch is a dict:

- `"audio"`: `{"audio": [B, T] float waveforms zero-padded, "audio_lengths": [B] long}`, the input of
  `mmattn.tasks.speech.SpeechFrontEnd` (`collate_audio`);
- `"text"`: [B, L] long, the normalised transcript's ids followed by EOS, padded with `pad_id`;
- `"match"`: [B] long, the index of the transcript among the split's distinct transcripts (`dataset.texts`), so two
  clips of the same words share it and retrieving either counts as correct.

Batches have a fixed size (contrastive negatives are the rest of the batch): the last incomplete training batch is
dropped, validation and test keep a fixed order. Under several processes each loader shards itself with a
`DistributedSampler`, whatever `trainer.use_distributed_sampler` says; as with any `DistributedSampler`, evaluation
then repeats a few examples to give every rank the same number.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from mmattn.data import train_loader
from mmattn.data.resumable import eval_sampler
from mmattn.tasks.text import encode as text_ids
from mmattn.tasks.text.bpe import PAD_ID

from .datamodule import SpeechDataset, normalize_transcript
from .datamodules import SpokenDigitsDataModule
from .frontend import collate_audio

__all__ = ["SpokenTextDataModule", "SpokenTextDataset", "collate_spoken_text"]

log = logging.getLogger(__name__)


class SpokenTextDataset(Dataset):
    """A `SpeechDataset` whose items carry the transcript's match id: item i = (waveform [T], text ids, match id).

    `texts` lists the split's distinct normalised transcripts in sorted order; `match[i]` indexes it, so
    `texts[match[i]] == refs[i]`.
    """

    def __init__(self, speech: SpeechDataset) -> None:
        self.speech = speech
        self.refs = list(speech.refs)
        self.texts = sorted(set(self.refs))
        index = {text: i for i, text in enumerate(self.texts)}
        self.match = [index[ref] for ref in self.refs]

    def __len__(self) -> int:
        return len(self.speech)

    def __getitem__(self, i: int) -> tuple[Tensor, list[int], int]:
        wave, ids, _ = self.speech[i]
        return wave, ids, self.match[i]


def collate_spoken_text(batch: Sequence[tuple[Tensor, list[int], int]]) -> dict[str, Any]:
    """Pad items into {"audio": {"audio", "audio_lengths"}, "text": [B, L], "match": [B]}."""
    return {
        "audio": collate_audio([b[0] for b in batch]),
        "text": pad_sequence([torch.tensor(b[1]) for b in batch], batch_first=True, padding_value=PAD_ID),
        "match": torch.tensor([b[2] for b in batch], dtype=torch.long),
    }


class SpokenTextDataModule(SpokenDigitsDataModule):
    """The speech demo's spoken digit strings with their text, in fixed-size batches for a dual encoder.

    After `setup()`: `tokenizer` (the speech demo's BPE, saved in `tokenizer_dir`), `pad_id`, `datasets[split]`
    (`SpokenTextDataset`s) and `encode_texts` for text queries.

    Args:
        root: Data directory (the clips live in `root/spoken_digits`, shared with the speech demo).
        batch_size: Pairs per batch (per process under DDP).
        drop_last: Drop the last incomplete training batch, so every step has the same number of negatives.
        persistent_workers: Keep loader workers alive between epochs (only when `num_workers > 0`).
        **kwargs: Options of `SpokenDigitsDataModule` (counts, backend, tokenizer, sample rate, augmentation, ...);
            its frame budget (`max_frames`, `max_utterances`) is not used here.

    Raises:
        ValueError: `batch_size` < 1, or a bad option of `SpokenDigitsDataModule`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        batch_size: int = 64,
        drop_last: bool = True,
        persistent_workers: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, **kwargs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.persistent_workers = persistent_workers and self.num_workers > 0
        self.pad_id = PAD_ID

    def setup(self, stage: str | None = None) -> None:
        """Set up the speech demo's splits and tokenizer, then give each transcript its match id."""
        super().setup(stage)
        wrapped: dict[int, SpokenTextDataset] = {}
        for split, dataset in self.datasets.items():
            if isinstance(dataset, SpeechDataset):
                # The test split may be the validation split itself: wrap it once.
                self.datasets[split] = wrapped.setdefault(id(dataset), SpokenTextDataset(dataset))

    def encode_texts(self, texts: Sequence[str]) -> Tensor:
        """Ids [B, L] of `texts` as the batches hold them: normalised, EOS-terminated, padded with `pad_id`.

        Characters outside the tokenizer become `<unk>`; they are counted in a warning, not refused.

        Raises:
            RuntimeError: Before `setup()`.
            ValueError: `texts` is one string or empty.
        """
        if self.tokenizer is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before encode_texts")
        ids, _ = text_ids.encode_texts(
            self.tokenizer, texts, normalize=lambda text: normalize_transcript(text, self.lowercase)
        )
        return ids

    def _loader(self, split: str, train: bool) -> DataLoader:
        if not self.datasets:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders are requested")
        dataset = self.datasets[split]
        trainer = getattr(self, "trainer", None)
        options = {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
            "collate_fn": collate_spoken_text,
        }
        if train:
            return train_loader(dataset, trainer, batch_size=self.batch_size, drop_last=self.drop_last, **options)
        # Built here rather than injected by Lightning, so the demo also shards with use_distributed_sampler off.
        return DataLoader(dataset, batch_size=self.batch_size, sampler=eval_sampler(dataset, trainer), **options)

    def train_dataloader(self) -> DataLoader:
        """Shuffled fixed-size training batches, the last incomplete one dropped."""
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in file order."""
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches in file order."""
        return self._loader("test", train=False)
