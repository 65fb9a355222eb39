"""Parallel text: reading line-aligned files exactly, and filtering sentence pairs with per-reason counts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmattn.tasks.translation.text import DROP_REASONS, filter_pairs, read_lines, read_parallel


def _write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def test_read_parallel_keeps_lines_exactly(tmp_path: Path) -> None:
    src = _write(tmp_path / "train.de", "Guten Tag.\n\nStraße  mit  Leerzeichen \nletzte Zeile ohne Umbruch")
    tgt = _write(tmp_path / "train.en", "Good day.\n\n street with spaces\nlast line\n")
    assert read_parallel(src, str(tgt)) == (
        ["Guten Tag.", "", "Straße  mit  Leerzeichen ", "letzte Zeile ohne Umbruch"],
        ["Good day.", "", " street with spaces", "last line"],
    )


def test_only_newlines_split_lines(tmp_path: Path) -> None:
    # CRLF endings are line endings; a lone CR, U+2028, U+0085 and form feeds inside a sentence are not.
    path = _write(tmp_path / "a.txt", "one\r\ntwo\rstill two\u2028and\x85more\x0c\r\nthree")
    assert read_lines(path) == ["one", "two\rstill two\u2028and\x85more\x0c", "three"]


def test_bom_is_dropped_and_empty_files_have_no_lines(tmp_path: Path) -> None:
    assert read_lines(_write(tmp_path / "bom.txt", b"\xef\xbb\xbfhallo\n")) == ["hallo"]
    assert read_lines(_write(tmp_path / "empty.txt", "")) == []
    assert read_lines(_write(tmp_path / "one_empty_line.txt", "\n")) == [""]


def test_misaligned_files_name_both_files_and_counts(tmp_path: Path) -> None:
    src = _write(tmp_path / "x.src", "a\nb\nc\n")
    tgt = _write(tmp_path / "x.tgt", "a\nb\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(src))} has 3 lines but {re.escape(str(tgt))} has 2"):
        read_parallel(src, tgt)


def test_missing_file_is_named(tmp_path: Path) -> None:
    src = _write(tmp_path / "x.src", "a\n")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.tgt"))):
        read_parallel(src, tmp_path / "nope.tgt")


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "latin1.txt", "fine\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is not valid UTF-8 \(line 2.*iconv"):
        read_lines(path)


def _words(s: str) -> int:
    return len(s.split())


def test_filter_pairs_counts_each_reason_once() -> None:
    src = ["a b", "", "a b c d e f", "a", "a b c", "a b", "x"]
    tgt = ["c d", "x", "y", "a b c d", "", "c d e", "y"]
    kept, dropped = filter_pairs(src, tgt, src_len=_words, tgt_len=_words, max_len=5, max_ratio=2.0)
    # 1 and 4 have an empty side; 2 is too long (and badly matched: the first reason counts); 3 is 1:4 > 2.
    assert kept == [0, 5, 6]
    assert dropped == {"empty": 2, "too_long": 1, "ratio": 1}
    assert tuple(dropped) == DROP_REASONS


def test_filter_pairs_limits_are_inclusive_and_optional() -> None:
    src, tgt = ["a b c", "a", "a a a a"], ["a b c", "a b", "a"]
    kept, dropped = filter_pairs(src, tgt, src_len=_words, tgt_len=_words, max_len=3, max_ratio=2.0, min_len=1)
    assert kept == [0, 1] and dropped == {"empty": 0, "too_long": 1, "ratio": 0}
    kept, _ = filter_pairs(src, tgt, src_len=_words, tgt_len=_words, max_len=4, max_ratio=None)
    assert kept == [0, 1, 2]
    # min_len above 1 drops short pairs under "empty" too.
    kept, dropped = filter_pairs(src, tgt, src_len=_words, tgt_len=_words, max_len=4, max_ratio=None, min_len=2)
    assert kept == [0] and dropped["empty"] == 2


def test_filter_pairs_with_min_len_zero_keeps_empty_pairs_but_not_half_empty_ones() -> None:
    kept, dropped = filter_pairs(
        ["", "", "a"], ["", "b", "c"], src_len=len, tgt_len=len, max_len=9, max_ratio=3.0, min_len=0
    )
    assert kept == [0, 2] and dropped == {"empty": 0, "too_long": 0, "ratio": 1}


def test_filter_pairs_uses_the_given_length_functions() -> None:
    # Characters on the source side, words on the target side.
    kept, dropped = filter_pairs(
        ["abcdef", "ab"], ["one", "one two"], src_len=len, tgt_len=_words, max_len=4, max_ratio=None
    )
    assert kept == [1] and dropped["too_long"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(max_len=0), r"max_len 0 is below min_len 1"),
        (dict(max_len=5, min_len=-1), r"min_len must be >= 0, got -1"),
        (dict(max_len=5, max_ratio=0.5), r"max_ratio must be >= 1 .* got 0.5"),
    ],
)
def test_filter_pairs_checks_its_limits(kwargs: dict, message: str) -> None:
    kwargs = {"max_ratio": None, **kwargs}
    with pytest.raises(ValueError, match=message):
        filter_pairs(["a"], ["b"], src_len=len, tgt_len=len, **kwargs)


def test_filter_pairs_needs_aligned_lists() -> None:
    with pytest.raises(ValueError, match="src has 2 sentences but tgt has 1"):
        filter_pairs(["a", "b"], ["c"], src_len=len, tgt_len=len, max_len=5, max_ratio=None)


def test_filter_pairs_accepts_token_id_lists() -> None:
    kept, dropped = filter_pairs([[5, 6], [7]], [[8], [9, 9, 9, 9]], src_len=len, tgt_len=len, max_len=5, max_ratio=2)
    assert kept == [0] and dropped == {"empty": 0, "too_long": 0, "ratio": 1}
