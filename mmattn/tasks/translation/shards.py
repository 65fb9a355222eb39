"""The translation task's shard records: a sentence pair stored as its two lines, source then target, as UTF-8 bytes
(`source\\ntarget`: a line of parallel text holds no line break, so the first one splits the pair again).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmattn.data.shards import Record, RecordSource

__all__ = ["LinePairSource", "decode_pair"]


@dataclass(frozen=True)
class LinePairSource(RecordSource):
    """Line `key` of a parallel corpus: its source and target lines as read from the files."""

    key: str
    label: int
    src: str
    tgt: str

    def read(self) -> bytes:
        """The two lines, joined by a line break, in UTF-8."""
        return f"{self.src}\n{self.tgt}".encode()


def decode_pair(record: Record) -> tuple[str, str]:
    """The source and target lines of a stored pair."""
    src, tgt = record.data.decode().split("\n", 1)
    return src, tgt
