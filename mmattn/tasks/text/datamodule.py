"""Plain-text language-model data: any folder of .txt files, tokenized (BPE or bytes) and packed into fixed blocks.

Each document becomes `bos ids eos`; the documents of a split are concatenated into one token stream, and the stream
is cut into blocks of `block_size + 1` tokens (consecutive blocks share one token, so every position of the stream is
a training target once; a last partial block is dropped). Batches are `{"ids": [B, block_size + 1]}` for
`mmattn.lit.LanguageModelModule`.

With `token_dir`, rank 0 of each node tokenizes every split once into `<split>.bin` files of uint16 (or uint32) ids
(`mmattn.data.token_files`) and every process maps them read-only, so a process holds no copy of the corpus; the
files are reused while the text, the tokenizer and the options stay the same, and written again when one changes.
Tokenizing streams (`mmattn.tasks.text.corpus`): documents are read one at a time, encoded in chunks by
`tokenize_workers` processes and appended to the file in order, so its memory does not grow with the corpus either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mmattn.data import GeneratedData, ensure_dataset, train_loader
from mmattn.data.shard_data import SplitWritten
from mmattn.data.token_files import (
    MappedTokens,
    TokenFileData,
    read_tokens,
    stale_reason,
    token_dtype,
    write_tokens,
)

from .corpus import DOCUMENT_MODES, DocumentStream, default_workers, encode_stream, read_documents, text_files
from .scan import interpret, scan_splits
from .tokenizer import BYTE_VOCAB_SIZE, TextTokenizer
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

TOKENIZER_KINDS = ("bpe", "bytes", "byte_bpe")
SPLIT_DIRS = {"train": ("train",), "val": ("valid", "val", "validation"), "test": ("test",)}


class PackedBlocks(Dataset):
    """Blocks of `block_size + 1` tokens cut from one token stream; item i = `{"ids": LongTensor[block_size + 1]}`.

    The stream stays as given (a compact integer array, or a read-only memory map of a token file): only the blocks
    asked for become int64. A mapped stream pickles as its file's name, dtype and length, and is mapped again on
    first use in the process that unpickles it, so loader workers started with spawn or forkserver (and DDP
    processes) share the page cache instead of each receiving a copy of the corpus.

    Raises:
        ValueError: The stream is shorter than one block.
    """

    def __init__(self, stream: np.ndarray, block_size: int, split: str = "train") -> None:
        if len(stream) < block_size + 1:
            raise ValueError(
                f"the {split} split has {len(stream)} tokens, fewer than one block of block_size + 1 = "
                f"{block_size + 1}; lower data.block_size or add text"
            )
        self._stream: np.ndarray | None = stream
        self._mapping: MappedTokens | None = MappedTokens.of(stream)
        self.block_size = block_size

    @property
    def stream(self) -> np.ndarray:
        """The token stream (mapped again here if this object was unpickled from a mapped one)."""
        if self._stream is None:
            self._stream = self._mapping.open()
        return self._stream

    def __len__(self) -> int:
        return (len(self.stream) - 1) // self.block_size

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        start = i * self.block_size
        return {"ids": torch.from_numpy(self.stream[start : start + self.block_size + 1].astype(np.int64))}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._mapping is not None:
            state["_stream"] = None  # pickling the map would copy every token into the pickle
        return state


class TextFolderDataModule(TokenFileData, TokenizerInRunDir, L.LightningDataModule):
    """Language-model data from a folder of .txt files.

    Layout: `root/train/`, `root/valid/` (or `val/`, `validation/`) and optionally `root/test/`, each holding .txt
    files (nested folders allowed); or just .txt files anywhere under `root`, whose documents are then split into
    train/val by `val_fraction` and `seed`. Without a test split, testing reads the validation split.

    The tokenizer is a BPE trained on the training documents or the byte-level one, saved in `tokenizer_dir` and
    loaded from there on resume and on other DDP ranks (`TokenizerInRunDir`). Characters outside a BPE vocabulary
    become `<unk>` and are counted in the log for each split.

    Args:
        root: The text folder.
        tokenizer: "bpe" (words, whitespace runs become one space), "bytes" (raw UTF-8, 260 ids) or "byte_bpe" (a
            byte-level BPE: merges of raw bytes, exact like "bytes" with fewer tokens per text).
        vocab_size: BPE vocabulary size (an upper bound: a small corpus gives fewer); "bytes" ignores it (260 ids).
        min_frequency: BPE: least count of a merge.
        lowercase: BPE: lowercase before tokenising.
        tokenizer_dir: Where the tokenizer is saved and loaded from (normally the run directory).
        documents: What one document is: "line", "paragraph" (blank-line separated) or "file".
        token_dir: Where each split's token file is written once and mapped from (normally the run directory);
            None keeps the streams in memory in every process.
        block_size: Tokens a block holds as model input (the model's context_length at most).
        batch_size: Blocks per batch (per process).
        val_fraction: Share of documents held out when `root` has no split folders.
        seed: Seed of that split.
        tokenize_workers: Processes that tokenize the text into token files (rank 0 only); None: one per usable
            core, at most 4. The files are the same whatever the number.
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
        tokenizer: Literal["bpe", "bytes", "byte_bpe"] = "bpe",
        vocab_size: int = 8000,
        min_frequency: int = 2,
        lowercase: bool = False,
        tokenizer_dir: str | Path | None = None,
        token_dir: str | Path | None = None,
        documents: Literal["line", "paragraph", "file"] = "paragraph",
        block_size: int = 256,
        batch_size: int = 32,
        val_fraction: float = 0.05,
        seed: int = 0,
        tokenize_workers: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if tokenizer not in TOKENIZER_KINDS:
            raise ValueError(f"data.tokenizer must be one of {list(TOKENIZER_KINDS)}, got {tokenizer!r}")
        if tokenizer == "byte_bpe" and (int(vocab_size) <= BYTE_VOCAB_SIZE or lowercase):
            raise ValueError(
                f"data.tokenizer=byte_bpe needs data.vocab_size > {BYTE_VOCAB_SIZE} (the specials and 256 bytes come "
                f"first; got {vocab_size}) and data.lowercase=false (it keeps the text exactly; got {lowercase})"
            )
        if documents not in DOCUMENT_MODES:
            raise ValueError(f"data.documents must be one of {list(DOCUMENT_MODES)}, got {documents!r}")
        if block_size < 1 or batch_size < 1:
            raise ValueError(f"block_size ({block_size}) and batch_size ({batch_size}) must be >= 1")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        if tokenize_workers is not None and tokenize_workers < 1:
            raise ValueError(
                f"data.tokenize_workers must be >= 1 (or null: one per core, at most 4), got {tokenize_workers}"
            )
        self.root = Path(root).expanduser()
        self.tokenizer_kind = tokenizer
        self.vocab_size = BYTE_VOCAB_SIZE if tokenizer == "bytes" else int(vocab_size)
        self.tokenizer_options = dict(vocab_size=self.vocab_size, min_frequency=min_frequency, lowercase=lowercase)
        if tokenizer == "byte_bpe":
            self.tokenizer_options["byte_level"] = True
        self.tokenizer_dir = None if tokenizer_dir is None else Path(tokenizer_dir).expanduser()
        self.token_dir = None if token_dir is None else Path(token_dir).expanduser()
        self.documents = documents
        self.block_size = block_size
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.tokenize_workers = tokenize_workers
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.tokenizer: TextTokenizer | None = None
        self.datasets: dict[str, PackedBlocks] = {}
        # What the last `prepare_data` did with each split's token file (kept or written, tokens, seconds).
        self.token_files: list[SplitWritten] = []
        self._val_mask: np.ndarray | None = None
        self.save_hyperparameters(logger=False)

    # --------------------------------------------------------------------------------------------- reading

    def _split_dir(self, split: str) -> Path | None:
        for name in SPLIT_DIRS[split]:
            if (self.root / name).is_dir():
                return self.root / name
        return None

    def _split_files(self) -> dict[str, list[Path]]:
        """The .txt files of train, val and (if present) test; in a folder without split folders, all for both."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"no text folder at {self.root}; point data.root at a folder of .txt files")
        if not (self.root / "train").is_dir():
            files = text_files(self.root)
            if not files:
                raise ValueError(f"{self.root} holds no .txt files (searched recursively)")
            return {"train": files, "val": files}
        splits: dict[str, list[Path]] = {}
        for split in SPLIT_DIRS:
            folder = self._split_dir(split)
            if folder is None:
                if split == "val":
                    raise FileNotFoundError(f"{self.root} has a train/ folder but no valid/ (or val/) folder; add one")
                continue
            splits[split] = text_files(folder)
            if not splits[split]:
                raise ValueError(f"{folder} holds no .txt files")
        return splits

    def _held_out(self, files: list[Path]) -> np.ndarray:
        """A folder without split folders: True for each document of the validation share (counted once, kept)."""
        # A byte per document, and the split stays the one a list of every document gave.
        if self._val_mask is None:
            count = sum(1 for _ in DocumentStream(files, self.documents, label="counting documents"))
            if count < 2:
                raise ValueError(f"{self.root} holds {count} document(s); a train/val split needs at least 2")
            held = np.random.default_rng(self.seed).permutation(count)[: max(1, round(self.val_fraction * count))]
            self._val_mask = np.zeros(count, dtype=bool)
            self._val_mask[held] = True
        return self._val_mask

    def split_documents(self, split: str) -> Iterator[str]:
        """The documents of `split`, read from the files one at a time.

        Raises:
            ValueError: The split holds no non-blank text (raised once it has been read through).
        """
        files = self._split_files()[split]
        label = f"{split} split"
        if (self.root / "train").is_dir():
            docs = DocumentStream(files, self.documents, label=label)
        else:
            is_val = self._held_out(files)
            docs = DocumentStream(files, self.documents, select=is_val if split == "val" else ~is_val, label=label)
        empty = True
        for doc in docs:
            empty = False
            yield doc
        if empty:
            raise ValueError(f"the {split} split of {self.root} holds no non-blank text")

    def build_tokenizer(self) -> TextTokenizer:
        """The byte tokenizer, or a BPE trained on the training documents (streamed from the files)."""
        if self.tokenizer_kind == "bytes":
            return TextTokenizer.bytes()
        kind = "byte-level BPE" if self.tokenizer_kind == "byte_bpe" else "BPE"
        log.info(f"training a {kind} tokenizer (vocab_size {self.vocab_size}) on the train split of {self.root}")
        return TextTokenizer.train(self.split_documents("train"), **self.tokenizer_options)

    def _workers(self) -> int:
        return default_workers() if self.tokenize_workers is None else self.tokenize_workers

    def _encoded(self, split: str, counts: dict[str, int]) -> Iterator[np.ndarray]:
        """The split's token stream (`bos ids eos` per document) in chunks; `counts` gets its documents."""
        unknown = counts["documents"] = 0
        dtype = token_dtype(self.tokenizer.vocab_size)
        for ids, chunk_unknown, documents in encode_stream(
            self.split_documents(split), self.tokenizer, dtype, workers=self._workers()
        ):
            unknown += chunk_unknown
            counts["documents"] += documents
            yield ids
        if unknown:
            log.warning(f"{split} split: {unknown} character run(s) outside the tokenizer's vocabulary became <unk>")

    def _stream(self, split: str) -> np.ndarray:
        chunks = [np.zeros(0, dtype=token_dtype(self.tokenizer.vocab_size)), *self._encoded(split, {})]
        return np.concatenate(chunks)

    # ------------------------------------------------------------------------------------------ token files

    def _split_names(self) -> list[str]:
        """The splits the folder has (train and val always; test when it has a test folder)."""
        if (self.root / "train").is_dir():
            return [split for split in SPLIT_DIRS if split != "test" or self._split_dir("test") is not None]
        return ["train", "val"]

    def _fingerprint(self) -> dict[str, Any]:
        """What the token files are made from: every .txt file (path, size, time), the tokenizer and the options."""
        files = [(str(p.relative_to(self.root)), p.stat().st_size, p.stat().st_mtime_ns) for p in text_files(self.root)]
        tokenizer = json.dumps(self.tokenizer.to_dict(), sort_keys=True).encode()
        return {
            "files": hashlib.sha256(json.dumps(files).encode()).hexdigest(),
            "tokenizer": hashlib.sha256(tokenizer).hexdigest(),
            "vocab_size": self.tokenizer.vocab_size,
            "documents": self.documents,
            "split": [self.val_fraction, self.seed],
        }

    def _token_path(self, split: str) -> Path:
        return self.token_dir / f"{split}.bin"

    def _mapped(self, fingerprint: dict[str, Any]) -> dict[str, np.ndarray] | None:
        """Every split's token file mapped read-only, or None when one is missing or made from something else."""
        mapped = {split: read_tokens(self._token_path(split), fingerprint=fingerprint) for split in self._split_names()}
        return None if any(m is None for m in mapped.values()) else mapped  # type: ignore[return-value]

    def write_token_files(self, fingerprint: dict[str, Any], splits: list[str] | None = None) -> list[SplitWritten]:
        """Tokenize every split (or `splits`) into `token_dir`, described by `fingerprint` (rank 0 of each node)."""
        written = []
        for split in self._split_names() if splits is None else splits:
            began = time.perf_counter()
            counts: dict[str, int] = {}
            path = self._token_path(split)
            if reason := stale_reason(path, fingerprint):
                # A cache of the text: made from something else, it is made again (nothing is lost), and said so.
                log.warning(f"{path} was made from other input ({reason}): tokenizing the {split} split again")
            tokens = write_tokens(
                path, self._encoded(split, counts), vocab_size=self.tokenizer.vocab_size, fingerprint=fingerprint
            )
            seconds = time.perf_counter() - began
            log.info(
                f"{split} split: {tokens:,} tokens of {counts['documents']:,} documents written to {path} in "
                f"{seconds:.1f} s ({self._workers()} tokenizing process(es))"
            )
            written.append(SplitWritten(split, tokens, path.stat().st_size, seconds, str(path)))
        return written

    def _current_token_files(self) -> list[SplitWritten]:
        """Each split's token file: kept when made from this input, else written (the tokenizer first)."""
        self.setup_tokenizer()
        fingerprint = self._fingerprint()
        kept: dict[str, SplitWritten] = {}
        for split in self._split_names():
            path = self._token_path(split)
            tokens = read_tokens(path, fingerprint=fingerprint)
            if tokens is not None:
                kept[split] = SplitWritten(split, len(tokens), path.stat().st_size, 0.0, str(path), up_to_date=True)
        stale = [split for split in self._split_names() if split not in kept]
        written = {w.split: w for w in self.write_token_files(fingerprint, stale)} if stale else {}
        return [kept.get(split) or written[split] for split in self._split_names()]

    def write_token_dir(self, out: Path) -> list[SplitWritten]:
        """Prepare the text (the demo is generated), train the tokenizer into `out/tokenizer` (or load the one
        there) and tokenize each split into `out/<split>.bin`, keeping files made from the same input."""
        self.token_dir = Path(out).expanduser()
        self.tokenizer_dir = self.token_dir / "tokenizer"
        self.prepare_data()
        return self.token_files

    def prepare_data(self) -> None:
        """Train and save the tokenizer, then write the token files (once: they are reused while current)."""
        super().prepare_data()
        if self.token_dir is not None:
            self.token_files = self._current_token_files()

    def setup(self, stage: str | None = None) -> None:
        """Load (or build) the tokenizer, then map every split's token file, or tokenize and pack in memory."""
        if self.datasets:
            return
        self.setup_tokenizer()
        if self.token_dir is not None:
            fingerprint = self._fingerprint()
            streams = self._mapped(fingerprint)
            if streams is None:  # setup without prepare_data (a direct call): write the files here
                self._current_token_files()
                streams = self._mapped(fingerprint)
        else:
            streams = {split: self._stream(split) for split in self._split_names()}
        for split, stream in streams.items():
            self.datasets[split] = PackedBlocks(stream, self.block_size, split)
        self.datasets.setdefault("test", self.datasets["val"])
        counts = {split: len(ds) for split, ds in self.datasets.items()}
        where = "" if self.token_dir is None else f" (token files in {self.token_dir})"
        log.info(
            f"{self.root}: blocks of {self.block_size} tokens per split {counts}, tokenizer {self.tokenizer}{where}"
        )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.datasets:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders are requested")
        options = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        if shuffle:
            trainer = getattr(self, "trainer", None)
            return train_loader(self.datasets[split], trainer, batch_size=self.batch_size, drop_last=True, **options)
        return DataLoader(self.datasets[split], batch_size=self.batch_size, **options)

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
