"""DecoderOnly.from_hf against transformers' GPT2LMHeadModel built from small configs with random weights."""

import pytest
import torch

from mmattn.models import DecoderOnly, sample_tokens

transformers = pytest.importorskip("transformers")

VOCAB = 61


def _hf_gpt2(seed: int = 0, **overrides):
    config = dict(
        vocab_size=VOCAB,
        n_positions=40,
        n_embd=48,
        n_layer=2,
        n_head=4,
        bos_token_id=None,  # no stopping token unless a test passes one to generate
        eos_token_id=None,
    )
    config.update(overrides)
    attn = config.pop("attn_implementation", "sdpa")
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config, attn_implementation=attn)).eval()
    with torch.no_grad():
        # Random values everywhere (norms and biases included), so every tensor's placement is checked.
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.ndim == 1 and p.shape[0] == config["n_embd"] else 0.0))
    return model


def _decoding_gpt2(seed: int):
    """A random model whose greedy continuations vary, so the cache's positions and the stop rule show.

    With uniform random weights the model soon repeats one token; peaked attention (large q/k/v weights) and small
    biases keep its continuations varied.
    """
    model = _hf_gpt2(seed=seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("attn.c_attn.weight"):
                p.normal_(0.0, 1.0)
            elif p.ndim == 1 and not name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.normal_(0.0, 0.02)
    return model


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # GPT-2 itself: gelu_new, tied wte/lm_head, n_inner = 4 * n_embd
        {"tie_word_embeddings": False, "n_inner": 80, "activation_function": "gelu", "layer_norm_epsilon": 1e-6},
        {"activation_function": "gelu_pytorch_tanh", "reorder_and_upcast_attn": True, "attn_implementation": "eager"},
    ],
)
def test_from_hf_matches_transformers_logits(overrides):
    hf = _hf_gpt2(**overrides)
    ours = DecoderOnly.from_hf(hf).eval()
    assert (ours.output.weight is ours.embed.embed.weight) == overrides.get("tie_word_embeddings", True)
    for batch, length in [(1, 13), (3, 40)]:  # 40 = the whole context
        ids = torch.randint(0, VOCAB, (batch, length))
        with torch.no_grad():
            ref = hf(ids).logits
            out = ours(ids)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_greedy_sampling_on_the_cache_matches_generate():
    hf = _decoding_gpt2(seed=2)
    ours = DecoderOnly.from_hf(hf).eval()
    prompt = torch.randint(0, VOCAB, (3, 5), generator=torch.Generator().manual_seed(0))
    hf_kw = dict(attention_mask=torch.ones_like(prompt), do_sample=False, num_beams=1)
    free = sample_tokens(ours, prompt, max_new_tokens=12, temperature=0)
    ref = hf.generate(prompt, max_new_tokens=12, pad_token_id=0, **hf_kw)
    assert torch.equal(free, ref)
    # A stop token that row 0 produces early: rows end at it and are padded after it, in both.
    eos, pad = int(free[0, 7]), 5
    out = sample_tokens(ours, prompt, max_new_tokens=12, temperature=0, eos_id=eos, pad_id=pad)
    ref = hf.generate(prompt, max_new_tokens=12, eos_token_id=eos, pad_token_id=pad, **hf_kw)
    assert torch.equal(out, ref)
    assert out[0, 8:].eq(pad).all()


def test_imported_model_has_no_padding_row():
    ours = DecoderOnly.from_hf(_hf_gpt2())
    assert ours.pad_id is None and ours.embed.embed.padding_idx is None
    # Id 0 is a real GPT-2 token ("!"): it must learn like any other.
    ours(torch.tensor([[0, 3, 0]])).sum().backward()
    assert ours.embed.embed.weight.grad[0].abs().sum() > 0


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
        ({"scale_attn_weights": False}, "scale_attn_weights=False"),
        ({"add_cross_attention": True}, "add_cross_attention=True"),
        ({"activation_function": "quick_gelu"}, "activation 'quick_gelu'"),
        ({"embd_pdrop": 0.0, "resid_pdrop": 0.1}, r"embd_pdrop=0.0 != resid_pdrop=0.1"),
    ],
)
def test_unsupported_gpt2_features_are_named(overrides, match):
    with pytest.raises(ValueError, match=match):
        DecoderOnly.from_hf(_hf_gpt2(**overrides))


def test_from_hf_refuses_other_models():
    with pytest.raises(ValueError, match="expects a transformers GPT2LMHeadModel"):
        DecoderOnly.from_hf(torch.nn.Linear(2, 2))
