"""Text queries and short texts (captions, transcripts, descriptions) as a text tower or decoder reads them:
EOS-terminated ids, padded; characters outside the tokenizer counted and warned about, never refused."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from .bpe import EOS_ID, PAD_ID, UNK_ID

__all__ = ["encode_eos", "encode_texts", "pad_ids"]

log = logging.getLogger(__name__)


def pad_ids(rows: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> Tensor:
    """Id lists as one long [B, L] tensor, padded with `pad_id` to the longest."""
    return pad_sequence([torch.tensor(r, dtype=torch.long) for r in rows], batch_first=True, padding_value=pad_id)


def encode_eos(tokenizer: Any, texts: Sequence[str], *, where: str) -> tuple[list[list[int]], int]:
    """EOS-terminated ids of `texts` (`tokenizer.encode_batch`) and how many texts held characters outside the
    tokenizer; those became `<unk>` and one warning naming `where` and the first such text says so."""
    ids = [[*row, EOS_ID] for row in tokenizer.encode_batch(list(texts))]
    unknown = [i for i, row in enumerate(ids) if UNK_ID in row]
    if unknown:
        log.warning(
            f"{where}: {len(unknown)} of {len(ids)} text(s) hold characters outside the tokenizer's vocabulary, "
            f"encoded as <unk> (first: {texts[unknown[0]]!r})"
        )
    return ids, len(unknown)


def encode_texts(
    tokenizer: Any,
    texts: Sequence[str],
    *,
    where: str = "encode_texts",
    normalize: Callable[[str], str] | None = None,
) -> tuple[Tensor, int]:
    """Query texts as long [B, L] EOS-terminated ids padded with `PAD_ID`, and how many held unknown characters.

    Raises:
        RuntimeError: No tokenizer yet (the datamodule's `setup()` has not run).
        ValueError: `texts` is not a non-empty list of strings (one string would be read as its characters).
    """
    if tokenizer is None:
        raise RuntimeError(f"{where}: no tokenizer yet; the datamodule's setup() must run before texts are encoded")
    if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"{where} takes a non-empty list of strings, got {texts!r}")
    texts = [normalize(t) for t in texts] if normalize is not None else list(texts)
    ids, unknown = encode_eos(tokenizer, texts, where=where)
    return pad_ids(ids), unknown
