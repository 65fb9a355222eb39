"""EncoderDecoder.from_hf against transformers' MarianMTModel: logits, greedy and beam-4 outputs of `generate`."""

import pytest
import torch

from mmattn.models import EncoderDecoder, beam_search, greedy_decode

transformers = pytest.importorskip("transformers")

VOCAB, EOS, PAD = 40, 0, 39  # Marian's layout: eos 0, pad (= decoder start) the last id
STEPS = 9  # output budget (EOS included) = generate's max_new_tokens


def _new_marian(seed: int, **overrides):
    config = dict(
        vocab_size=VOCAB,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        activation_function="swish",
        scale_embedding=True,
        pad_token_id=PAD,
        decoder_start_token_id=PAD,
        eos_token_id=EOS,
        forced_eos_token_id=EOS,
    )
    config.update(overrides)
    torch.manual_seed(seed)
    return transformers.MarianMTModel(transformers.MarianConfig(**config)).eval()


def _hf_marian(seed: int = 0, **overrides):
    model = _new_marian(seed, **overrides)
    with torch.no_grad():
        # Random values everywhere but the fixed sinusoid tables, so every tensor's placement is checked.
        for name, p in model.named_parameters():
            if "embed_positions" not in name:
                p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.ndim == 1 and name.endswith("norm.weight") else 0.0))
        model.final_logits_bias.normal_(0.0, 0.5)
    return model


def _decoding_marian(pad_bias: float = 0.0):
    """A random model whose outputs depend on the source and end at varied steps, so decoding rules show.

    With uniform random weights a post-norm model repeats one token whatever the source. Peaked attention (large q/k
    weights), small biases and a raised EOS logit give beams that differ from greedy, hypotheses ending before and
    at the budget, and last-step scores that decide the winner; `pad_bias` makes the pad id tempting.
    """
    model = _new_marian(seed=2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" in name:
                continue
            if "embed_tokens" in name or "shared" in name:
                std = 0.25
            elif p.ndim == 1:
                std = 0.02
            else:
                std = 1.0 if name.endswith(("q_proj.weight", "k_proj.weight")) else 0.3
            p.copy_(torch.randn_like(p) * std + (1.0 if p.ndim == 1 and name.endswith("norm.weight") else 0.0))
        model.final_logits_bias.normal_(0.0, 0.02)
        model.final_logits_bias[0, EOS] += 1.5
        model.final_logits_bias[0, PAD] += pad_bias
    return model


def _src(batch: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.full((batch, 8), PAD)
    for row in range(batch):
        n = 7 - 2 * (row % 3)  # right-padded sentences of 7, 5 and 3 tokens, each closed by EOS
        src[row, :n] = torch.randint(1, PAD, (n,), generator=g)
        src[row, n] = EOS
    return src


def _generate(hf, src: torch.Tensor, **kw) -> torch.Tensor:
    out = hf.generate(src, attention_mask=src != PAD, do_sample=False, max_new_tokens=STEPS, **kw)
    return out[:, 1:]  # transformers keeps the start token (pad); ours returns the generated tokens only


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # a Helsinki-NLP opus-mt model: shared embeddings tied to the output, swish, scaled embeddings
        {"share_encoder_decoder_embeddings": False, "decoder_vocab_size": 45, "activation_function": "gelu"},
        {"share_encoder_decoder_embeddings": False, "tie_word_embeddings": False, "scale_embedding": False},
    ],
)
def test_from_hf_matches_transformers_logits(overrides):
    hf = _hf_marian(**overrides)
    ours = EncoderDecoder.from_hf(hf).eval()
    for batch in (1, 4):
        src = _src(batch)
        tgt_in = torch.cat([torch.full((batch, 1), PAD), torch.randint(1, PAD, (batch, 6))], dim=1)
        with torch.no_grad():
            ref = hf(input_ids=src, attention_mask=src != PAD, decoder_input_ids=tgt_in).logits
            out = ours(src, tgt_in)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def _sentences(ids: torch.Tensor) -> list[list[int]]:
    """Each row up to and including its EOS."""
    return [row[: row.index(EOS) + 1] for row in ids.tolist()]


@pytest.mark.parametrize("banned", [False, True])
def test_greedy_decode_matches_generate(banned):
    hf = _decoding_marian(pad_bias=3.0 if banned else 0.0)
    ours = EncoderDecoder.from_hf(hf).eval()
    src = _src(batch=8)
    kw = dict(bos_id=PAD, eos_id=EOS, pad_id=PAD, max_len_a=0, max_len_b=STEPS)
    hf_kw = {"bad_words_ids": [[PAD]]} if banned else {}
    out = greedy_decode(ours, src, banned_ids=(PAD,) if banned else (), **kw)
    ref = _generate(hf, src, num_beams=1, forced_eos_token_id=EOS, **hf_kw)
    assert torch.equal(out, ref)
    lengths = [len(s) for s in _sentences(out)]
    assert min(lengths) < STEPS and max(lengths) == STEPS  # rows ending by themselves and rows closed at the budget
    if banned:  # without the ban this model does generate pad
        assert any(PAD in s for s in _sentences(greedy_decode(ours, src, **kw)))


@pytest.mark.parametrize("length_penalty,banned", [(1.0, False), (0.6, False), (1.0, True)])
def test_beam_search_matches_generate_with_early_stopping(length_penalty, banned):
    hf = _decoding_marian(pad_bias=3.0 if banned else 0.0)
    ours = EncoderDecoder.from_hf(hf).eval()
    src = _src(batch=8)
    kw = dict(bos_id=PAD, eos_id=EOS, pad_id=PAD, max_len_a=0, max_len_b=STEPS, banned_ids=(PAD,) if banned else ())
    out = beam_search(ours, src, beam_size=4, length_penalty=length_penalty, forced_eos_score="zero", **kw)
    ref = _generate(
        hf,
        src,
        num_beams=4,
        early_stopping=True,
        length_penalty=length_penalty,
        forced_eos_token_id=EOS,
        **({"bad_words_ids": [[PAD]]} if banned else {}),
    )
    assert torch.equal(out, ref)
    # Not a trivial case: beams differ from greedy, hypotheses end at several lengths, and the score of the EOS
    # forced at the budget decides a winner (fairseq's rule, the default, picks another).
    sentences = _sentences(out)
    assert sentences != _sentences(greedy_decode(ours, src, **kw))
    assert len({len(s) for s in sentences}) > 2 and max(len(s) for s in sentences) == STEPS
    fairseq = beam_search(ours, src, beam_size=4, length_penalty=length_penalty, **kw)
    assert _sentences(fairseq) != sentences


def test_marian_positions_are_the_halves_layout_and_are_checked():
    hf = _hf_marian()
    ours = EncoderDecoder.from_hf(hf)
    assert ours.tgt_embed.positions.layout == "halves" and ours.output.bias is not None
    state = hf.state_dict()
    state["model.encoder.embed_positions.weight"] = state["model.encoder.embed_positions.weight"] + 0.01
    from mmattn.models._hf_marian import checkpoint_filter_fn

    with pytest.raises(ValueError, match="not Marian's fixed sinusoid table"):
        checkpoint_filter_fn(state, ours)


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"decoder_attention_heads": 2}, r"encoder_attention_heads=4 != decoder_attention_heads=2"),
        ({"decoder_ffn_dim": 96}, r"encoder_ffn_dim=64 != decoder_ffn_dim=96"),
        ({"encoder_layerdrop": 0.1}, "LayerDrop"),
        ({"activation_function": "quick_gelu"}, "activation 'quick_gelu'"),
        ({"tie_word_embeddings": False}, r"`model.shared` embedding that neither stack reads"),
    ],
)
def test_unsupported_marian_features_are_named(overrides, match):
    with pytest.raises(ValueError, match=match):
        EncoderDecoder.from_hf(_hf_marian(**overrides))


def test_from_hf_refuses_other_models():
    with pytest.raises(ValueError, match="expects a transformers MarianMTModel"):
        EncoderDecoder.from_hf(torch.nn.Linear(2, 2))
