"""Subword BPE for translation on HF `tokenizers`: one joint vocabulary for both sides, or one per side.

Every vocabulary starts with `SPECIAL_TOKENS` at fixed ids (pad 0, bos 1, eos 2, unk 3), so models, collate functions
and checkpoints rely on them whatever the data.

Text is normalised before it is split: NFKC, optionally lowercase, every run of whitespace (spaces, tabs, newlines,
no-break spaces) becomes one space, and the ends are stripped. Words are then marked SentencePiece-style (Metaspace:
"▁" at each word start, subwords never span a space), so decoding restores the spaces and `decode(encode(text))` is
exactly the normalised text: an ordinary single-spaced sentence comes back unchanged ("Hello, world!",
"I_TURN_LEFT I_JUMP"), while "a  b\t c " comes back as "a b c". Characters never seen in training become `<unk>`
(a run of them one `<unk>`), which decoding writes out as the text "<unk>".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from mmattn.tasks.text.bpe import (
    BOS_ID,
    EOS_ID,
    MIN_VOCAB_SIZE,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
)
from mmattn.tasks.text.bpe import as_list as _as_list
from mmattn.tasks.text.bpe import check_non_blank as _check_non_blank
from mmattn.tasks.text.bpe import check_texts as _check_texts
from mmattn.tasks.text.bpe import check_tokenizer as _check_tokenizer
from mmattn.tasks.text.bpe import content_ids as _content_ids
from mmattn.tasks.text.bpe import text_chunks as _chunks
from mmattn.tasks.text.bpe import train_bpe as _train_bpe

__all__ = [
    "SPECIAL_TOKENS",
    "PAD_ID",
    "BOS_ID",
    "EOS_ID",
    "UNK_ID",
    "MIN_VOCAB_SIZE",
    "TOKENIZER_FILE",
    "SRC_TOKENIZER_FILE",
    "TGT_TOKENIZER_FILE",
    "Seq2SeqTokenizer",
]

TOKENIZER_FILE = "tokenizer.json"
SRC_TOKENIZER_FILE = "tokenizer_src.json"
TGT_TOKENIZER_FILE = "tokenizer_tgt.json"


class Seq2SeqTokenizer:
    """Source and target BPE tokenizers with fixed special ids; `src` and `tgt` are the same object when joint.

    `encode_*` append eos and never add bos (the caller prepends bos to target inputs for teacher forcing);
    `decode_*` stop at the first eos and skip pad and bos, so a padded row of generated ids decodes cleanly. Text that
    merely looks like a special token ("</s>" in a crawled sentence) is spelled out as characters, never read as one.

    Example::

        tok = Seq2SeqTokenizer.train(src_lines, tgt_lines, vocab_size=8000, joint=True)
        tok.encode_src("Hello, world!")  # [..., EOS_ID]
        tok.decode_tgt([BOS_ID, *tok.encode_tgt("Hallo, Welt!"), PAD_ID])  # "Hallo, Welt!"
        checkpoint["tokenizer"] = tok.to_dict()  # plain str/bool, loadable with weights_only=True

    Args:
        src: Source tokenizer (a `tokenizers.Tokenizer` with `SPECIAL_TOKENS` at ids 0..3).
        tgt: Target tokenizer; None (or `src` itself) makes the pair joint.

    Raises:
        ValueError: A tokenizer has the special tokens at other ids, or is a BPE without `<unk>`.
    """

    def __init__(self, src: Tokenizer, tgt: Tokenizer | None = None) -> None:
        tgt = src if tgt is None else tgt
        _check_tokenizer(src, "source")
        _check_tokenizer(tgt, "target")
        # Not stored in the tokenizer JSON nor kept by pickling, hence set on every construction.
        src.encode_special_tokens = True
        tgt.encode_special_tokens = True
        self.src = src
        self.tgt = tgt

    @classmethod
    def train(
        cls,
        src_texts: Iterable[str],
        tgt_texts: Iterable[str],
        *,
        vocab_size: int = 8000,
        joint: bool = True,
        min_frequency: int = 2,
        lowercase: bool = False,
    ) -> Seq2SeqTokenizer:
        """Train BPE on the two sides of a parallel corpus, each read once (lists, generators or open files).

        Args:
            src_texts: Source sentences.
            tgt_texts: Target sentences.
            vocab_size: Upper bound of each vocabulary, special tokens included; small data gives fewer (see
                `src_vocab_size`, `tgt_vocab_size`).
            joint: One vocabulary trained on both sides (needed to share source and target embeddings); otherwise
                one per side.
            min_frequency: Occurrences a pair needs to be merged into a subword.
            lowercase: Lowercase text before splitting (decoded text is then lowercase too).

        Raises:
            ValueError: `vocab_size` below `MIN_VOCAB_SIZE`, `min_frequency` below 1, or a side without any
                non-blank text.
            TypeError: A side is a single string, or holds something other than strings.
        """
        if vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(
                f"vocab_size {vocab_size} is too small: it must be >= {MIN_VOCAB_SIZE} ({len(SPECIAL_TOKENS)} special "
                "tokens plus room for characters); subword vocabularies for translation are usually 1000-32000"
            )
        if min_frequency < 1:
            raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
        _check_texts(src_texts, "src_texts")
        _check_texts(tgt_texts, "tgt_texts")
        non_blank = {"src_texts": False, "tgt_texts": False}
        src_chunks = _chunks(src_texts, "src_texts", non_blank)
        tgt_chunks = _chunks(tgt_texts, "tgt_texts", non_blank)
        if joint:
            tok = _train_bpe(chain(src_chunks, tgt_chunks), vocab_size, min_frequency, lowercase)
            _check_non_blank(non_blank, "src_texts")
            _check_non_blank(non_blank, "tgt_texts")
            return cls(tok)
        src = _train_bpe(src_chunks, vocab_size, min_frequency, lowercase)
        _check_non_blank(non_blank, "src_texts")
        tgt = _train_bpe(tgt_chunks, vocab_size, min_frequency, lowercase)
        _check_non_blank(non_blank, "tgt_texts")
        return cls(src, tgt)

    # The ids a decoder needs, as attributes (mmattn.lit.Seq2SeqModule reads them from any tokenizer it is given).
    pad_id = PAD_ID
    bos_id = BOS_ID
    eos_id = EOS_ID
    unk_id = UNK_ID

    @property
    def joint(self) -> bool:
        """Whether source and target share one vocabulary."""
        return self.src is self.tgt

    @property
    def src_vocab_size(self) -> int:
        """Size of the source vocabulary, special tokens included (the embedding table's rows)."""
        return self.src.get_vocab_size(with_added_tokens=True)

    @property
    def tgt_vocab_size(self) -> int:
        """Size of the target vocabulary, special tokens included (the output layer's classes)."""
        return self.tgt.get_vocab_size(with_added_tokens=True)

    def encode_src(self, text: str) -> list[int]:
        """Source ids of `text` followed by eos, without bos."""
        return self.src.encode(text, add_special_tokens=False).ids + [EOS_ID]

    def encode_tgt(self, text: str) -> list[int]:
        """Target ids of `text` followed by eos, without bos (prepend `BOS_ID` for the decoder input)."""
        return self.tgt.encode(text, add_special_tokens=False).ids + [EOS_ID]

    def encode_src_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """`encode_src` of many texts at once, encoded in parallel in Rust."""
        return [e.ids + [EOS_ID] for e in self.src.encode_batch_fast(list(texts), add_special_tokens=False)]

    def encode_tgt_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """`encode_tgt` of many texts at once, encoded in parallel in Rust."""
        return [e.ids + [EOS_ID] for e in self.tgt.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode_src(self, ids: Sequence[int]) -> str:
        """Plain text of source ids, up to the first eos, without pad and bos (unseen characters as "<unk>")."""
        return self.src.decode(_content_ids(_as_list(ids)), skip_special_tokens=False)

    def decode_tgt(self, ids: Sequence[int]) -> str:
        """Plain text of target ids (a list or a 1-D tensor), up to the first eos, without pad and bos.

        `<unk>` stays in the text as "<unk>"; ids outside the vocabulary are dropped.
        """
        return self.tgt.decode(_content_ids(_as_list(ids)), skip_special_tokens=False)

    def decode_tgt_batch(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """`decode_tgt` of every row of `ids` (a list of lists or a 2-D tensor [B, T])."""
        rows = [_content_ids(_as_list(row)) for row in _as_list(ids)]
        return self.tgt.decode_batch(rows, skip_special_tokens=False)

    def to_dict(self) -> dict[str, str | bool]:
        """The tokenizers as JSON strings plus the joint flag: plain types, so it loads with `weights_only=True`.

        A joint pair stores its one tokenizer under "src" only.
        """
        out: dict[str, str | bool] = {"joint": self.joint, "src": self.src.to_str()}
        if not self.joint:
            out["tgt"] = self.tgt.to_str()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Seq2SeqTokenizer:
        """Rebuild a tokenizer from `to_dict` output (e.g. `checkpoint["tokenizer"]`).

        Raises:
            ValueError: `d` lacks "joint" or "src", or "tgt" when not joint.
        """
        required = ["joint", "src"] if d.get("joint") else ["joint", "src", "tgt"]
        missing = [key for key in required if key not in d]
        if missing:
            raise ValueError(
                f"tokenizer dict lacks {missing} (has {sorted(d)}); build it with Seq2SeqTokenizer.to_dict()"
            )
        src = Tokenizer.from_str(d["src"])
        return cls(src) if d["joint"] else cls(src, Tokenizer.from_str(d["tgt"]))

    def save(self, directory: str | Path) -> None:
        """Write `tokenizer.json` (joint) or `tokenizer_src.json` and `tokenizer_tgt.json` into `directory`.

        The files of the other layout are removed, so `load` never picks up a stale one.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.joint:
            self.src.save(str(directory / TOKENIZER_FILE))
            stale = [SRC_TOKENIZER_FILE, TGT_TOKENIZER_FILE]
        else:
            self.src.save(str(directory / SRC_TOKENIZER_FILE))
            self.tgt.save(str(directory / TGT_TOKENIZER_FILE))
            stale = [TOKENIZER_FILE]
        for name in stale:
            (directory / name).unlink(missing_ok=True)

    @classmethod
    def is_saved(cls, directory: str | Path) -> bool:
        """Whether `directory` holds what `load` reads: `tokenizer.json`, or both per-side files."""
        directory = Path(directory)
        per_side = (directory / SRC_TOKENIZER_FILE).is_file() and (directory / TGT_TOKENIZER_FILE).is_file()
        return (directory / TOKENIZER_FILE).is_file() or per_side

    @classmethod
    def load(cls, directory: str | Path) -> Seq2SeqTokenizer:
        """Read a tokenizer written by `save`.

        Raises:
            FileNotFoundError: `directory` holds neither `tokenizer.json` nor both per-side files.
        """
        directory = Path(directory)
        if (directory / TOKENIZER_FILE).is_file():
            return cls(Tokenizer.from_file(str(directory / TOKENIZER_FILE)))
        src_path, tgt_path = directory / SRC_TOKENIZER_FILE, directory / TGT_TOKENIZER_FILE
        if src_path.is_file() and tgt_path.is_file():
            return cls(Tokenizer.from_file(str(src_path)), Tokenizer.from_file(str(tgt_path)))
        raise FileNotFoundError(
            f"no tokenizer in {directory}: expected {TOKENIZER_FILE}, or {SRC_TOKENIZER_FILE} and "
            f"{TGT_TOKENIZER_FILE}; train one with Seq2SeqTokenizer.train(...).save(directory), or pass a checkpoint "
            "that carries its tokenizer"
        )

    # DataLoader workers receive a pickled copy: going through to_dict re-applies what the JSON does not hold.
    def __getstate__(self) -> dict[str, str | bool]:
        return self.to_dict()

    def __setstate__(self, state: dict[str, str | bool]) -> None:
        other = Seq2SeqTokenizer.from_dict(state)
        self.src, self.tgt = other.src, other.tgt

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(joint={self.joint}, src_vocab_size={self.src_vocab_size}, "
            f"tgt_vocab_size={self.tgt_vocab_size})"
        )
