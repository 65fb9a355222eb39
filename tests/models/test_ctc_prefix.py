"""CTC prefix scores against brute force over every alignment, and joint CTC/attention beam search."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mmattn.models import EncoderDecoder, beam_search
from mmattn.models.ctc_prefix import CTCPrefixScorer

BLANK, EOS = 0, 2


def _collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    out, prev = [], None
    for label in path:
        if label != prev and label != BLANK:
            out.append(label)
        prev = label
    return tuple(out)


def _brute_force(log_probs: torch.Tensor) -> dict[tuple[int, ...], float]:
    """P(CTC output = y) of every y, summed over all |V|^T alignments of one row [T, V]."""
    probs = log_probs.double().exp()
    total: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(probs.shape[1]), repeat=probs.shape[0]):
        p = math.prod(float(probs[t, label]) for t, label in enumerate(path))
        y = _collapse(path)
        total[y] = total.get(y, 0.0) + p
    return total


def _prefix(outputs: dict[tuple[int, ...], float], h: tuple[int, ...]) -> float:
    return sum(p for y, p in outputs.items() if y[: len(h)] == h)


@pytest.mark.parametrize("length", [5, 3])
def test_prefix_scores_equal_the_sum_over_every_alignment(length: int) -> None:
    torch.manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(1, 5, 4) * 2, dim=-1)
    scorer = CTCPrefixScorer(log_probs, torch.tensor([length]), blank=BLANK, eos=EOS)
    outputs = _brute_force(log_probs[0, :length])
    state, prefix = scorer.initial_state(), ()
    for label in (3, 3, 1):  # a repeated label needs a blank between its two emissions
        psi, r = scorer.extend(state)
        for c in (1, 3):
            assert psi[0, c].exp().item() == pytest.approx(_prefix(outputs, (*prefix, c)), rel=1e-4, abs=1e-12)
        # EOS: the output is exactly the prefix.
        assert psi[0, EOS].exp().item() == pytest.approx(outputs.get(prefix, 0.0), rel=1e-4, abs=1e-12)
        assert psi[0, BLANK].item() == float("-inf")
        state = scorer.select(r, psi, torch.tensor([0]), torch.tensor([label]))
        prefix = (*prefix, label)


def _net() -> EncoderDecoder:
    torch.manual_seed(3)
    return EncoderDecoder(
        src_vocab_size=8, tgt_vocab_size=5, dim=16, encoder_depth=1, decoder_depth=1, num_heads=2, ctc=True
    ).eval()


def test_joint_decoding_with_ctc_weight_zero_is_attention_beam_search_and_one_finds_the_best_ctc_output() -> None:
    net = _net()
    src = torch.tensor([[3, 4, 5], [6, 7, 0]])  # the second row padded: 2 frames
    ids = dict(bos_id=1, eos_id=EOS, pad_id=0, max_len_a=1.0, max_len_b=2)
    plain = beam_search(net, src, beam_size=3, **ids)
    assert torch.equal(beam_search(net, src, beam_size=3, ctc_weight=0.0, blank_id=BLANK, **ids), plain)
    # CTC alone, every prefix kept (the beam holds all of them) and no length normalisation: the most likely output.
    joint = beam_search(net, src, beam_size=64, length_penalty=0.0, ctc_weight=1.0, blank_id=BLANK, **ids)
    with torch.no_grad():
        memory, mask = net.encode(src)
        log_probs = torch.log_softmax(net.ctc_logits(memory), dim=-1)
    for row, frames in enumerate((3, 2)):
        outputs = _brute_force(log_probs[row, :frames])
        best = max(outputs, key=outputs.get)
        got = [t for t in joint[row].tolist() if t != 0]
        assert got == [*best, EOS]
    # In between, a batch decodes into EOS-terminated rows.
    mixed = beam_search(net, src, beam_size=2, ctc_weight=0.3, blank_id=BLANK, **ids)
    assert all(EOS in row for row in mixed.tolist())
    with pytest.raises(ValueError, match="ctc_weight must be in"):
        beam_search(net, src, ctc_weight=0.3, **ids)
