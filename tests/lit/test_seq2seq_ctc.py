"""Seq2SeqModule's joint CTC/attention loss against the CTC definition summed over every alignment by brute force,
CTC decoding and the WER/CER metrics."""

import itertools
import math

import pytest
import torch
from mmattn_testing import IdTokenizer

from mmattn.lit import Seq2SeqModule
from mmattn.models import EncoderDecoder

PAD, BOS, EOS = 0, 1, 2
V = 5


def _module(ctc_weight: float, **kw) -> Seq2SeqModule:
    torch.manual_seed(0)
    net = EncoderDecoder(
        src_vocab_size=7, tgt_vocab_size=V, dim=16, encoder_depth=1, decoder_depth=1, num_heads=2, ctc=True
    )
    return Seq2SeqModule(net, ctc_weight=ctc_weight, label_smoothing=0.0, tokenizer=IdTokenizer(V), **kw).eval()


def _ctc_by_enumeration(log_probs: torch.Tensor, labels: list[int]) -> float:
    """-log of the summed probability of every frame labelling that collapses (merge repeats, drop blank) to labels."""
    total = 0.0
    for path in itertools.product(range(V), repeat=log_probs.shape[0]):
        collapsed = [c for i, c in enumerate(path) if c != PAD and (i == 0 or c != path[i - 1])]
        if collapsed == labels:
            total += math.exp(sum(log_probs[t, c].item() for t, c in enumerate(path)))
    return -math.log(total)


def test_joint_loss_is_the_weighted_sum_and_ctc_matches_its_definition() -> None:
    module = _module(0.3)
    src = torch.tensor([[3, 4, 5, 6], [4, 6, 3, PAD]])  # the second source has 3 frames
    tgt = torch.tensor([[3, 3, EOS], [4, EOS, PAD]])  # labels [3, 3] and [4]; EOS is no CTC label
    loss, tokens, parts = module._loss({"src": src, "tgt": tgt})
    memory, mask = module.net.encode(src)
    log_probs = torch.log_softmax(module.net.ctc_logits(memory), dim=-1).detach()
    expected_ctc = (_ctc_by_enumeration(log_probs[0], [3, 3]) + _ctc_by_enumeration(log_probs[1, :3], [4])) / 3
    assert tokens == 5
    assert parts["ctc_loss"].item() == pytest.approx(expected_ctc, rel=1e-5)
    assert loss.item() == pytest.approx(0.7 * parts["att_loss"].item() + 0.3 * expected_ctc, rel=1e-6)
    # ctc_weight 0 is the plain attention loss and reports no parts.
    plain, _, none = _module(0.0)._loss({"src": src, "tgt": tgt})
    assert none == {} and plain.item() == pytest.approx(parts["att_loss"].item(), rel=1e-6)


def test_ctc_decoding_and_error_rates() -> None:
    module = _module(0.5, decoding={"method": "ctc"}, metrics=["wer", "cer", "exact"])
    src = torch.tensor([[3, 4, 5, 6], [4, 6, 3, PAD]])
    out = module.generate(src)
    assert (out == EOS).sum(dim=1).eq(1).all()  # every row closed once with EOS
    metrics = module.test_metrics
    metrics["wer"].update(["a b c", "a x"], ["a b c", "a b"])
    metrics["cer"].update(["abc"], ["abd"])
    values = metrics.compute()
    assert values["test/wer"].item() == pytest.approx(1 / 5)
    assert values["test/cer"].item() == pytest.approx(1 / 3)


def test_ctc_options_are_checked() -> None:
    torch.manual_seed(0)
    net = EncoderDecoder(src_vocab_size=7, tgt_vocab_size=V, dim=16, encoder_depth=1, decoder_depth=1, num_heads=2)
    with pytest.raises(ValueError, match="model.ctc=true"):
        Seq2SeqModule(net, ctc_weight=0.3)
    with pytest.raises(ValueError, match="model.ctc=true"):
        Seq2SeqModule(net, decoding={"method": "ctc"})
    with pytest.raises(ValueError, match="decoding.method"):
        Seq2SeqModule(net, decoding={"method": "viterbi"})
    with pytest.raises(ValueError, match=r"ctc_weight must be in \[0, 1\]"):
        Seq2SeqModule(net, ctc_weight=1.5)
    with pytest.raises(ValueError, match="trains no decoder"):
        _module(1.0)


def test_joint_decoding_is_beam_search_scored_with_the_ctc_head_and_is_checked() -> None:
    from mmattn.models import beam_search

    src = torch.tensor([[3, 4, 5, 6], [4, 6, 3, PAD]])
    module = _module(0.3, decoding={"beam_size": 3, "ctc_weight": 0.4, "max_len_a": 1.0, "max_len_b": 2})
    expected = beam_search(
        module.net, src, bos_id=BOS, eos_id=EOS, pad_id=PAD, beam_size=3, max_len_a=1.0, max_len_b=2,
        ctc_weight=0.4, blank_id=PAD,
    )  # fmt: skip
    assert torch.equal(module.generate(src), expected)
    # Greedy joint decoding is a beam of one, scored jointly; mmattn-transcribe/translate set it per call.
    module.configure_prediction(beam_size=1, ctc_weight=1.0)
    assert (module.generate(src) == EOS).sum(dim=1).eq(1).all()
    torch.manual_seed(0)
    net = EncoderDecoder(src_vocab_size=7, tgt_vocab_size=V, dim=16, encoder_depth=1, decoder_depth=1, num_heads=2)
    with pytest.raises(ValueError, match=r"module.decoding.ctc_weight=0.3 scores hypotheses with the encoder's CTC"):
        Seq2SeqModule(net, decoding={"ctc_weight": 0.3})
    with pytest.raises(ValueError, match=r"module.decoding.ctc_weight must be in \[0, 1\], got 2.0"):
        _module(0.3, decoding={"ctc_weight": 2.0})
