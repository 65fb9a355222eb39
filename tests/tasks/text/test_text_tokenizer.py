"""TextTokenizer: bytes and byte-level BPE round-trip exactly, BPE maps unseen characters to <unk>, saving, pickling,
errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from mmattn.tasks.text.bpe import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from mmattn.tasks.text.tokenizer import TextTokenizer

LINES = ["walk twice and jump", "look left thrice", "run around right after turn left"] * 5


def test_bytes_round_trip_every_string_exactly() -> None:
    tok = TextTokenizer.bytes()
    assert tok.vocab_size == 260
    text = "héllo  wörld\n\t</s> 日本"
    ids = tok.encode(text)
    assert len(ids) == len(text.encode("utf-8")) and min(ids) >= 4  # one id per byte, never a special token
    assert tok.decode([BOS_ID, *ids, EOS_ID, 77, PAD_ID]) == text
    assert tok.decode(tok.encode("a")[:1] + [4 + 0xC3]) == "a\ufffd"  # a cut UTF-8 sequence decodes as U+FFFD


def test_bpe_maps_unseen_characters_to_unk_and_decodes_batches() -> None:
    tok = TextTokenizer.train(LINES, vocab_size=100, min_frequency=1)
    assert tok.vocab_size <= 100 and tok.tgt_vocab_size == tok.vocab_size
    assert tok.decode(tok.encode("walk twice")) == "walk twice"
    assert UNK_ID in tok.encode("walk ßß")
    rows = [[BOS_ID, *tok.encode("jump"), EOS_ID, PAD_ID, PAD_ID], [*tok.encode("look left"), EOS_ID]]
    assert tok.decode_batch(rows) == ["jump", "look left"] == tok.decode_tgt_batch(rows)
    assert tok.encode_batch(["jump", "run"]) == [tok.encode("jump"), tok.encode("run")]


def test_byte_level_bpe_round_trips_every_string_with_fewer_tokens_than_bytes() -> None:
    prose = ["To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"] * 20
    tok = TextTokenizer.train(prose, vocab_size=300, min_frequency=2, byte_level=True)
    assert tok.kind == "bpe" and 260 < tok.vocab_size <= 300
    # Spacing, newlines, tabs, unseen scripts and a "</s>" spelled in the text all come back exactly.
    for text in (prose[0], "  two  spaces\n\n\ttab", "日本 ß 🙂", "</s> <unk>"):
        ids = tok.encode(text)
        assert UNK_ID not in ids and min(ids) >= 4
        assert tok.decode([BOS_ID, *ids, EOS_ID, PAD_ID]) == text
    # Merges: the trained text takes far fewer tokens than bytes.
    assert len(tok.encode(prose[0])) < len(prose[0].encode()) / 2
    assert TextTokenizer.from_dict(tok.to_dict()).encode(prose[0]) == tok.encode(prose[0])
    with pytest.raises(ValueError, match="byte-level BPE needs vocab_size > 260"):
        TextTokenizer.train(prose, vocab_size=260, byte_level=True)
    with pytest.raises(ValueError, match="lowercase=False"):
        TextTokenizer.train(prose, vocab_size=300, byte_level=True, lowercase=True)


def test_save_load_dict_and_pickle_keep_the_tokenizer(tmp_path: Path) -> None:
    for tok in (TextTokenizer.train(LINES, vocab_size=100, min_frequency=1), TextTokenizer.bytes()):
        tok.save(tmp_path / tok.kind)
        assert TextTokenizer.load(tmp_path / tok.kind) == tok
        assert TextTokenizer.from_dict(tok.to_dict()) == tok
        assert pickle.loads(pickle.dumps(tok)) == tok


def test_bad_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocab_size 5 is too small"):
        TextTokenizer.train(LINES, vocab_size=5)
    with pytest.raises(ValueError, match="no non-blank text"):
        TextTokenizer.train(["", "  "], vocab_size=100)
    with pytest.raises(TypeError, match="single string"):
        TextTokenizer.train("walk", vocab_size=100)
    with pytest.raises(FileNotFoundError, match=f"no tokenizer.json in {tmp_path}"):
        TextTokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        TextTokenizer.load(tmp_path)
