"""MultiHeadAttention against the textbook formula, torch.nn.MultiheadAttention, and itself (fused vs explicit)."""

import math

import pytest
import torch
import torch.nn.functional as F

from mmattn.nn import KVCache, MultiHeadAttention, RotaryEmbedding, check_heads

B, N, M, D, H = 2, 5, 7, 32, 4


def reference(attn: MultiHeadAttention, x, context=None, bool_mask=None, float_mask=None):
    """softmax(Q K^T / sqrt(d) + mask) V per head, written out; fully masked rows give zeros."""
    context = x if context is None else context
    w, b = attn.qkv.weight, attn.qkv.bias
    q = x @ w[:D].T + b[:D]
    k = context @ w[D : 2 * D].T + b[D : 2 * D]
    v = context @ w[2 * D :].T + b[2 * D :]
    split = lambda t: t.view(t.shape[0], t.shape[1], H, D // H).transpose(1, 2)
    q, k, v = split(q), split(k), split(v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D // H)
    if float_mask is not None:
        scores = scores + float_mask
    if bool_mask is not None:
        scores = scores.masked_fill(~bool_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a row of only -inf is NaN: the contract says zero
    out = (weights @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], D)
    return attn.out_proj(out), weights


@pytest.fixture
def attn():
    torch.manual_seed(0)
    return MultiHeadAttention(D, H).eval()


def test_self_attention_matches_formula_and_weights(attn):
    x = torch.randn(B, N, D)
    out, weights = attn(x, need_weights=True)
    ref_out, ref_w = reference(attn, x)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_w, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, N))
    torch.testing.assert_close(attn(x), ref_out, atol=1e-5, rtol=1e-5)  # the fused path


def test_cross_attention_with_key_padding(attn):
    x, ctx = torch.randn(B, N, D), torch.randn(B, M, D)
    pad = torch.zeros(B, M, dtype=torch.bool)
    pad[0, 4:] = True
    out, weights = attn(x, ctx, key_padding_mask=pad, need_weights=True)
    ref_out, ref_w = reference(attn, x, ctx, bool_mask=~pad[:, None, None, :])
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_w, atol=1e-6, rtol=1e-5)
    assert weights[0, :, :, 4:].abs().max() == 0  # padded keys get exactly zero weight
    torch.testing.assert_close(attn(x, ctx, key_padding_mask=pad), ref_out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["bool", "float", "causal", "causal+padding", "bool+padding", "float+causal"])
def test_every_mask_kind_fused_explicit_and_reference(attn, kind):
    torch.manual_seed(1)
    x = torch.randn(B, N, D)
    pad = torch.zeros(B, N, dtype=torch.bool)
    pad[1, 3:] = True
    bool_mask = torch.rand(B, 1, N, N) > 0.4
    bool_mask[..., 0] = True
    float_mask = torch.randn(H, N, N)
    causal = torch.ones(N, N, dtype=torch.bool).tril()
    kw, ref_bool, ref_float = {}, None, None
    if "bool" in kind:
        kw["attn_mask"], ref_bool = bool_mask, bool_mask
    if "float" in kind:
        kw["attn_mask"], ref_float = float_mask, float_mask
    if "causal" in kind:
        kw["causal"] = True
        ref_bool = causal if ref_bool is None else ref_bool & causal
    if "padding" in kind:
        kw["key_padding_mask"] = pad
        keep = ~pad[:, None, None, :]
        ref_bool = keep if ref_bool is None else ref_bool & keep
    ref_out, ref_w = reference(attn, x, bool_mask=ref_bool, float_mask=ref_float)
    out_w, weights = attn(x, need_weights=True, **kw)
    out_fused = attn(x, **kw)
    torch.testing.assert_close(weights, ref_w, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out_w, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_fused, ref_out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mask_kind", ["padding", "bool", "float"])
def test_fully_masked_rows_are_zero_and_gradients_finite(attn, mask_kind):
    x = torch.randn(B, N, D, requires_grad=True)
    kw = {}
    if mask_kind == "padding":
        pad = torch.zeros(B, N, dtype=torch.bool)
        pad[0] = True  # every key of sample 0 is padding
        kw["key_padding_mask"] = pad
        dead = (0, slice(None))
    elif mask_kind == "bool":
        mask = torch.ones(N, N, dtype=torch.bool)
        mask[2] = False  # query 2 may attend nothing
        kw["attn_mask"] = mask
        dead = (slice(None), 2)
    else:
        mask = torch.zeros(N, N)
        mask[2] = float("-inf")
        kw["attn_mask"] = mask
        dead = (slice(None), 2)
    for need_weights in (False, True):
        res = attn(x, need_weights=need_weights, **kw)
        out = res[0] if need_weights else res
        assert torch.isfinite(out).all()
        expected = attn.out_proj.bias.expand_as(out[dead])  # zero attention output, projected
        torch.testing.assert_close(out[dead], expected)
        if need_weights:
            assert res[1].isfinite().all()
        out.sum().backward()
        assert torch.isfinite(x.grad).all()
        x.grad = None


def test_matches_torch_multihead_attention():
    torch.manual_seed(2)
    ours = MultiHeadAttention(D, H).eval()
    theirs = torch.nn.MultiheadAttention(D, H, batch_first=True).eval()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(ours.qkv.weight)
        theirs.in_proj_bias.copy_(ours.qkv.bias)
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)
    x, ctx = torch.randn(B, N, D), torch.randn(B, M, D)
    pad = torch.zeros(B, M, dtype=torch.bool)
    pad[1, 5:] = True
    out, w = ours(x, ctx, key_padding_mask=pad, need_weights=True)
    ref, ref_w = theirs(x, ctx, ctx, key_padding_mask=pad, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)


def test_explicit_path_from_environment(monkeypatch):
    monkeypatch.setenv("MMATTN_FUSED_ATTN", "0")
    torch.manual_seed(3)
    explicit = MultiHeadAttention(D, H).eval()
    assert not explicit.fused_attn
    monkeypatch.setenv("MMATTN_FUSED_ATTN", "1")
    fused = MultiHeadAttention(D, H).eval()
    fused.load_state_dict(explicit.state_dict())
    x = torch.randn(B, N, D)
    torch.testing.assert_close(explicit(x, causal=True), fused(x, causal=True), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rope", [False, True])
def test_causal_with_cache_equals_full_causal(attn, rope):
    x = torch.randn(B, 9, D)
    rot = RotaryEmbedding(D // H) if rope else None
    full = attn(x, causal=True, rope=rot)
    cache = KVCache(B, H, D // H, max_len=16)
    steps = [attn(x[:, :4], causal=True, rope=rot, cache=cache)]  # a prompt of 4, then one token at a time
    for t in range(4, 9):
        steps.append(attn(x[:, t : t + 1], causal=True, rope=rot, cache=cache))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.size == 9


def test_cross_attention_cache_is_filled_once(attn):
    x, ctx = torch.randn(B, 3, D), torch.randn(B, M, D)
    cache = KVCache(B, H, D // H, max_len=M)
    first = attn(x[:, :1], ctx, cache=cache)
    assert cache.size == M
    second = attn(x[:, 1:2], ctx * 0 + 100, cache=cache)  # the cached context wins over a new one
    torch.testing.assert_close(second, attn(x[:, 1:2], ctx), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(first, attn(x[:, :1], ctx))


def test_qk_norm_normalises_each_head():
    torch.manual_seed(4)
    attn = MultiHeadAttention(D, H, qk_norm=True).eval()
    x = torch.randn(B, N, D)
    q = attn.qkv(x)[..., :D].view(B, N, H, D // H).transpose(1, 2)
    k = attn.qkv(x)[..., D : 2 * D].view(B, N, H, D // H).transpose(1, 2)
    v = attn.qkv(x)[..., 2 * D :].view(B, N, H, D // H).transpose(1, 2)
    q, k = F.layer_norm(q, (D // H,), eps=1e-6), F.layer_norm(k, (D // H,), eps=1e-6)
    ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, D)
    torch.testing.assert_close(attn(x), attn.out_proj(ref), atol=1e-5, rtol=1e-5)


def test_dropout_only_in_training():
    torch.manual_seed(5)
    attn = MultiHeadAttention(D, H, dropout=0.5)
    x = torch.randn(B, N, D)
    attn.eval()
    torch.testing.assert_close(attn(x), attn(x))
    attn.train()
    assert not torch.allclose(attn(x), attn(x))


def test_bad_arguments_name_the_values():
    with pytest.raises(ValueError, match=r"num_heads \(5\) must divide dim \(32\); choose num_heads in \[1, 2, 4, 8"):
        MultiHeadAttention(32, 5)
    with pytest.raises(ValueError, match=r"num_heads \(0\) must divide dim \(6\); choose num_heads in \[1, 2, 3, 6\]"):
        check_heads(6, 0)
    check_heads(6, 3)
    attn = MultiHeadAttention(D, H)
    with pytest.raises(ValueError, match="key_padding_mask has shape"):
        attn(torch.randn(B, N, D), key_padding_mask=torch.zeros(B, N + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="attn_mask of shape"):
        attn(torch.randn(B, N, D), attn_mask=torch.zeros(3, N, N))
    with pytest.raises(ValueError, match="overflow"):
        attn(torch.randn(B, N, D), cache=KVCache(B, H, D // H, max_len=2))
