"""Line-aligned parallel text: reading a source/target file pair and filtering its sentence pairs.

The format is that of Moses and fairseq raw text: `train.de` and `train.en` hold one sentence a line, line `i` of
one file being the translation of line `i` of the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = ["DROP_REASONS", "filter_pairs", "read_lines", "read_parallel"]

# Every reason `filter_pairs` may drop a pair for, in the order they are checked.
DROP_REASONS = ("empty", "too_long", "ratio")

# Sentences as text or already tokenised: the length functions decide what a length is.
S = TypeVar("S")
T = TypeVar("T")


def read_lines(path: Path | str) -> list[str]:
    """Read a UTF-8 text file as a list of lines, each without its line ending (`\\n` or `\\r\\n`).

    Lines are split at `\\n` only. `str.splitlines` would also split at characters such as U+2028 or a lone `\\r`,
    which do occur inside sentences of crawled corpora and would shift every later line against its translation.
    A UTF-8 byte order mark at the start is dropped.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` is not valid UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parallel text file {path} does not exist; check the path or the data directory")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path} is not valid UTF-8 (line {line}, byte {e.start}); convert it first, e.g. "
            f"`iconv -f <encoding> -t utf-8 {path}`"
        ) from e
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line rather than starting an empty one
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_parallel(src_path: Path | str, tgt_path: Path | str) -> tuple[list[str], list[str]]:
    """Read a pair of line-aligned UTF-8 files and return their lines (without line endings) as (source, target).

    Args:
        src_path: File with one source sentence a line.
        tgt_path: File with the target sentence of each source line, on the same line.

    Raises:
        FileNotFoundError: Either file does not exist.
        ValueError: Either file is not valid UTF-8, or the two files have different numbers of lines.
    """
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise ValueError(
            f"parallel files are not line-aligned: {src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; "
            "each line of one must be the translation of the same line of the other"
        )
    return src, tgt


def filter_pairs(
    src: Sequence[S],
    tgt: Sequence[T],
    *,
    src_len: Callable[[S], int],
    tgt_len: Callable[[T], int],
    max_len: int,
    max_ratio: float | None,
    min_len: int = 1,
) -> tuple[list[int], dict[str, int]]:
    """Choose the sentence pairs to train on, dropping empty, over-long and badly length-matched pairs.

    A pair is dropped for the first reason that applies, checked in this order:

    - "empty": a side is shorter than `min_len` (with the default 1: a side is empty);
    - "too_long": a side is longer than `max_len`;
    - "ratio": the longer side is more than `max_ratio` times the shorter one (as Moses' `clean-corpus-n.perl`),
      which catches misaligned lines; a side of length 0 (possible with `min_len=0`) has an infinite ratio to a
      non-empty one.

    Args:
        src: Source sentences, as text or as token ids.
        tgt: Target sentences, aligned with `src`.
        src_len: Length of a source sentence, e.g. its token count under the source tokenizer.
        tgt_len: Length of a target sentence.
        max_len: Longest side kept.
        max_ratio: Largest ratio of the longer to the shorter side kept; None keeps every ratio.
        min_len: Shortest side kept.

    Returns:
        The indices of the kept pairs in increasing order, and the number of dropped pairs for each reason in
        `DROP_REASONS` (all keys present), e.g. for logging.

    Raises:
        ValueError: `src` and `tgt` differ in length, or the limits are inconsistent.
    """
    if len(src) != len(tgt):
        raise ValueError(f"src has {len(src)} sentences but tgt has {len(tgt)}; pass line-aligned lists")
    if min_len < 0:
        raise ValueError(f"min_len must be >= 0, got {min_len}")
    if max_len < min_len:
        raise ValueError(f"max_len {max_len} is below min_len {min_len}; no pair could be kept")
    if max_ratio is not None and max_ratio < 1:
        raise ValueError(f"max_ratio must be >= 1 (longer side over shorter side) or None, got {max_ratio}")
    kept: list[int] = []
    dropped = dict.fromkeys(DROP_REASONS, 0)
    for i, (s, t) in enumerate(zip(src, tgt)):
        short, long = sorted((src_len(s), tgt_len(t)))
        if short < min_len:
            dropped["empty"] += 1
        elif long > max_len:
            dropped["too_long"] += 1
        # Compared as long > max_ratio * short so that short == 0 needs no division; 0 vs 0 is a perfect match.
        elif max_ratio is not None and long > max_ratio * short:
            dropped["ratio"] += 1
        else:
            kept.append(i)
    return kept, dropped
