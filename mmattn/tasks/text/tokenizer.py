"""One-stream tokenizer for language models and transcripts: subword BPE trained on the corpus, or raw UTF-8 bytes.

Both kinds are HF `tokenizers` objects with mmattn's special tokens at ids 0..3 (`mmattn.tasks.text.bpe`), so models,
collate functions and checkpoints treat them alike. BPE normalises text as the translation tokenizer does (whitespace
runs become one space) and maps characters it never saw to `<unk>`; the byte kind keeps every byte exactly (ids 4..259
are the 256 byte values), so it never produces `<unk>` and decodes invalid UTF-8 as U+FFFD. A byte-level BPE
(`TextTokenizer.train(..., byte_level=True)`, GPT-2's scheme) merges bytes: as exact as the byte kind, with fewer
tokens per text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from .bpe import (
    BOS_ID,
    EOS_ID,
    MIN_VOCAB_SIZE,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    as_list,
    check_non_blank,
    check_texts,
    check_tokenizer,
    content_ids,
    text_chunks,
    train_bpe,
    train_byte_bpe,
)

__all__ = ["BYTE_VOCAB_SIZE", "TEXT_TOKENIZER_FILE", "TextTokenizer"]

TEXT_TOKENIZER_FILE = "tokenizer.json"
# The byte kind's ids: the special tokens and the 256 byte values.
BYTE_VOCAB_SIZE = len(SPECIAL_TOKENS) + 256


def _byte_chars() -> list[str]:
    """The printable character ByteLevel uses for each byte value 0..255 (GPT-2's byte-to-unicode table)."""
    # Printable Latin-1 bytes stand for themselves; the others take the code points from 256 on, in byte order.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[byte] for byte in range(256)]


def _byte_tokenizer() -> Tokenizer:
    # ByteLevel maps each byte to one printable character; with no merges, one byte is one token, id 4 + byte value.
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({char: len(SPECIAL_TOKENS) + byte for byte, char in enumerate(_byte_chars())})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=SPECIAL_TOKENS[UNK_ID]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok


class TextTokenizer:
    """A single text stream's tokenizer with fixed special ids (pad 0, bos 1, eos 2, unk 3).

    `encode` adds no special tokens (language-model packing and transcript collation add bos/eos themselves);
    `decode` stops at the first eos and skips pad and bos, so a padded row of generated ids decodes cleanly.
    The names `tgt_vocab_size` and `decode_tgt_batch` let `mmattn.lit.Seq2SeqModule` use it as a target tokenizer.

    Example::

        tok = TextTokenizer.train(lines, vocab_size=4000)   # or TextTokenizer.bytes()
        ids = tok.encode("walk twice")
        tok.decode([BOS_ID, *ids, EOS_ID, PAD_ID])           # "walk twice"

    Args:
        tokenizer: A `tokenizers.Tokenizer` with `SPECIAL_TOKENS` at ids 0..3.
        kind: "bpe" or "bytes" (recorded in checkpoints and shown in messages).

    Raises:
        ValueError: The special tokens sit at other ids, a BPE has no `<unk>`, or `kind` is unknown.
    """

    pad_id = PAD_ID
    bos_id = BOS_ID
    eos_id = EOS_ID
    unk_id = UNK_ID

    def __init__(self, tokenizer: Tokenizer, *, kind: Literal["bpe", "bytes"] = "bpe") -> None:
        if kind not in ("bpe", "bytes"):
            raise ValueError(f"tokenizer kind must be 'bpe' or 'bytes', got {kind!r}")
        check_tokenizer(tokenizer, "text")
        # Not stored in the tokenizer JSON: "</s>" inside a text is spelled out, never read as the special token.
        tokenizer.encode_special_tokens = True
        self.tokenizer = tokenizer
        self.kind = kind

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        vocab_size: int = 8000,
        min_frequency: int = 2,
        lowercase: bool = False,
        byte_level: bool = False,
    ) -> TextTokenizer:
        """Train a BPE on `texts` (read once: a list, a generator or an open file).

        `byte_level=True` trains GPT-2's byte-level BPE instead: no normaliser (`lowercase` must stay False), so
        whitespace and newlines survive and decode(encode(text)) == text; it needs `vocab_size` > 260 (the 4
        special tokens and 256 bytes come first).

        Raises:
            ValueError: `vocab_size` below `MIN_VOCAB_SIZE`, `min_frequency` below 1, or no non-blank text.
            TypeError: `texts` is one string or holds non-strings.
        """
        if vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(f"vocab_size {vocab_size} is too small: it must be >= {MIN_VOCAB_SIZE}")
        if min_frequency < 1:
            raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
        if byte_level and (lowercase or vocab_size <= BYTE_VOCAB_SIZE):
            raise ValueError(
                f"a byte-level BPE needs vocab_size > {BYTE_VOCAB_SIZE} (got {vocab_size}) and lowercase=False "
                f"(got {lowercase}): it keeps the text exactly"
            )
        check_texts(texts, "texts")
        non_blank = {"texts": False}
        chunks = text_chunks(texts, "texts", non_blank)
        if byte_level:
            tok = train_byte_bpe(chunks, vocab_size, min_frequency)
        else:
            tok = train_bpe(chunks, vocab_size, min_frequency, lowercase)
        check_non_blank(non_blank, "texts")
        return cls(tok, kind="bpe")

    @classmethod
    def bytes(cls) -> TextTokenizer:
        """The byte-level tokenizer: 4 special tokens + the 256 byte values (260 ids), nothing to train."""
        return cls(_byte_tokenizer(), kind="bytes")

    @property
    def vocab_size(self) -> int:
        """Ids in use, special tokens included (the embedding table's rows)."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def tgt_vocab_size(self) -> int:
        """`vocab_size` (the name `Seq2SeqModule` checks against the decoder's output layer)."""
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        """Ids of `text`, without bos or eos."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """`encode` of many texts, in parallel in Rust."""
        return [e.ids for e in self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids (a list or 1-D tensor) up to the first eos, without pad and bos."""
        return self.tokenizer.decode(content_ids(as_list(ids)), skip_special_tokens=False)

    def decode_batch(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """`decode` of every row of `ids` (a list of lists or a 2-D tensor)."""
        rows = [content_ids(as_list(row)) for row in as_list(ids)]
        return self.tokenizer.decode_batch(rows, skip_special_tokens=False)

    decode_tgt_batch = decode_batch

    def to_dict(self) -> dict[str, str]:
        """The tokenizer as plain strings (loadable with `weights_only=True` inside a checkpoint)."""
        return {"kind": self.kind, "tokenizer": self.tokenizer.to_str()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextTokenizer:
        """Rebuild a tokenizer from `to_dict` output.

        Raises:
            ValueError: `d` lacks "tokenizer".
        """
        if "tokenizer" not in d:
            raise ValueError(
                f"tokenizer dict lacks 'tokenizer' (has {sorted(d)}); build it with TextTokenizer.to_dict()"
            )
        return cls(Tokenizer.from_str(d["tokenizer"]), kind=d.get("kind", "bpe"))

    def save(self, directory: str | Path) -> None:
        """Write `tokenizer.json` (and the kind, inside it) into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / TEXT_TOKENIZER_FILE).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def is_saved(cls, directory: str | Path) -> bool:
        """Whether `directory` holds the `tokenizer.json` that `load` reads."""
        return (Path(directory) / TEXT_TOKENIZER_FILE).is_file()

    @classmethod
    def load(cls, directory: str | Path) -> TextTokenizer:
        """Read a tokenizer written by `save`.

        Raises:
            FileNotFoundError: `directory` holds no `tokenizer.json`.
            ValueError: The file is not one written by `TextTokenizer.save`.
        """
        path = Path(directory) / TEXT_TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {TEXT_TOKENIZER_FILE} in {directory}; train one (data.tokenizer_dir)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); delete it to train a new tokenizer") from e
        if not isinstance(data, dict) or "tokenizer" not in data:
            raise ValueError(f"{path} was not written by TextTokenizer.save; delete it to train a new tokenizer")
        return cls.from_dict(data)

    def __getstate__(self) -> dict[str, str]:
        return self.to_dict()

    def __setstate__(self, state: dict[str, str]) -> None:
        other = TextTokenizer.from_dict(state)
        self.tokenizer, self.kind = other.tokenizer, other.kind

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextTokenizer) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, vocab_size={self.vocab_size})"
