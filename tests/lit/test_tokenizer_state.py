"""A net's vocabulary against its tokenizer: the allowed slack, and the one-line errors of LanguageModelModule and
Seq2SeqModule at setup, in both directions, naming both sizes and the override."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from torch import nn

from mmattn.lit import LanguageModelModule, Seq2SeqModule
from mmattn.lit.tokenizer_state import vocab_size_limit, vocab_size_problem
from mmattn.models import DecoderOnly, EncoderDecoder


def test_the_limit_is_the_next_multiple_of_64_or_a_quarter_more() -> None:
    assert vocab_size_limit(77) == 128  # the LM demo's SCAN BPE in gpt_demo's 128 rows
    assert vocab_size_limit(126) == 157 and vocab_size_limit(55) == 68
    assert vocab_size_limit(260) == 325
    assert vocab_size_limit(50257) == 62821  # GPT-2's 50,304 padded rows fit well within


def test_a_problem_names_both_sizes_and_the_override_on_one_line() -> None:
    assert vocab_size_problem("the tokenizer", 260, "model.vocab_size", 128) == (
        "the tokenizer has 260 ids but model.vocab_size is 128, too few rows to embed them; set model.vocab_size=260"
    )
    wide = vocab_size_problem("the tokenizer", 260, "model.vocab_size", 8000)
    assert wide is not None and "\n" not in wide
    assert wide.startswith("the tokenizer has 260 ids but model.vocab_size is 8000, more than 325")
    assert "7740 output rows would never be trained" in wide and wide.endswith("set model.vocab_size=260")
    for rows in (260, 320, 325):
        assert vocab_size_problem("the tokenizer", 260, "model.vocab_size", rows) is None
    # A trained checkpoint with spare rows still evaluates; too few rows never work.
    assert vocab_size_problem("the tokenizer", 260, "model.vocab_size", 8000, fitting=False) is None
    assert vocab_size_problem("the tokenizer", 260, "model.vocab_size", 128, fitting=False) is not None


def _tokenizer(**sizes: int) -> SimpleNamespace:
    return SimpleNamespace(pad_id=0, bos_id=1, eos_id=2, **sizes)


def _set_up(module, tokenizer: SimpleNamespace, stage: str = "fit"):
    module._trainer = SimpleNamespace(datamodule=SimpleNamespace(tokenizer=tokenizer))
    module.setup(stage)
    return module


@pytest.mark.parametrize(
    ("rows", "why"), [(128, "is 128, too few rows to embed them"), (8000, "is 8000, more than 325 (")]
)
def test_the_language_model_stops_when_its_vocabulary_does_not_fit(rows: int, why: str) -> None:
    module = LanguageModelModule(DecoderOnly(vocab_size=rows, dim=16, depth=1, num_heads=2, context_length=8))
    with pytest.raises(ValueError) as caught:
        _set_up(module, _tokenizer(vocab_size=260))
    message = str(caught.value)
    assert message.startswith(f"the tokenizer has 260 ids but model.vocab_size {why}")
    assert message.endswith("set model.vocab_size=260") and "\n" not in message


def test_the_language_model_takes_a_padded_vocabulary_and_evaluates_a_wide_one() -> None:
    padded = LanguageModelModule(DecoderOnly(vocab_size=320, dim=16, depth=1, num_heads=2, context_length=8))
    assert _set_up(padded, _tokenizer(vocab_size=260)).tokenizer.vocab_size == 260
    wide = LanguageModelModule(DecoderOnly(vocab_size=8000, dim=16, depth=1, num_heads=2, context_length=8))
    _set_up(wide, _tokenizer(vocab_size=260), stage="validate")


def _encoder_decoder(src: int, tgt: int) -> EncoderDecoder:
    return EncoderDecoder(src_vocab_size=src, tgt_vocab_size=tgt, dim=16, encoder_depth=1, decoder_depth=1, num_heads=2)


def test_seq2seq_names_every_side_that_does_not_fit_in_one_line() -> None:
    module = Seq2SeqModule(_encoder_decoder(8000, 8000))
    with pytest.raises(ValueError) as caught:
        _set_up(module, _tokenizer(src_vocab_size=126, tgt_vocab_size=126))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("the source tokenizer has 126 ids but model.src_vocab_size is 8000, more than 157")
    assert "set model.src_vocab_size=126; the target tokenizer has 126 ids but model.tgt_vocab_size is 8000" in message
    assert message.endswith("set model.tgt_vocab_size=126")

    module = Seq2SeqModule(_encoder_decoder(128, 100), tokenizer=None)
    with pytest.raises(ValueError, match=r"^the target tokenizer has 126 ids but model.tgt_vocab_size is 100, too "):
        _set_up(module, _tokenizer(src_vocab_size=126, tgt_vocab_size=126))
    _set_up(Seq2SeqModule(_encoder_decoder(128, 128)), _tokenizer(src_vocab_size=126, tgt_vocab_size=126))


class _AudioToText(nn.Module):
    """What Seq2SeqModule sees of a speech net: a source adapter instead of a source vocabulary."""

    src_vocab_size = 0
    ctc_head = None

    def __init__(self, tgt_vocab_size: int) -> None:
        super().__init__()
        self.tgt_vocab_size = tgt_vocab_size
        self.source = nn.Identity()


def test_seq2seq_checks_only_the_target_of_a_net_with_a_source_adapter() -> None:
    _set_up(Seq2SeqModule(_AudioToText(64)), _tokenizer(tgt_vocab_size=55))
    with pytest.raises(ValueError, match=r"^the target tokenizer has 55 ids but model.tgt_vocab_size is 1000, more "):
        _set_up(Seq2SeqModule(_AudioToText(1000)), _tokenizer(tgt_vocab_size=55))


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"positions": "learned", "max_positions": 32}, "model.max_positions=32"),
        ({"random_positions": 40}, "model.random_positions=40"),
    ],
)
def test_seq2seq_stops_when_the_data_is_longer_than_its_positions_reach(options: dict, key: str) -> None:
    net = EncoderDecoder(
        src_vocab_size=128, tgt_vocab_size=128, dim=16, encoder_depth=1, decoder_depth=1, num_heads=2, **options
    )
    data = SimpleNamespace(tokenizer=_tokenizer(src_vocab_size=126, tgt_vocab_size=126), max_len=64)
    module = Seq2SeqModule(net)
    module._trainer = SimpleNamespace(datamodule=data)
    with pytest.raises(ValueError, match=rf"^data.max_len=64 lets sequences take 64 positions, but {key} places"):
        module.setup("fit")
    module = Seq2SeqModule(net)
    module._trainer = SimpleNamespace(datamodule=data)
    module.setup("validate")  # evaluation sequences are not cut to max_len: longer ones may still fit
