"""Seq2SeqTokenizer: fixed special ids, round trips, <unk>, eos handling, batching, serialisation, errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from mmattn.tasks.translation.tokenizer import (
    BOS_ID,
    EOS_ID,
    MIN_VOCAB_SIZE,
    PAD_ID,
    SPECIAL_TOKENS,
    SRC_TOKENIZER_FILE,
    TGT_TOKENIZER_FILE,
    TOKENIZER_FILE,
    UNK_ID,
    Seq2SeqTokenizer,
)

SRC = [
    "Hello, world!",
    "The 3 cats sat on 12 mats.",
    "Don't stop: it's 5:30 p.m.?",
    "jump around left twice",
    "walk and look right thrice",
    "run opposite left after jump",
] * 3
TGT = [
    "Hallo, Welt!",
    "Die 3 Katzen saßen auf 12 Matten.",
    "Hör nicht auf: es ist 5:30 Uhr?",
    "I_TURN_LEFT I_JUMP I_TURN_LEFT I_JUMP",
    "I_WALK I_TURN_RIGHT I_LOOK",
    "I_TURN_LEFT I_TURN_LEFT I_JUMP I_RUN",
] * 3


@pytest.fixture(scope="module")
def joint() -> Seq2SeqTokenizer:
    return Seq2SeqTokenizer.train(SRC, TGT, vocab_size=200)


@pytest.fixture(scope="module")
def separate() -> Seq2SeqTokenizer:
    return Seq2SeqTokenizer.train(SRC, TGT, vocab_size=200, joint=False)


@pytest.fixture(scope="module", params=["joint", "separate"])
def tok(request: pytest.FixtureRequest) -> Seq2SeqTokenizer:
    return request.getfixturevalue(request.param)


def test_special_ids_are_fixed(tok: Seq2SeqTokenizer) -> None:
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    for side in (tok.src, tok.tgt):
        assert [side.token_to_id(t) for t in SPECIAL_TOKENS] == [PAD_ID, BOS_ID, EOS_ID, UNK_ID]
        assert side.model.unk_token == "<unk>" and not side.model.byte_fallback


def test_joint_shares_one_vocabulary_separate_has_two(joint: Seq2SeqTokenizer, separate: Seq2SeqTokenizer) -> None:
    assert joint.joint and joint.src is joint.tgt and joint.src_vocab_size == joint.tgt_vocab_size
    assert not separate.joint and separate.src is not separate.tgt
    # "j" only occurs in the source text: known to the source vocabulary, <unk> to the target one.
    assert UNK_ID not in separate.encode_src("jump") and UNK_ID in separate.encode_tgt("jump")
    assert UNK_ID not in joint.encode_tgt("jump")


# Ordinary sentences (seen characters, single spaces) come back unchanged, also in combinations never seen in training.
SRC_ROUND_TRIP = [*SRC[:6], "world, hello! 35 cats twice"]
TGT_ROUND_TRIP = [*TGT[:6], "I_TURN_LEFT I_WALK", "Die 12 Katzen."]


@pytest.mark.parametrize("text", SRC_ROUND_TRIP)
def test_round_trip_source(tok: Seq2SeqTokenizer, text: str) -> None:
    assert tok.decode_src(tok.encode_src(text)) == text


@pytest.mark.parametrize("text", TGT_ROUND_TRIP)
def test_round_trip_target(tok: Seq2SeqTokenizer, text: str) -> None:
    assert tok.decode_tgt(tok.encode_tgt(text)) == text


def test_joint_round_trips_both_sides_on_either(joint: Seq2SeqTokenizer) -> None:
    for text in SRC_ROUND_TRIP + TGT_ROUND_TRIP:
        assert joint.decode_tgt(joint.encode_src(text)) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello,  world!", "Hello, world!"),  # double spaces collapse: the normalised text round-trips, not the input
        ("  jump\tleft \n twice  ", "jump left twice"),  # tabs, newlines and the ends too
        ("Hello,\u00a0world!", "Hello, world!"),  # NFKC: a no-break space is a space
        ("\uff28ello, world!", "Hello, world!"),  # NFKC: a full-width H is an H
        ("", ""),
    ],
)
def test_whitespace_and_nfkc_normalisation(tok: Seq2SeqTokenizer, text: str, expected: str) -> None:
    assert tok.decode_src(tok.encode_src(text)) == expected
    assert tok.encode_src(text) == tok.encode_src(expected)


def test_unseen_characters_become_unk(tok: Seq2SeqTokenizer) -> None:
    ids = tok.encode_src("Hello \U0001f600 world \u65e5\u672c\u8a9e!")
    # Runs of unseen characters fuse into one <unk>: one for the emoji, one for the three CJK characters.
    assert ids.count(UNK_ID) == 2
    assert tok.decode_src(ids) == "Hello <unk> world <unk>!"
    assert tok.decode_src(tok.encode_src("w\u00e9rld")) == "w<unk>rld"


def test_text_that_looks_special_is_not_special(tok: Seq2SeqTokenizer) -> None:
    for text in ("</s>", "a <s> b <pad>", "<unk>"):
        ids = tok.encode_src(text)
        assert PAD_ID not in ids and BOS_ID not in ids and EOS_ID not in ids[:-1]
        assert tok.encode_src_batch([text]) == [ids]


def test_eos_appended_without_bos(tok: Seq2SeqTokenizer) -> None:
    for encode in (tok.encode_src, tok.encode_tgt):
        ids = encode("Hello, world!")
        assert ids[-1] == EOS_ID and BOS_ID not in ids and ids.count(EOS_ID) == 1
        assert encode("") == [EOS_ID]


def test_decode_stops_at_eos_and_skips_pad_and_bos(tok: Seq2SeqTokenizer) -> None:
    body = tok.encode_tgt("Hallo, Welt!")[:-1]
    other = tok.encode_tgt("I_JUMP")[:-1]
    ids = [BOS_ID, *body[:2], PAD_ID, *body[2:], EOS_ID, *other, EOS_ID, PAD_ID, PAD_ID]
    assert tok.decode_tgt(ids) == "Hallo, Welt!"
    assert tok.decode_tgt(torch.tensor(ids)) == "Hallo, Welt!"
    assert tok.decode_tgt([EOS_ID, *body]) == ""
    assert tok.decode_tgt([BOS_ID, *body]) == "Hallo, Welt!"  # no eos: decode everything


def test_batch_equals_single(tok: Seq2SeqTokenizer) -> None:
    texts = [*SRC[:6], "", "Hello \U0001f600"]
    assert tok.encode_src_batch(texts) == [tok.encode_src(t) for t in texts]
    assert tok.encode_tgt_batch(iter(texts)) == [tok.encode_tgt(t) for t in texts]
    assert tok.encode_src_batch([]) == []

    rows = [[BOS_ID, *ids] for ids in tok.encode_tgt_batch(TGT[:6])]
    width = max(map(len, rows)) + 2
    padded = torch.tensor([row + [PAD_ID] * (width - len(row)) for row in rows])
    decoded = tok.decode_tgt_batch(padded)
    assert decoded == [tok.decode_tgt(row) for row in padded] == TGT[:6]
    assert tok.decode_tgt_batch(list(padded)) == decoded  # a list of 1-D tensors
    assert tok.decode_tgt_batch(padded.tolist()) == decoded


def test_vocab_size_is_an_upper_bound() -> None:
    big = Seq2SeqTokenizer.train(SRC, TGT, vocab_size=8000)
    assert big.src_vocab_size < 8000 and big.src_vocab_size == len(big.src.get_vocab())
    # The corpus has ~50 distinct characters; the rarest ones give way to keep within the bound.
    small = Seq2SeqTokenizer.train(SRC, TGT, vocab_size=MIN_VOCAB_SIZE, joint=False)
    assert small.src_vocab_size <= MIN_VOCAB_SIZE and small.tgt_vocab_size <= MIN_VOCAB_SIZE
    assert UNK_ID in small.encode_src("Don't stop: it's 5:30 p.m.?")


def test_lowercase() -> None:
    tok = Seq2SeqTokenizer.train(SRC, TGT, vocab_size=200, lowercase=True)
    assert tok.decode_src(tok.encode_src("HELLO, World!")) == "hello, world!"
    assert tok.decode_tgt(tok.encode_tgt("I_JUMP")) == "i_jump"


def test_trains_from_one_shot_iterators(joint: Seq2SeqTokenizer, tmp_path: Path) -> None:
    path = tmp_path / "src.txt"
    path.write_text("\n".join(SRC) + "\n", encoding="utf-8")
    with path.open(encoding="utf-8") as lines:
        tok = Seq2SeqTokenizer.train(lines, (t for t in TGT), vocab_size=200)
    assert tok.src.get_vocab() == joint.src.get_vocab()
    assert [tok.encode_src(t) for t in SRC[:6]] == [joint.encode_src(t) for t in SRC[:6]]


def _same_encodings(a: Seq2SeqTokenizer, b: Seq2SeqTokenizer) -> None:
    texts = [*SRC[:6], *TGT[:6], "Hello \U0001f600 </s>", "a  b"]
    assert a.joint == b.joint
    assert (a.src_vocab_size, a.tgt_vocab_size) == (b.src_vocab_size, b.tgt_vocab_size)
    assert a.encode_src_batch(texts) == b.encode_src_batch(texts)
    assert [a.encode_tgt(t) for t in texts] == [b.encode_tgt(t) for t in texts]
    assert a.decode_tgt_batch(a.encode_tgt_batch(texts)) == b.decode_tgt_batch(b.encode_tgt_batch(texts))


def test_to_dict_from_dict(tok: Seq2SeqTokenizer) -> None:
    d = tok.to_dict()
    assert all(isinstance(v, (str, bool)) for v in d.values())
    assert d["joint"] == tok.joint and ("tgt" in d) != tok.joint
    restored = Seq2SeqTokenizer.from_dict(d)
    _same_encodings(tok, restored)
    assert restored.joint == (restored.src is restored.tgt)


def test_to_dict_survives_torch_load_weights_only(tok: Seq2SeqTokenizer, tmp_path: Path) -> None:
    path = tmp_path / "fake.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "tokenizer": tok.to_dict()}, path)
    checkpoint = torch.load(path, weights_only=True)
    _same_encodings(tok, Seq2SeqTokenizer.from_dict(checkpoint["tokenizer"]))


def test_save_load(tok: Seq2SeqTokenizer, tmp_path: Path) -> None:
    tok.save(tmp_path / "tok")
    names = sorted(p.name for p in (tmp_path / "tok").iterdir())
    assert names == ([TOKENIZER_FILE] if tok.joint else [SRC_TOKENIZER_FILE, TGT_TOKENIZER_FILE])
    _same_encodings(tok, Seq2SeqTokenizer.load(str(tmp_path / "tok")))


def test_save_replaces_the_other_layout(joint: Seq2SeqTokenizer, separate: Seq2SeqTokenizer, tmp_path: Path) -> None:
    separate.save(tmp_path)
    joint.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [TOKENIZER_FILE]
    assert Seq2SeqTokenizer.load(tmp_path).joint
    separate.save(tmp_path)
    assert not Seq2SeqTokenizer.load(tmp_path).joint


def test_pickle_keeps_everything(tok: Seq2SeqTokenizer) -> None:
    # DataLoader workers get pickled copies; "</s>" in a sentence must stay text there too.
    copy = pickle.loads(pickle.dumps(tok))
    _same_encodings(tok, copy)
    assert copy.joint == (copy.src is copy.tgt)


def test_repr(joint: Seq2SeqTokenizer) -> None:
    assert repr(joint) == f"Seq2SeqTokenizer(joint=True, src_vocab_size={joint.src_vocab_size}, " + (
        f"tgt_vocab_size={joint.tgt_vocab_size})"
    )


@pytest.mark.parametrize("joint_mode", [True, False])
def test_training_errors(joint_mode: bool) -> None:
    with pytest.raises(ValueError, match=f"vocab_size {MIN_VOCAB_SIZE - 1} is too small"):
        Seq2SeqTokenizer.train(SRC, TGT, vocab_size=MIN_VOCAB_SIZE - 1, joint=joint_mode)
    with pytest.raises(ValueError, match="min_frequency must be >= 1, got 0"):
        Seq2SeqTokenizer.train(SRC, TGT, min_frequency=0, joint=joint_mode)
    with pytest.raises(ValueError, match="src_texts holds no non-blank text"):
        Seq2SeqTokenizer.train([], TGT, joint=joint_mode)
    with pytest.raises(ValueError, match="tgt_texts holds no non-blank text"):
        Seq2SeqTokenizer.train(SRC, ["", "  \n"], joint=joint_mode)
    with pytest.raises(TypeError, match="src_texts is a single string"):
        Seq2SeqTokenizer.train("data/train.en", TGT, joint=joint_mode)
    with pytest.raises(TypeError, match=r"tgt_texts\[1\] is a bytes, not a str"):
        Seq2SeqTokenizer.train(SRC, ["ok", b"bytes"], joint=joint_mode)


def test_load_errors(separate: Seq2SeqTokenizer, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=f"no tokenizer in {missing}.*Seq2SeqTokenizer.train.*checkpoint"):
        Seq2SeqTokenizer.load(missing)
    separate.save(tmp_path)
    (tmp_path / TGT_TOKENIZER_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=TGT_TOKENIZER_FILE):
        Seq2SeqTokenizer.load(tmp_path)


def test_from_dict_errors(separate: Seq2SeqTokenizer) -> None:
    d = separate.to_dict()
    del d["tgt"]
    with pytest.raises(ValueError, match=r"lacks \['tgt'\].*to_dict"):
        Seq2SeqTokenizer.from_dict(d)
    with pytest.raises(ValueError, match=r"lacks \['joint', 'src', 'tgt'\]"):
        Seq2SeqTokenizer.from_dict({})


def test_foreign_tokenizers_are_rejected() -> None:
    with pytest.raises(ValueError, match="source tokenizer maps '<pad>' to id None"):
        Seq2SeqTokenizer(Tokenizer(models.BPE(unk_token="<unk>")))
    no_unk = Tokenizer(models.BPE())
    no_unk.pre_tokenizer = pre_tokenizers.Whitespace()
    no_unk.train_from_iterator(SRC, trainers.BpeTrainer(special_tokens=list(SPECIAL_TOKENS), show_progress=False))
    with pytest.raises(ValueError, match="unk_token None"):
        Seq2SeqTokenizer(no_unk)
