"""The end-of-sequence decision: oracle-length decoding (each output takes its reference's length) and -EOS training
(EOS left out of the loss), Newman et al. (2020)'s tools for length generalisation."""

import pytest
import torch
import torch.nn.functional as F
from mmattn_testing import IdTokenizer

from mmattn.lit import Seq2SeqModule
from mmattn.models import EncoderDecoder, beam_search, greedy_decode

PAD, BOS, EOS = 0, 1, 2
V = 9


def _net() -> EncoderDecoder:
    torch.manual_seed(0)
    return EncoderDecoder(
        src_vocab_size=V, tgt_vocab_size=V, dim=16, encoder_depth=1, decoder_depth=1, num_heads=2, dropout=0.0
    ).eval()


@pytest.mark.parametrize("beam", [1, 3])
def test_oracle_lengths_fix_where_each_output_ends(beam):
    net = _net()
    src = torch.randint(3, V, (3, 5))
    lengths = torch.tensor([2, 7, 4])
    kw = {"bos_id": BOS, "eos_id": EOS, "exact_lengths": lengths, "banned_ids": (PAD, BOS)}
    out = greedy_decode(net, src, **kw) if beam == 1 else beam_search(net, src, beam_size=beam, **kw)
    for row, n in zip(out.tolist(), lengths.tolist()):
        assert len(row) >= n and row[n - 1] == EOS and EOS not in row[: n - 1], (row, n)
    with pytest.raises(ValueError, match="exact_lengths must be"):
        greedy_decode(net, src, bos_id=BOS, eos_id=EOS, exact_lengths=torch.tensor([1, 0, 2]))


def test_without_eos_the_loss_skips_it_and_decoding_needs_the_oracle():
    src = torch.tensor([[3, 4, 5], [6, 7, PAD]])
    tgt = torch.tensor([[3, 4, EOS], [5, EOS, PAD]])
    module = Seq2SeqModule(
        _net(), label_smoothing=0.0, tokenizer=IdTokenizer(V), predict_eos=False, decoding={"oracle_length": True}
    )
    loss, _, _ = module._loss({"src": src, "tgt": tgt})
    tgt_in = torch.tensor([[BOS, 3, 4], [BOS, 5, EOS]])
    logits = module.net(src, tgt_in)
    kept = torch.tensor([[3, 4, PAD], [5, PAD, PAD]])
    expected = F.cross_entropy(logits.reshape(-1, V), kept.reshape(-1), ignore_index=PAD)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    hyps = module.tokenizer.decode_tgt_batch(module.generate(src, exact_lengths=(tgt != PAD).sum(dim=1)).tolist())
    assert [len(h.split()) for h in hyps] == [2, 1]
    with pytest.raises(ValueError, match="predict_eos=false trains no end of sequence.*oracle_length=true"):
        Seq2SeqModule(_net(), tokenizer=IdTokenizer(V), predict_eos=False)
    module.decoding["method"] = "ctc"
    with pytest.raises(ValueError, match="CTC decoding \\(method=ctc\\) has none"):
        module.generate(src, exact_lengths=torch.tensor([3, 2]))
    with pytest.raises(ValueError, match="oracle_length takes each reference.s length: it serves evaluation only"):
        module.predict_step({"inputs": src}, 0)
