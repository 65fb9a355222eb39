"""Parallel-text datamodules: any `{split}.{src_lang}` / `{split}.{tgt_lang}` folder, and the built-in SCAN demo.

Batches are dicts for `mmattn.lit.Seq2SeqModule`: `src` ids [B, S] and `tgt` ids [B, T] (EOS-terminated, padded with
the pad id), and `ref`, the target lines as written in the files (what BLEU and exact match compare against).
Batches hold up to `max_tokens` padded tokens, from length-bucketed sentences (`mmattn.data.TokenBudgetBatchSampler`).

`mmattn-shards` writes every line pair of every split, in file order; `format="shards"` reads the pairs back from
there and encodes, filters and batches them exactly as it does the files' lines.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from mmattn.data import GeneratedData, TokenBudgetLoaders
from mmattn.data.shard_data import ShardedData, check_format
from mmattn.data.shards import RecordSource
from mmattn.tasks.text.scan import GENERATOR_VERSION, make_scan
from mmattn.tasks.text.tokenizer_dir import TokenizerInRunDir

from .shards import LinePairSource, decode_pair
from .text import filter_pairs, read_parallel
from .tokenizer import PAD_ID, Seq2SeqTokenizer

if TYPE_CHECKING:
    from mmattn.data.streaming import RecordSplit

log = logging.getLogger(__name__)


class ParallelTextDataset(Dataset):
    """Encoded sentence pairs with their reference text: item i = (src ids, tgt ids, target line)."""

    def __init__(self, src: list[list[int]], tgt: list[list[int]], refs: list[str]) -> None:
        self.src, self.tgt, self.refs = src, tgt, refs

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> tuple[list[int], list[int], str]:
        return self.src[i], self.tgt[i], self.refs[i]

    def lengths(self) -> list[int]:
        """Padded cost of each pair for batching: the longer of its two sides."""
        return [max(len(s), len(t)) for s, t in zip(self.src, self.tgt)]


def _content_length(ids: Sequence[int]) -> int:
    """Tokens of an encoded sentence without its EOS (0 for an empty line)."""
    return len(ids) - 1


def collate_pairs(batch: Sequence[tuple[list[int], list[int], str]]) -> dict[str, Any]:
    """Pad a list of pairs into {"src": [B, S], "tgt": [B, T], "ref": list of target lines}."""
    return {
        # Encoded sentences always end with EOS, so no row is empty.
        "src": pad_sequence([torch.tensor(b[0]) for b in batch], batch_first=True, padding_value=PAD_ID),
        "tgt": pad_sequence([torch.tensor(b[1]) for b in batch], batch_first=True, padding_value=PAD_ID),
        "ref": [b[2] for b in batch],
    }


class TranslationDataModule(ShardedData, TokenizerInRunDir, TokenBudgetLoaders, L.LightningDataModule):
    """Line-aligned parallel text `root/{split}.{src_lang}` and `root/{split}.{tgt_lang}` (fairseq/Moses convention).

    A BPE tokenizer is trained on the training split, saved to `tokenizer_dir` (normally the run directory) and
    loaded from there on resume and on other DDP ranks (`TokenizerInRunDir`); the module also stores it in every
    checkpoint.

    Args:
        root: Folder of the parallel files.
        src_lang: Source suffix, e.g. "de".
        tgt_lang: Target suffix, e.g. "en".
        train_split: Name of the training files.
        valid_split: Name of the validation files.
        test_split: Name of the test files; None (or missing files) tests on the validation split.
        tokenizer_dir: Where the tokenizer is saved (and loaded from, when it exists).
        vocab_size: BPE vocabulary size (an upper bound: a small corpus gives fewer).
        joint_vocab: One vocabulary for both sides (needed to share source and target embeddings).
        min_frequency: Least count of a merge.
        lowercase: Lowercase before tokenising.
        max_tokens: Padded tokens per batch (per process), the token budget of a batch.
        max_sentences: Cap on sentences per batch (None = the budget alone).
        max_len: Longest sentence in tokens (EOS included); longer training pairs are dropped and counted, as are
            training pairs with an empty side. Validation and test keep every pair.
        max_ratio: Largest length ratio between the sides of a training pair (None = no limit).
        num_workers: Loader workers (collation only; encoding happens once in `setup`).
        pin_memory: Pin host memory.
        seed: Seed of the batch order.
        format: "files" (the parallel files) or "shards" (the shard folder `shards`, from `mmattn-shards`).
        shards: Shard folder or object-store URL, for format "shards".
    """

    tokenizer_class = Seq2SeqTokenizer
    shard_codec = "parallel_text"
    # Encoded and filtered in file order, as the files are: the index of a pair is the same in both.
    shard_shuffle = False

    def __init__(
        self,
        root: str | Path,
        *,
        src_lang: str,
        tgt_lang: str,
        train_split: str = "train",
        valid_split: str = "valid",
        test_split: str | None = "test",
        tokenizer_dir: str | Path | None = None,
        vocab_size: int = 8000,
        joint_vocab: bool = True,
        min_frequency: int = 2,
        lowercase: bool = False,
        max_tokens: int = 4096,
        max_sentences: int | None = None,
        max_len: int = 256,
        max_ratio: float | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        format: str = "files",
        shards: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.shards = check_format(self, format, shards)
        self.format = format
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if max_len > max_tokens:
            raise ValueError(f"max_len {max_len} exceeds max_tokens {max_tokens}: such a sentence fits in no batch")
        self.root = Path(root).expanduser()
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        self.splits = {"train": train_split, "val": valid_split, "test": test_split}
        self.tokenizer_dir = None if tokenizer_dir is None else Path(tokenizer_dir).expanduser()
        self.tokenizer_options = dict(
            vocab_size=vocab_size, joint=joint_vocab, min_frequency=min_frequency, lowercase=lowercase
        )
        self.vocab_size = vocab_size
        self.max_tokens = max_tokens
        self.max_sentences = max_sentences
        self.max_len = max_len
        self.max_ratio = max_ratio
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self.tokenizer: Seq2SeqTokenizer | None = None
        self.datasets: dict[str, ParallelTextDataset] = {}
        self._stored: dict[str, RecordSplit] | None = None
        self.save_hyperparameters(logger=False)

    # ---------------------------------------------------------------------------------------------- shards

    def shard_identity(self) -> dict[str, Any]:
        """Parallel text: the languages and split names (the folder's own path may differ where shards are read)."""
        return {
            "dataset": "parallel_text",
            "src_lang": self.src_lang,
            "tgt_lang": self.tgt_lang,
            "train_split": self.splits["train"],
            "valid_split": self.splits["val"],
            "test_split": self.splits["test"],
        }

    def prepare_sources(self) -> None:
        """Nothing to prepare for `mmattn-shards`: the files are read as they are (and no tokenizer is trained:
        that happens where the shards are read)."""

    def shard_sources(self) -> tuple[dict[str, list[RecordSource]], list[str]]:
        """Every line pair of every split, in file order (the filters apply when they are read), keyed
        `<file name>:<line>`."""
        sources: dict[str, list[RecordSource]] = {}
        for split in ("train", "val", "test"):
            if self._has_split(split):
                src, tgt = self._read(split)
                name = self.splits[split]
                sources[split] = [LinePairSource(f"{name}:{i + 1}", 0, s, t) for i, (s, t) in enumerate(zip(src, tgt))]
        return sources, []

    def _stored_splits(self) -> dict[str, RecordSplit]:
        from mmattn.data.streaming import load_record_splits

        if self._stored is None:
            self._stored = load_record_splits(str(self.shards), self)
        return self._stored

    # --------------------------------------------------------------------------------------------- reading

    def _has_split(self, split: str) -> bool:
        if self.format == "shards":
            return split in self._stored_splits()
        if split == "test":
            return self.splits["test"] is not None and self._files("test")[0].is_file()
        return True

    def _files(self, split: str) -> tuple[Path, Path]:
        name = self.splits[split]
        return self.root / f"{name}.{self.src_lang}", self.root / f"{name}.{self.tgt_lang}"

    def _where(self, split: str) -> str:
        """The split's source file or shard folder, for messages."""
        if self.format == "shards":
            return self._stored_splits()[split].records.split_dir
        return str(self._files(split)[0])

    def _read(self, split: str) -> tuple[list[str], list[str]]:
        if self.format == "shards":
            records = self._stored_splits()[split].records
            pairs = [decode_pair(records[i]) for i in range(len(records))]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        src, tgt = self._files(split)
        if not src.is_file() and not self.root.is_dir():
            raise FileNotFoundError(
                f"no parallel text at {self.root}; point data.root at a folder with {src.name} and {tgt.name}"
            )
        return read_parallel(src, tgt)

    def build_tokenizer(self) -> Seq2SeqTokenizer:
        """A BPE (joint or one per side) trained on the training pairs."""
        src, tgt = self._read("train")
        log.info(f"training a BPE tokenizer (vocab_size {self.vocab_size}) on {len(src)} training pairs")
        return Seq2SeqTokenizer.train(src, tgt, **self.tokenizer_options)

    def setup(self, stage: str | None = None) -> None:
        """Load (or train) the tokenizer, read, encode and filter every split once."""
        if self.datasets:
            return
        self.setup_tokenizer()
        for split in ("train", "val", "test"):
            if split == "test" and not self._has_split("test"):
                self.datasets["test"] = self.datasets["val"]
                continue
            src_text, tgt_text = self._read(split)
            src = self.tokenizer.encode_src_batch(src_text)
            tgt = self.tokenizer.encode_tgt_batch(tgt_text)
            # Evaluation keeps every pair (its BLEU must cover the whole split); only training pairs are filtered.
            keep, dropped = filter_pairs(
                src,
                tgt,
                src_len=_content_length,
                tgt_len=_content_length,
                max_len=self.max_len - 1 if split == "train" else 10**9,
                max_ratio=self.max_ratio if split == "train" else None,
                min_len=1 if split == "train" else 0,
            )
            if any(dropped.values()):
                log.warning(f"{split} split: dropped {dict(dropped)} of {len(src)} pairs (empty / too long / ratio)")
            if not keep:
                raise ValueError(f"the {split} split at {self._where(split)} has no usable pair; check the files")
            self.datasets[split] = ParallelTextDataset(
                [src[i] for i in keep], [tgt[i] for i in keep], [tgt_text[i] for i in keep]
            )

    def loader_options(self) -> tuple[int, int | None, Any]:
        """The batch budget, the cap on examples per batch and the collate function of the loaders."""
        return self.max_tokens, self.max_sentences, collate_pairs


class SCANDataModule(GeneratedData, TranslationDataModule):
    """The built-in SCAN demo (Lake & Baroni, 2018): commands -> action sequences, generated once under
    `root/scan_<split>/` as parallel text (`.cmd` / `.act`) and read as any other parallel text.

    Args:
        root: Data directory.
        split: "simple" (random 80/20), "length" (train on outputs of at most 22 actions) or "add_jump" (train
            without "jump" but for the command alone; test on every other command with it).
        generate: Generate the files when missing; if False, a missing folder is an error.
        data_seed: Seed of the split.
        **kwargs: Options of `TranslationDataModule` (vocab_size, max_tokens, tokenizer_dir, ...).
    """

    def __init__(
        self, root: str | Path, *, split: str = "simple", generate: bool = True, data_seed: int = 0, **kwargs: Any
    ) -> None:
        kwargs.setdefault("src_lang", "cmd")
        kwargs.setdefault("tgt_lang", "act")
        super().__init__(Path(root).expanduser() / f"scan_{split}", **kwargs)
        self.data_root = Path(root).expanduser()
        self.split = split
        self.generate = generate
        self.data_seed = data_seed
        self.save_hyperparameters(logger=False)

    def shard_identity(self) -> dict[str, Any]:
        """The generator's version, split and seed: they fix every pair."""
        return {"dataset": "scan", "generator": GENERATOR_VERSION, "split": self.split, "data_seed": self.data_seed}

    def prepare_sources(self) -> None:
        """Write the SCAN files when missing."""
        self.ensure_data()

    def ensure_data(self) -> None:
        """Write the SCAN files when missing (write-once, process-safe); nothing when reading shards."""
        if self.format == "shards":
            return
        if self.generate:
            make_scan(self.data_root, split=self.split, seed=self.data_seed)
        elif not self.root.is_dir():
            raise FileNotFoundError(f"SCAN data not found at {self.root}; pass data.generate=true to create it")
