"""EncoderDecoder and its decoding: cached = full, beam 1 = greedy, beam search against exhaustive search."""

import itertools

import pytest
import torch

from mmattn.models import EncoderDecoder
from mmattn.models.decoding import beam_search, ctc_greedy_decode, greedy_decode

BOS, EOS, PAD = 1, 2, 0


def _model(seed: int = 0, **kw) -> EncoderDecoder:
    torch.manual_seed(seed)
    args = dict(src_vocab_size=11, tgt_vocab_size=13, dim=32, encoder_depth=2, decoder_depth=2, num_heads=4)
    args.update(kw)
    return EncoderDecoder(**args).eval()


def _src(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, 11, (3, 7), generator=g)
    src[1, 5:] = PAD  # a shorter sentence
    src[2, 3:] = PAD
    return src


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"positions": "learned"},
        {"positions": "rotary", "share_embeddings": "none"},
        {"norm_first": False, "activation": "gelu"},
        {"src_vocab_size": 13, "share_embeddings": "all"},
    ],
)
def test_incremental_decoding_equals_full_decoding(kw) -> None:
    model = _model(**kw)
    src = _src()
    tgt_in = torch.cat([torch.full((3, 1), BOS), torch.randint(3, 13, (3, 8))], dim=1)
    full = model(src, tgt_in)
    memory, mask = model.encode(src)
    cache = model.init_cache(3, tgt_in.shape[1], memory)
    steps = [model.decode(tgt_in[:, t : t + 1], memory, mask, cache=cache) for t in range(tgt_in.shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    # Two tokens at once after a cached prefix also agree.
    cache = model.init_cache(3, tgt_in.shape[1], memory)
    head = model.decode(tgt_in[:, :6], memory, mask, cache=cache)
    tail = model.decode(tgt_in[:, 6:], memory, mask, cache=cache)
    torch.testing.assert_close(torch.cat([head, tail], dim=1), full, atol=1e-5, rtol=0)


def test_source_padding_is_ignored() -> None:
    model = _model()
    src = _src()
    tgt_in = torch.tensor([[BOS, 4, 5, 6]])
    short = model(src[2:3, :3], tgt_in)
    padded = model(src[2:3], tgt_in)  # same sentence with 4 pads
    torch.testing.assert_close(padded, short, atol=1e-5, rtol=0)


def test_greedy_with_cache_equals_recomputing_and_beam_one() -> None:
    model = _model(seed=3)
    src = _src()
    kw = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len_a=1.0, max_len_b=5)
    cached = greedy_decode(model, src, **kw)
    recomputed = greedy_decode(model, src, use_cache=False, **kw)
    assert torch.equal(cached, recomputed)
    assert torch.equal(beam_search(model, src, beam_size=1, length_penalty=0.7, **kw), cached)
    # Every row ends with EOS within its budget (ceil(1.0 * source length + 5)), then padding.
    lengths = (src != PAD).sum(1) + 5
    for row, limit in zip(cached.tolist(), lengths.tolist()):
        stop = row.index(EOS)
        assert stop < limit and all(t == PAD for t in row[stop + 1 :])


def _sequence_logprob(model, src: torch.Tensor, hyp: list[int]) -> float:
    tgt_in = torch.tensor([[BOS, *hyp[:-1]]])
    with torch.no_grad():
        logp = torch.log_softmax(model(src, tgt_in)[0], dim=-1)
    return float(logp[torch.arange(len(hyp)), torch.tensor(hyp)].sum())


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_wide_beam_is_exhaustive_search(length_penalty: float) -> None:
    # Vocabulary of 5 and outputs of at most 4 tokens (EOS included): 1 + 4 + 16 + 64 = 85 candidates, all of which a
    # beam of 100 keeps, so beam search must return the exact best.
    model = _model(seed=5, src_vocab_size=5, tgt_vocab_size=5)
    src = torch.tensor([[3, 4, 3]])
    words = [t for t in range(5) if t != EOS]
    candidates = [[*w, EOS] for n in range(4) for w in itertools.product(words, repeat=n)]
    best = max(candidates, key=lambda h: _sequence_logprob(model, src, h) / len(h) ** length_penalty)
    out = beam_search(
        model, src, bos_id=BOS, eos_id=EOS, beam_size=100, length_penalty=length_penalty, max_len_a=0, max_len_b=4
    )
    hyp = out[0].tolist()
    assert hyp[: hyp.index(EOS) + 1] == best


def test_beam_search_scores_at_least_greedy() -> None:
    model = _model(seed=7)
    src = _src()
    kw = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len_a=1.0, max_len_b=4)
    greedy = greedy_decode(model, src, **kw)
    beam = beam_search(model, src, beam_size=5, length_penalty=0.0, **kw)
    for i in range(3):
        g, bm = greedy[i].tolist(), beam[i].tolist()
        g, bm = g[: g.index(EOS) + 1], bm[: bm.index(EOS) + 1]
        assert _sequence_logprob(model, src[i : i + 1], bm) >= _sequence_logprob(model, src[i : i + 1], g) - 1e-5


def test_options_are_checked_and_embeddings_tied() -> None:
    tied = _model(share_embeddings="decoder")
    assert tied.output.weight is tied.tgt_embed.embed.weight
    shared = _model(src_vocab_size=13, share_embeddings="all")
    assert shared.src_embed.embed is shared.tgt_embed.embed
    with pytest.raises(ValueError, match="share_embeddings='all' needs one joint vocabulary"):
        _model(share_embeddings="all")
    with pytest.raises(ValueError, match=r"num_heads \(5\) must divide dim \(32\)"):
        _model(num_heads=5)
    with pytest.raises(ValueError, match="activation must be one of"):
        _model(activation="tanh")
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        beam_search(_model(), _src(), bos_id=BOS, eos_id=EOS, beam_size=0)


def test_banned_tokens_and_the_forced_eos_score() -> None:
    model = _model(seed=3)
    src = _src()
    kw = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len_a=0, max_len_b=6)
    free = greedy_decode(model, src, **kw)
    banned = int(free[0, 0])  # row 0's first choice
    assert banned != EOS
    for out in (
        greedy_decode(model, src, banned_ids=(banned,), **kw),
        beam_search(model, src, banned_ids=[banned], **kw),
    ):
        assert banned not in out.tolist()[0][: out.tolist()[0].index(EOS)]
    with pytest.raises(ValueError, match="forced_eos_score must be 'logprob' or 'zero', got 'free'"):
        beam_search(model, src, forced_eos_score="free", **kw)


def test_output_bias_and_unscaled_embeddings_are_options() -> None:
    model = _model(output_bias=True, scale_embeddings=False, sinusoidal_layout="halves")
    assert model.output.bias is not None and not model.output.bias.any()
    assert model.tgt_embed.scale == 1.0 and model.tgt_embed.positions.layout == "halves"
    default = _model()
    assert default.output.bias is None and default.tgt_embed.scale == 32**0.5


def test_ctc_greedy_decode_merges_repeats_drops_blanks_and_padding() -> None:
    model = _model(ctc=True)
    src = _src()
    memory, mask = model.encode(src)
    # Hand-set per-frame winners through the CTC head's bias: frame labels of sentence 0 are 5 5 0 5 7 7 0 ...
    frames = torch.tensor(
        [[5, 5, PAD, 5, 7, 7, PAD], [4, PAD, 4, 4, 9, 9, 9], [6, 6, 8, 8, 8, 8, 8]]
    )  # rows 1 and 2 are padded from frames 5 and 3 on
    logits = torch.nn.functional.one_hot(frames, 13).float() * 10
    model.ctc_logits = lambda m: logits  # the decoding rule is under test, not the head
    ids = ctc_greedy_decode(model, src, blank_id=PAD, eos_id=EOS, pad_id=PAD)
    assert mask is not None and mask[1, 5:].all() and mask[2, 3:].all()
    assert ids.tolist() == [[5, 5, 7, EOS], [4, 4, 9, EOS], [6, 8, EOS, PAD]]


def test_ctc_head_is_optional_and_named_in_the_error() -> None:
    model = _model()
    memory, _ = model.encode(_src())
    with pytest.raises(ValueError, match="model.ctc=true"):
        model.ctc_logits(memory)
    with_head = _model(ctc=True)
    assert with_head.ctc_logits(with_head.encode(_src())[0]).shape == (3, 7, 13)
    # The CTC projection is its own layer, not the tied output.
    assert with_head.ctc_head.weight.data_ptr() != with_head.output.weight.data_ptr()
