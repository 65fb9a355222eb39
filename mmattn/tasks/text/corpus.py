"""A text corpus read and tokenized as a stream: documents one at a time, token ids in chunks, in worker processes.

`DocumentStream` reads .txt files line by line and yields documents (a line, a blank-line separated paragraph or a
whole file) one at a time, with a rich progress bar of the bytes read on a terminal. `encode_stream` groups them into
chunks of about `CHUNK_BYTES`, tokenizes each chunk into `bos ids eos` per document and yields the chunks' id arrays
in document order; with `workers` > 1 a pool of forked processes encodes them while at most `2 * workers` chunks are
in flight. Memory therefore holds a few chunks (and, in "file" mode, one file), however large the corpus. The ids are
the same whatever the number of workers: each document is encoded on its own.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .bpe import BOS_ID, EOS_ID, UNK_ID

__all__ = [
    "CHUNK_BYTES",
    "DOCUMENT_MODES",
    "DocumentStream",
    "default_workers",
    "encode_documents",
    "encode_stream",
    "read_documents",
    "text_files",
]

DOCUMENT_MODES = ("line", "paragraph", "file")
CHUNK_BYTES = 1 << 20  # text per task handed to a worker: large enough to amortise pickling, small enough to stream
_BOM = b"\xef\xbb\xbf"
_PARALLELISM = "TOKENIZERS_PARALLELISM"


def text_files(folder: Path) -> list[Path]:
    """The .txt files under `folder` (recursively, hidden entries skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if f.endswith(".txt") and not f.startswith(".")]
    return sorted(found)


@contextmanager
def _progress(label: str | None, total: int) -> Iterator[Callable[[int], None]]:
    """A rich bar of bytes on a terminal's stderr, and the function that advances it (a no-op without a label)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    console = Console(stderr=True)
    if label is None or not console.is_terminal:
        yield lambda _: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(label, total=total)
        pending = 0

        def advance(n: int) -> None:
            nonlocal pending
            pending += n
            if pending >= 1 << 20:  # an update per line would cost more than reading the line
                bar.advance(task, pending)
                pending = 0

        yield advance
        bar.advance(task, pending)


def _decode(raw: bytes, path: Path, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not valid UTF-8 (byte {offset + e.start}); convert it, e.g. `iconv -t utf-8`"
        ) from e


class DocumentStream:
    """The documents of UTF-8 text files, read lazily in file order; iterable any number of times.

    A document is each non-blank line, each paragraph (lines between empty lines, joined by "\\n") or each whole
    file, without its outer newlines; "\\r\\n" line ends count as "\\n" in line and paragraph modes. `select`, a
    boolean per document, keeps only the documents marked True (a split of one folder's documents). With a `label`,
    each pass shows a rich progress bar of the bytes read on a terminal (logs get the caller's summary instead).

    Raises:
        ValueError: An unknown `documents` mode, or (while reading) a file that is not UTF-8 (named, with the byte).
    """

    def __init__(
        self, files: Sequence[Path], documents: str, *, select: np.ndarray | None = None, label: str | None = None
    ) -> None:
        if documents not in DOCUMENT_MODES:
            raise ValueError(f"documents must be one of {list(DOCUMENT_MODES)}, got {documents!r}")
        self.files = [Path(f) for f in files]
        self.documents = documents
        self.select = select
        self.label = label

    def __iter__(self) -> Iterator[str]:
        with _progress(self.label, sum(f.stat().st_size for f in self.files)) as advance:
            index = 0
            for path in self.files:
                for doc in self._file_documents(path, advance):
                    if self.select is None or self.select[index]:
                        yield doc
                    index += 1
        if self.select is not None and index != len(self.select):
            raise RuntimeError(
                f"the text files changed while they were read ({index} documents now, {len(self.select)} before); "
                "run again once they stay put"
            )

    def _file_documents(self, path: Path, advance: Callable[[int], None]) -> Iterator[str]:
        if self.documents == "file":
            raw = path.read_bytes()
            advance(len(raw))
            skip = len(_BOM) if raw.startswith(_BOM) else 0
            text = _decode(raw[skip:], path, skip).strip("\n")
            if text.strip():
                yield text
            return
        paragraph: list[str] = []
        offset = 0
        with open(path, "rb") as f:
            for raw in f:
                start = offset
                offset += len(raw)
                advance(len(raw))
                if start == 0 and raw.startswith(_BOM):
                    raw, start = raw[len(_BOM) :], len(_BOM)
                line = _decode(raw, path, start)
                if line.endswith("\n"):
                    line = line[:-2] if line.endswith("\r\n") else line[:-1]
                if self.documents == "line":
                    if line.strip():
                        yield line
                elif line:
                    paragraph.append(line)
                elif paragraph:
                    yield from _non_blank("\n".join(paragraph))
                    paragraph = []
        if paragraph:
            yield from _non_blank("\n".join(paragraph))


def _non_blank(text: str) -> Iterator[str]:
    if text.strip():
        yield text


def read_documents(files: Sequence[Path], documents: str) -> list[str]:
    """The documents of UTF-8 text files as a list (`DocumentStream` without the streaming).

    Raises:
        ValueError: An unknown `documents` mode, or a file that is not UTF-8 (the message names it).
    """
    return list(DocumentStream(files, documents))


def default_workers() -> int:
    """Tokenizing processes when none are configured: one per usable core, at most 4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(4, cores)


# ------------------------------------------------------------------------------------------------------ encoding


def encode_documents(tokenizer: Any, docs: list[str], dtype: np.dtype) -> tuple[np.ndarray, int]:
    """`bos ids eos` of every document, concatenated as `dtype`, and how many `<unk>` ids they hold."""
    flat: list[int] = []
    for ids in tokenizer.encode_batch(docs):
        flat.append(BOS_ID)
        flat.extend(ids)
        flat.append(EOS_ID)
    stream = np.asarray(flat, dtype=dtype)
    return stream, int(np.count_nonzero(stream == UNK_ID))


_worker_state: dict[str, Any] = {}


def _init_worker(tokenizer: Any, dtype: np.dtype) -> None:
    _worker_state.update(tokenizer=tokenizer, dtype=dtype)


def _encode_in_worker(docs: list[str]) -> tuple[np.ndarray, int]:
    return encode_documents(_worker_state["tokenizer"], docs, _worker_state["dtype"])


def _chunks(docs: Iterable[str]) -> Iterator[list[str]]:
    """Documents in lists of about `CHUNK_BYTES` characters (at least one document each)."""
    chunk: list[str] = []
    size = 0
    for doc in docs:
        chunk.append(doc)
        size += len(doc)
        if size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _can_fork() -> bool:
    # A daemonic process (e.g. a DataLoader worker) may not start children.
    return "fork" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon


@contextmanager
def _pool(workers: int, tokenizer: Any, dtype: np.dtype) -> Iterator[ProcessPoolExecutor]:
    """`workers` forked processes that encode chunks, started before the caller starts any thread of its own."""
    # Fork, not spawn: a spawned worker re-imports the parent's main module (torch, Lightning: seconds and hundreds
    # of MB each). The Rust tokenizer's thread pool is off in the workers, so each uses one core; the tokenizers
    # library would otherwise turn it off itself after the fork, with a warning from every worker.
    saved = os.environ.get(_PARALLELISM)
    os.environ[_PARALLELISM] = "false"
    try:
        pool = ProcessPoolExecutor(
            workers, multiprocessing.get_context("fork"), initializer=_init_worker, initargs=(tokenizer, dtype)
        )
        pool.submit(int).result()  # with fork, the first submit starts every worker
    finally:
        if saved is None:
            os.environ.pop(_PARALLELISM, None)
        else:
            os.environ[_PARALLELISM] = saved
    try:
        yield pool
    finally:
        pool.shutdown(cancel_futures=True)  # after an error or a closed generator, queued chunks are dropped


def encode_stream(
    docs: Iterable[str], tokenizer: Any, dtype: np.dtype, *, workers: int = 1
) -> Iterator[tuple[np.ndarray, int, int]]:
    """The token stream of `docs` in chunks, in order: each chunk's ids, its `<unk>` count and its document count.

    Args:
        docs: The documents (read once, after any worker has started).
        tokenizer: Anything with `encode_batch(list[str]) -> list[list[int]]` (picklable for workers > 1).
        dtype: The ids' dtype (`mmattn.data.token_files.token_dtype`).
        workers: Processes that encode; 1 encodes in this process.
    """
    if workers <= 1 or not _can_fork():
        for chunk in _chunks(docs):
            ids, unknown = encode_documents(tokenizer, chunk, dtype)
            yield ids, unknown, len(chunk)
        return
    with _pool(workers, tokenizer, dtype) as pool:
        # A bounded window of chunks in flight, collected in submission order: the output keeps document order and
        # memory holds a few chunks even when reading is faster than encoding.
        pending: deque[tuple[Future, int]] = deque()
        for chunk in _chunks(docs):
            pending.append((pool.submit(_encode_in_worker, chunk), len(chunk)))
            if len(pending) >= 2 * workers:
                yield _collect(*pending.popleft())
        while pending:
            yield _collect(*pending.popleft())


def _collect(result: Future, count: int) -> tuple[np.ndarray, int, int]:
    ids, unknown = result.result()
    return ids, unknown, count
