"""The BPE plumbing every text task shares: fixed special ids, the normaliser and word splitting, training, checks.

Every vocabulary starts with `SPECIAL_TOKENS` at fixed ids (pad 0, bos 1, eos 2, unk 3), so models, collate functions
and checkpoints rely on them whatever the data. Text is normalised (NFKC, optionally lowercase, whitespace runs become
one space, ends stripped) and words are marked SentencePiece-style ("▁" at each word start), so decoding restores the
spaces. `mmattn.tasks.translation.Seq2SeqTokenizer` (a source/target pair) and `mmattn.tasks.text.TextTokenizer` (one
stream) are built on these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

__all__ = [
    "SPECIAL_TOKENS",
    "PAD_ID",
    "BOS_ID",
    "EOS_ID",
    "UNK_ID",
    "MIN_VOCAB_SIZE",
    "as_list",
    "check_non_blank",
    "check_texts",
    "check_tokenizer",
    "content_ids",
    "new_bpe",
    "text_chunks",
    "train_bpe",
    "train_byte_bpe",
]

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3

# The special tokens plus room for a handful of characters; less cannot hold any useful subword vocabulary.
MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + 8


_WORD_START = "\u2581"  # "▁", SentencePiece's word-start marker
_TRAIN_CHUNK = 1000  # texts handed to the Rust trainer per call back into Python


def new_bpe(lowercase: bool) -> Tokenizer:
    """An untrained BPE with mmattn's normaliser, word-start marking and `<unk>` for unseen characters."""
    # unk_token is what makes BPE emit <unk>: without it (or with byte_fallback) unseen characters vanish silently.
    # fuse_unk turns a word in an unseen script into one <unk> instead of one per character.
    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS[UNK_ID], fuse_unk=True, byte_fallback=False))
    steps: list[normalizers.Normalizer] = [normalizers.NFKC()]
    if lowercase:
        steps.append(normalizers.Lowercase())
    # Collapsing whitespace keeps tabs and newlines out of decoded text (mmattn-translate writes one translation a
    # line) and spends no tokens on spacing noise; the price is that double spaces do not round-trip.
    steps += [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_WORD_START, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=_WORD_START, prepend_scheme="always", split=True)
    return tok


def train_bpe(chunks: Iterator[list[str]], vocab_size: int, min_frequency: int, lowercase: bool) -> Tokenizer:
    """Train a BPE of at most `vocab_size` tokens (specials at ids 0..3) on chunks of texts."""
    tok = new_bpe(lowercase)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),  # first, so they take ids 0..3
        # The trainer keeps every character it sees even beyond vocab_size; the limit makes vocab_size a true upper
        # bound, and the rarest characters of a huge alphabet become <unk>.
        limit_alphabet=vocab_size - len(SPECIAL_TOKENS),
        show_progress=False,
    )
    tok.train_from_iterator(chunks, trainer)
    return tok


def train_byte_bpe(chunks: Iterator[list[str]], vocab_size: int, min_frequency: int) -> Tokenizer:
    """Train a byte-level BPE (GPT-2's scheme): merges over UTF-8 bytes, so every text round-trips exactly."""
    # No normaliser: whitespace, newlines and case are kept, which a language model of raw text must predict.
    # <unk> is declared for the checks every mmattn tokenizer passes; with all 256 bytes in the alphabet it never fires.
    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS[UNK_ID]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 byte symbols from the start: no text can hold an unseen one.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(chunks, trainer)
    return tok


def text_chunks(texts: Iterable[str], name: str, non_blank: dict[str, bool]) -> Iterator[list[str]]:
    """Texts in chunks for the trainer; sets `non_blank[name]` once a non-blank text passes."""
    # Counts as it goes, so a one-shot iterator (an open file) is read once and never held in memory.
    chunk: list[str] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] is a {type(text).__name__}, not a str; pass the sentences as strings")
        if not non_blank[name] and text.strip():
            non_blank[name] = True
        chunk.append(text)
        if len(chunk) == _TRAIN_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_texts(texts: Iterable[str], name: str) -> None:
    """Refuse a single string where an iterable of texts is meant."""
    if isinstance(texts, str):
        raise TypeError(f"{name} is a single string; pass an iterable of sentences (a list, or an open text file)")


def check_non_blank(non_blank: dict[str, bool], name: str) -> None:
    """Refuse a corpus that held no non-blank text."""
    if not non_blank[name]:
        raise ValueError(f"{name} holds no non-blank text; pass that side of the training corpus, a sentence per item")


def check_tokenizer(tok: Tokenizer, side: str) -> None:
    """Check that `tok` has mmattn's special ids and, if BPE, an `<unk>` token."""
    for expected, token in enumerate(SPECIAL_TOKENS):
        got = tok.token_to_id(token)
        if got != expected:
            raise ValueError(
                f"{side} tokenizer maps {token!r} to id {got}, but mmattn needs {SPECIAL_TOKENS} at ids 0..3; "
                "build it with Seq2SeqTokenizer.train or TextTokenizer.train"
            )
    model = tok.model
    if isinstance(model, models.BPE) and model.unk_token != SPECIAL_TOKENS[UNK_ID]:
        raise ValueError(
            f"{side} tokenizer's BPE model has unk_token {model.unk_token!r}, so it would drop unseen characters "
            f"silently; it needs unk_token {SPECIAL_TOKENS[UNK_ID]!r} "
            "(build it with Seq2SeqTokenizer.train or TextTokenizer.train)"
        )


def as_list(ids: Any) -> list:
    """Ids of a list, tensor or array as a plain list."""
    # Tensors and arrays: one tolist() instead of a 0-d tensor per element.
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)


def content_ids(ids: Sequence[int]) -> list[int]:
    """The ids up to the first eos, without pad and bos."""
    out = []
    for i in ids:
        if i == EOS_ID:
            break
        if i != PAD_ID and i != BOS_ID:
            out.append(i)
    return out
