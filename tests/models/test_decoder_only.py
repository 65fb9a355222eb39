"""DecoderOnly and sampling: cached = full forward, filters against hand-computed sets, seeded and cached sampling."""

from __future__ import annotations

import pytest
import torch

from mmattn.models import DecoderOnly, filter_logits, sample_tokens


def _model(positions: str = "rotary", context_length: int = 24) -> DecoderOnly:
    torch.manual_seed(0)
    return DecoderOnly(
        vocab_size=40, dim=32, depth=2, num_heads=4, context_length=context_length, positions=positions
    ).eval()


@pytest.mark.parametrize("positions", ["rotary", "learned", "sinusoidal"])
def test_incremental_decoding_equals_the_full_forward(positions: str) -> None:
    model = _model(positions)
    ids = torch.randint(4, 40, (2, 11))
    full = model(ids)
    cache = model.init_cache(2, 11)
    parts = [model(ids[:, :4], cache=cache), model(ids[:, 4:5], cache=cache), model(ids[:, 5:], cache=cache)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_model_is_causal_ties_embeddings_and_refuses_too_long_inputs() -> None:
    model = _model()
    ids = torch.randint(4, 40, (1, 10))
    changed = ids.clone()
    changed[0, 7] = (ids[0, 7] + 1 - 4) % 36 + 4
    torch.testing.assert_close(model(ids)[:, :7], model(changed)[:, :7])
    assert not torch.allclose(model(ids)[:, 7:], model(changed)[:, 7:])
    assert model.output.weight is model.embed.embed.weight
    with pytest.raises(ValueError, match="25 positions exceed the model's context_length 24"):
        model(torch.ones(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match=r"num_heads \(5\) must divide dim \(32\); choose num_heads in \[1, 2, 4"):
        DecoderOnly(vocab_size=10, dim=32, depth=1, num_heads=5)
    with pytest.raises(ValueError, match=r"num_heads \(0\) must divide dim \(32\)"):
        DecoderOnly(vocab_size=10, dim=32, depth=1, num_heads=0, positions="rotary")


def test_filter_logits_keeps_the_top_k_and_the_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    kept = lambda out: torch.isfinite(out[0]).nonzero().flatten().tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [0, 1]
    # Mass before each token: 0, .5, .7, .85, .95; the nucleus of .8 is the first three (.85 >= .8).
    assert kept(filter_logits(logits, top_p=0.8)) == [0, 1, 2]
    assert kept(filter_logits(logits, top_p=0.5)) == [0]
    assert kept(filter_logits(logits, top_p=0.01)) == [0]
    assert kept(filter_logits(logits, top_k=4, top_p=0.9)) == [0, 1, 2, 3]
    shuffled = logits[:, [3, 0, 4, 2, 1]]
    assert kept(filter_logits(shuffled, top_p=0.8)) == [1, 3, 4]
    with pytest.raises(ValueError, match="top_p must lie in"):
        filter_logits(logits, top_p=0.0)
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        filter_logits(logits, top_k=0)


def test_sampling_is_seeded_and_the_cache_gives_the_same_tokens() -> None:
    model = _model()
    prompt = torch.tensor([[1, 5, 6]]).expand(4, -1)
    kw = dict(max_new_tokens=15, temperature=1.0, top_k=20, top_p=0.95)
    a = sample_tokens(model, prompt, generator=torch.Generator().manual_seed(3), **kw)
    b = sample_tokens(model, prompt, generator=torch.Generator().manual_seed(3), use_cache=False, **kw)
    c = sample_tokens(model, prompt, generator=torch.Generator().manual_seed(4), **kw)
    assert a.shape == (4, 18) and torch.equal(a[:, :3], prompt)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    greedy = sample_tokens(model, prompt[:1], max_new_tokens=5, temperature=0.0)
    expected = prompt[:1]
    for _ in range(5):
        expected = torch.cat([expected, model(expected)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(greedy, expected)


def test_rows_stop_at_eos_and_are_padded() -> None:
    model = _model()
    prompt = torch.tensor([[1, 5], [1, 9], [1, 30]])
    free = sample_tokens(model, prompt, max_new_tokens=6, temperature=0)
    eos = int(free[0, 3])  # row 0's second new token
    out = sample_tokens(model, prompt, max_new_tokens=6, temperature=0, eos_id=eos, pad_id=0)
    ends = []
    for row in free.tolist():
        new = row[2:]
        ends.append(2 + new.index(eos) + 1 if eos in new else len(row))
    assert out.shape[1] == max(ends)
    for r, end in enumerate(ends):
        assert out[r, :end].tolist() == free[r, :end].tolist()
        assert out[r, end:].tolist() == [0] * (out.shape[1] - end)


def test_a_prompt_longer_than_the_context_is_cut_from_the_left_with_a_warning() -> None:
    model = _model(context_length=8)
    prompt = torch.arange(4, 16).view(1, 12)
    with pytest.warns(RuntimeWarning, match="prompt has 12 tokens but the model's context holds 8"):
        out = sample_tokens(model, prompt, max_new_tokens=1, temperature=0)
    assert torch.equal(out[0, :7], prompt[0, -7:]) and out.shape == (1, 8)
    with pytest.warns(RuntimeWarning, match="exceed the context of 8: sampling 3 tokens"):
        out = sample_tokens(model, prompt[:, :5], max_new_tokens=10, temperature=0)
    assert out.shape == (1, 8)
