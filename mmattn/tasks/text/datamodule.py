"""Plain-text language-model data: any folder of .txt files, tokenized (BPE or bytes) and packed into fixed blocks.

Each document becomes `bos ids eos`; the documents of a split are concatenated into one token stream, and the stream
is cut into blocks of `block_size + 1` tokens (consecutive blocks share one token, so every position of the stream is
a training target once; a last partial block is dropped). Batches are `{"ids": [B, block_size + 1]}` for
`mmattn.lit.LanguageModelModule`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mmattn.data import GeneratedData, ensure_dataset

from .bpe import BOS_ID, EOS_ID, UNK_ID
from .scan import interpret, scan_splits
from .tokenizer import TextTokenizer
from .tokenizer_dir import TokenizerInRunDir

log = logging.getLogger(__name__)

__all__ = [
    "PackedBlocks",
    "SCANCommandsDataModule",
    "TextFolderDataModule",
    "is_scan_command",
    "make_scan_commands",
    "read_documents",
]

DOCUMENT_MODES = ("line", "paragraph", "file")
SPLIT_DIRS = {"train": ("train",), "val": ("valid", "val", "validation"), "test": ("test",)}


def _text_files(folder: Path) -> list[Path]:
    """The .txt files under `folder` (recursively, hidden entries skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if f.endswith(".txt") and not f.startswith(".")]
    return sorted(found)


def read_documents(files: Sequence[Path], documents: str) -> list[str]:
    """The documents of UTF-8 text files: each non-blank line, each blank-line separated paragraph, or each file.

    Raises:
        ValueError: An unknown `documents` mode, or a file that is not UTF-8 (the message names it).
    """
    if documents not in DOCUMENT_MODES:
        raise ValueError(f"documents must be one of {list(DOCUMENT_MODES)}, got {documents!r}")
    out: list[str] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path} is not valid UTF-8 (byte {e.start}); convert it, e.g. `iconv -t utf-8`") from e
        if documents == "file":
            parts = [text]
        elif documents == "paragraph":
            parts = [p for p in text.replace("\r\n", "\n").split("\n\n")]
        else:
            parts = text.replace("\r\n", "\n").split("\n")
        out += [p.strip("\n") for p in parts if p.strip()]
    return out


class PackedBlocks(Dataset):
    """Blocks of `block_size + 1` tokens cut from one token stream; item i = `{"ids": LongTensor[block_size + 1]}`.

    Raises:
        ValueError: The stream is shorter than one block.
    """

    def __init__(self, stream: np.ndarray, block_size: int, split: str = "train") -> None:
        if len(stream) < block_size + 1:
            raise ValueError(
                f"the {split} split has {len(stream)} tokens, fewer than one block of block_size + 1 = "
                f"{block_size + 1}; lower data.block_size or add text"
            )
        self.stream = torch.from_numpy(np.asarray(stream, dtype=np.int64))
        self.block_size = block_size

    def __len__(self) -> int:
        return (len(self.stream) - 1) // self.block_size

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        start = i * self.block_size
        return {"ids": self.stream[start : start + self.block_size + 1]}


class TextFolderDataModule(TokenizerInRunDir, L.LightningDataModule):
    """Language-model data from a folder of .txt files.

    Layout: `root/train/`, `root/valid/` (or `val/`, `validation/`) and optionally `root/test/`, each holding .txt
    files (nested folders allowed); or just .txt files anywhere under `root`, whose documents are then split into
    train/val by `val_fraction` and `seed`. Without a test split, testing reads the validation split.

    The tokenizer is a BPE trained on the training documents or the byte-level one, saved in `tokenizer_dir` and
    loaded from there on resume and on other DDP ranks (`TokenizerInRunDir`). Characters outside a BPE vocabulary
    become `<unk>` and are counted in the log for each split.

    Args:
        root: The text folder.
        tokenizer: "bpe" or "bytes".
        vocab_size: BPE vocabulary size (an upper bound: a small corpus gives fewer); "bytes" ignores it (260 ids).
        min_frequency: BPE: least count of a merge.
        lowercase: BPE: lowercase before tokenising.
        tokenizer_dir: Where the tokenizer is saved and loaded from (normally the run directory).
        documents: What one document is: "line", "paragraph" (blank-line separated) or "file".
        block_size: Tokens a block holds as model input (the model's context_length at most).
        batch_size: Blocks per batch (per process).
        val_fraction: Share of documents held out when `root` has no split folders.
        seed: Seed of that split.
        num_workers: Loader workers.
        pin_memory: Pin host memory.

    Raises:
        ValueError: A bad option (named in the message).
    """

    tokenizer_class = TextTokenizer

    def __init__(
        self,
        root: str | Path,
        *,
        tokenizer: Literal["bpe", "bytes"] = "bpe",
        vocab_size: int = 8000,
        min_frequency: int = 2,
        lowercase: bool = False,
        tokenizer_dir: str | Path | None = None,
        documents: Literal["line", "paragraph", "file"] = "paragraph",
        block_size: int = 256,
        batch_size: int = 32,
        val_fraction: float = 0.05,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if tokenizer not in ("bpe", "bytes"):
            raise ValueError(f"data.tokenizer must be 'bpe' or 'bytes', got {tokenizer!r}")
        if documents not in DOCUMENT_MODES:
            raise ValueError(f"data.documents must be one of {list(DOCUMENT_MODES)}, got {documents!r}")
        if block_size < 1 or batch_size < 1:
            raise ValueError(f"block_size ({block_size}) and batch_size ({batch_size}) must be >= 1")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        self.root = Path(root).expanduser()
        self.tokenizer_kind = tokenizer
        self.vocab_size = 260 if tokenizer == "bytes" else int(vocab_size)
        self.tokenizer_options = dict(vocab_size=self.vocab_size, min_frequency=min_frequency, lowercase=lowercase)
        self.tokenizer_dir = None if tokenizer_dir is None else Path(tokenizer_dir).expanduser()
        self.documents = documents
        self.block_size = block_size
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.tokenizer: TextTokenizer | None = None
        self.datasets: dict[str, PackedBlocks] = {}
        self.save_hyperparameters(logger=False)

    # --------------------------------------------------------------------------------------------- reading

    def _split_dir(self, split: str) -> Path | None:
        for name in SPLIT_DIRS[split]:
            if (self.root / name).is_dir():
                return self.root / name
        return None

    def _read_splits(self) -> dict[str, list[str]]:
        """Documents of train, val and (if present) test."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"no text folder at {self.root}; point data.root at a folder of .txt files")
        splits: dict[str, list[str]] = {}
        if (self.root / "train").is_dir():
            for split in SPLIT_DIRS:
                folder = self._split_dir(split)
                if folder is None:
                    if split == "val":
                        raise FileNotFoundError(
                            f"{self.root} has a train/ folder but no valid/ (or val/) folder; add one"
                        )
                    continue
                files = _text_files(folder)
                if not files:
                    raise ValueError(f"{folder} holds no .txt files")
                splits[split] = read_documents(files, self.documents)
        else:
            files = _text_files(self.root)
            if not files:
                raise ValueError(f"{self.root} holds no .txt files (searched recursively)")
            docs = read_documents(files, self.documents)
            if len(docs) < 2:
                raise ValueError(f"{self.root} holds {len(docs)} document(s); a train/val split needs at least 2")
            held = np.random.default_rng(self.seed).permutation(len(docs))[
                : max(1, round(self.val_fraction * len(docs)))
            ]
            is_val = np.zeros(len(docs), dtype=bool)
            is_val[held] = True
            splits["train"] = [d for d, v in zip(docs, is_val) if not v]
            splits["val"] = [d for d, v in zip(docs, is_val) if v]
        for split, docs in splits.items():
            if not docs:
                raise ValueError(f"the {split} split of {self.root} holds no non-blank text")
        return splits

    def build_tokenizer(self) -> TextTokenizer:
        """The byte tokenizer, or a BPE trained on the training documents."""
        if self.tokenizer_kind == "bytes":
            return TextTokenizer.bytes()
        train_docs = self._read_splits()["train"]
        log.info(f"training a BPE tokenizer (vocab_size {self.vocab_size}) on {len(train_docs)} documents")
        return TextTokenizer.train(train_docs, **self.tokenizer_options)

    def _stream(self, docs: Sequence[str], split: str) -> np.ndarray:
        encoded = self.tokenizer.encode_batch(docs)
        unknown = sum(ids.count(UNK_ID) for ids in encoded)
        if unknown:
            log.warning(f"{split} split: {unknown} character run(s) outside the tokenizer's vocabulary became <unk>")
        lengths = np.fromiter((len(ids) + 2 for ids in encoded), dtype=np.int64, count=len(encoded))
        stream = np.empty(int(lengths.sum()), dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        for start, ids in zip(starts.tolist(), encoded):
            stream[start] = BOS_ID
            stream[start + 1 : start + 1 + len(ids)] = ids
            stream[start + 1 + len(ids)] = EOS_ID
        return stream

    def setup(self, stage: str | None = None) -> None:
        """Load (or build) the tokenizer, read, tokenize and pack every split once."""
        if self.datasets:
            return
        self.setup_tokenizer()
        splits = self._read_splits()
        for split, docs in splits.items():
            self.datasets[split] = PackedBlocks(self._stream(docs, split), self.block_size, split)
        self.datasets.setdefault("test", self.datasets["val"])
        counts = {split: len(ds) for split, ds in self.datasets.items()}
        log.info(f"{self.root}: blocks of {self.block_size} tokens per split {counts}, tokenizer {self.tokenizer}")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.datasets:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders are requested")
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            drop_last=shuffle and len(self.datasets[split]) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled blocks of the training stream."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Blocks of the validation stream, in order."""
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Blocks of the test stream (the validation stream when there is no test split)."""
        return self._loader("test", shuffle=False)


# SCAN commands: the language-model demo ------------------------------------------------------------------------------


def is_scan_command(text: str) -> bool:
    """Whether `text` (outer whitespace ignored) is a command of the SCAN grammar."""
    try:
        interpret(text.strip())
    except ValueError:
        return False
    return True


def make_scan_commands(root: Path | str, *, seed: int = 0) -> Path:
    """Write the SCAN commands (simple split) once as text folders `root/scan_lm/{train,valid,test}/commands.txt`."""
    parts = scan_splits("simple", seed=seed, val_fraction=0.05)

    def generate(out: Path) -> None:
        rng = np.random.default_rng([seed, 2])
        for split, pairs in parts.items():
            (out / split).mkdir()
            # Shuffled: in grammar order, each line would all but give away the next one.
            lines = [pairs[i][0] for i in rng.permutation(len(pairs))]
            (out / split / "commands.txt").write_text("".join(f"{cmd}\n" for cmd in lines), encoding="utf-8")
        (out / "README.md").write_text(
            "# SCAN commands (mmattn built-in language-model demo)\n\nThe commands of the SCAN grammar (Lake & "
            "Baroni, 2018), one per line, from the simple split of `mmattn/tasks/text/scan.py` in a seeded random "
            "order: train/valid/test hold "
            f"{', '.join(str(len(p)) for p in parts.values())} commands. Generated, never downloaded.\n",
            encoding="utf-8",
        )

    return ensure_dataset(Path(root) / "scan_lm", generate, name="scan_lm", version=f"2 seed={seed}")


class SCANCommandsDataModule(GeneratedData, TextFolderDataModule):
    """The built-in language-model demo: SCAN commands written once as a text folder, read as any text folder.

    Args:
        root: Data directory; the text goes to `root/scan_lm`.
        generate: Write the files when missing; if False, a missing folder is an error.
        data_seed: Seed of the SCAN split.
        **kwargs: Options of `TextFolderDataModule` (documents defaults to "line").
    """

    def __init__(self, root: str | Path, *, generate: bool = True, data_seed: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("documents", "line")
        super().__init__(Path(root).expanduser() / "scan_lm", **kwargs)
        self.data_root = Path(root).expanduser()
        self.generate = generate
        self.data_seed = data_seed
        self.save_hyperparameters(logger=False)

    def ensure_data(self) -> None:
        """Write the SCAN files when missing (write-once, process-safe)."""
        if self.generate:
            make_scan_commands(self.data_root, seed=self.data_seed)
        elif not self.root.is_dir():
            raise FileNotFoundError(f"SCAN commands not found at {self.root}; pass data.generate=true to create them")
