"""Guided attention (Tachibana et al., 2017): the loss against its formula written out per element, that it trains
the cross-attention (gradients reach it, only in training), and its options' checks."""

import math

import pytest
import torch
from mmattn_testing import IdTokenizer

from mmattn.lit import Seq2SeqModule
from mmattn.lit.seq2seq import guided_attention_loss
from mmattn.models import EncoderDecoder
from mmattn.nn import capture_attention

PAD, EOS = 0, 2
V = 6


def _by_element(w: torch.Tensor, q_len: list[int], k_len: list[int], sigma: float) -> float:
    total, rows = 0.0, 0
    for b in range(w.shape[0]):
        for h in range(w.shape[1]):
            for n in range(q_len[b]):
                rows += 1
                for t in range(k_len[b]):
                    d = (n + 0.5) / q_len[b] - (t + 0.5) / k_len[b]
                    total += w[b, h, n, t].item() * (1 - math.exp(-(d**2) / (2 * sigma**2)))
    return total / rows


def test_loss_matches_the_formula_and_ignores_padding() -> None:
    torch.manual_seed(0)
    w = torch.softmax(torch.randn(2, 3, 4, 7), dim=-1)
    q_len, k_len = [4, 2], [7, 5]
    got = guided_attention_loss([w, w.flip(-1)], torch.tensor(q_len), torch.tensor(k_len), 0.2)
    want = (_by_element(w, q_len, k_len, 0.2) + _by_element(w.flip(-1), q_len, k_len, 0.2)) / 2
    assert got.item() == pytest.approx(want, rel=1e-5)
    # A diagonal alignment costs less than an anti-diagonal one.
    eye = torch.eye(5)[None, None]
    diag = guided_attention_loss([eye], torch.tensor([5]), torch.tensor([5]), 0.2)
    anti = guided_attention_loss([eye.flip(-1)], torch.tensor([5]), torch.tensor([5]), 0.2)
    assert diag.item() < 0.01 < 0.5 < anti.item()


def _module(**kw) -> Seq2SeqModule:
    torch.manual_seed(0)
    net = EncoderDecoder(
        src_vocab_size=8, tgt_vocab_size=V, dim=16, encoder_depth=1, decoder_depth=2, num_heads=2, ctc=True, dropout=0.0
    )
    return Seq2SeqModule(net, label_smoothing=0.0, tokenizer=IdTokenizer(V), **kw)


def test_guided_loss_is_added_in_training_and_reaches_the_cross_attention() -> None:
    module = _module(ctc_weight=0.3, guided_attention=2.0)
    src = torch.tensor([[3, 4, 5, 6, 7], [4, 6, 3, PAD, PAD]])
    batch = {"src": src, "tgt": torch.tensor([[3, 4, EOS], [5, EOS, PAD]])}
    module.train()
    loss, _, parts = module._loss(batch)
    expected = 0.7 * parts["att_loss"] + 0.3 * parts["ctc_loss"] + 2.0 * parts["guide_loss"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # Its value is the function's on the cross-attention weights of the same forward pass.
    module.eval()
    src, tgt = batch["src"], batch["tgt"]
    tgt_in = torch.cat([torch.full_like(tgt[:, :1], 1), tgt[:, :-1]], dim=1)
    with torch.no_grad(), capture_attention(module.net, ["decoder.layers.*.cross_attn"], to_cpu=False) as maps:
        memory, mask = module.net.encode(src)
        module.net.decode(tgt_in, memory, mask)
    weights = [w for layer in maps.values() for w in layer]
    want = guided_attention_loss(weights, torch.tensor([3, 2]), (~mask).sum(1), 0.2)
    assert parts["guide_loss"].item() == pytest.approx(want.item(), rel=1e-5)  # the net has no dropout
    # The guide alone trains the cross-attention's query/key projections.
    module.train()
    module.zero_grad()
    module._loss(batch)[2]["guide_loss"].backward()
    grad = module.net.decoder.layers[0].cross_attn.qkv.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    # Evaluation reports the plain joint loss.
    module.eval()
    _, _, eval_parts = module._loss(batch)
    assert "guide_loss" not in eval_parts


def test_guided_attention_works_without_ctc_and_its_options_are_checked() -> None:
    module = _module(guided_attention=1.0).train()
    batch = {"src": torch.tensor([[3, 4, 5]]), "tgt": torch.tensor([[3, EOS]])}
    loss, _, parts = module._loss(batch)
    assert loss.item() == pytest.approx((parts["att_loss"] + parts["guide_loss"]).item(), rel=1e-6)
    with pytest.raises(ValueError, match="guided_sigma"):
        _module(guided_attention=1.0, guided_sigma=0.0)
    with pytest.raises(ValueError, match="guided_attention"):
        _module(guided_attention=-1.0)
