"""Layers and stacks against torch.nn's Transformer layers, the cached decoder against the full one."""

import pytest
import torch
from torch import nn

from mmattn.nn import Decoder, DropPath, Encoder, EncoderLayer, LayerScale, Mlp, SwiGLU

D, H = 32, 4


def _copy_into_torch(ours, theirs, *, cross: bool = False) -> None:
    """Copy our layer's weights into a torch.nn Transformer layer of the same size."""
    with torch.no_grad():
        pairs = [(ours.self_attn if hasattr(ours, "self_attn") else ours.attn, theirs.self_attn)]
        if cross:
            pairs.append((ours.cross_attn, theirs.multihead_attn))
        for a, t in pairs:
            t.in_proj_weight.copy_(a.qkv.weight)
            t.in_proj_bias.copy_(a.qkv.bias)
            t.out_proj.weight.copy_(a.out_proj.weight)
            t.out_proj.bias.copy_(a.out_proj.bias)
        theirs.linear1.load_state_dict(ours.mlp.fc1.state_dict())
        theirs.linear2.load_state_dict(ours.mlp.fc2.state_dict())
        theirs.norm1.load_state_dict(ours.norm1.state_dict())
        if cross:
            theirs.norm2.load_state_dict(ours.norm_cross.state_dict())
            theirs.norm3.load_state_dict(ours.norm2.state_dict())
        else:
            theirs.norm2.load_state_dict(ours.norm2.state_dict())


@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_layer_matches_torch(norm_first):
    torch.manual_seed(0)
    ours = EncoderLayer(D, H, mlp_ratio=2.0, norm_first=norm_first, act_layer=nn.ReLU).eval()
    theirs = nn.TransformerEncoderLayer(D, H, 2 * D, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    _copy_into_torch(ours, theirs)
    x = torch.randn(2, 6, D)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 4:] = True
    torch.testing.assert_close(ours(x, key_padding_mask=pad), theirs(x, src_key_padding_mask=pad), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_layer_matches_torch(norm_first):
    torch.manual_seed(1)
    dec = Decoder(D, 1, H, mlp_ratio=2.0, norm_first=norm_first, final_norm=False, act_layer=nn.ReLU).eval()
    theirs = nn.TransformerDecoderLayer(D, H, 2 * D, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    _copy_into_torch(dec.layers[0], theirs, cross=True)
    x, mem = torch.randn(2, 5, D), torch.randn(2, 7, D)
    mem_pad = torch.zeros(2, 7, dtype=torch.bool)
    mem_pad[0, 5:] = True
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    ref = theirs(x, mem, tgt_mask=causal, memory_key_padding_mask=mem_pad, tgt_is_causal=True)
    torch.testing.assert_close(dec(x, mem, memory_key_padding_mask=mem_pad), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("relative_position", [None, "rotary", "alibi"])
def test_decoder_with_cache_equals_full_decoder(relative_position):
    torch.manual_seed(2)
    dec = Decoder(D, 2, H, relative_position=relative_position).eval()
    x, mem = torch.randn(3, 8, D), torch.randn(3, 6, D)
    mem_pad = torch.zeros(3, 6, dtype=torch.bool)
    mem_pad[2, 3:] = True
    full = dec(x, mem, memory_key_padding_mask=mem_pad)
    cache = dec.init_cache(3, 8, memory_len=6)
    steps = [dec(x[:, t : t + 1], mem, memory_key_padding_mask=mem_pad, cache=cache) for t in range(8)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 8
    cache.reorder(torch.tensor([2, 2, 0]))  # beam search keeps rows: the caches follow
    assert cache.layers[0].self_attn.k.shape[0] == 3
    torch.testing.assert_close(cache.layers[1].cross_attn.k[0], cache.layers[1].cross_attn.k[1])


def test_decoder_only_stack_is_causal():
    torch.manual_seed(3)
    dec = Decoder(D, 2, H, cross_attention=False, relative_position="rotary").eval()
    x = torch.randn(1, 6, D)
    y = x.clone()
    y[:, 4:] = torch.randn(1, 2, D)  # changing the future must not change the past
    torch.testing.assert_close(dec(x)[:, :4], dec(y)[:, :4])
    with pytest.raises(ValueError, match="memory_len"):
        Decoder(D, 1, H).init_cache(1, 4)


def test_encoder_stack_options():
    torch.manual_seed(4)
    enc = Encoder(D, 3, H, drop_path=0.2, layer_scale=1e-5, ffn="swiglu", relative_position="alibi")
    rates = [layer.res1.drop_path.p if isinstance(layer.res1.drop_path, DropPath) else 0.0 for layer in enc.layers]
    assert rates == pytest.approx([0.0, 0.1, 0.2])
    assert isinstance(enc.layers[0].mlp, SwiGLU)
    out = enc(torch.randn(2, 5, D))
    assert out.shape == (2, 5, D) and torch.isfinite(out).all()
    assert isinstance(Encoder(D, 1, H, norm_first=False).norm, nn.Identity)  # post-norm ends normalised already
    with pytest.raises(ValueError, match="relative_position"):
        Encoder(D, 1, H, relative_position="learned")
    with pytest.raises(ValueError, match="ffn must be"):
        Encoder(D, 1, H, ffn="relu2")


def test_feedforward_formulas():
    torch.manual_seed(5)
    x = torch.randn(4, D)
    mlp = Mlp(D, 64)
    torch.testing.assert_close(mlp(x), mlp.fc2(nn.functional.gelu(mlp.fc1(x))))
    glu = SwiGLU(D, 48)
    w, v = glu.fc1.weight[:48], glu.fc1.weight[48:]
    torch.testing.assert_close(glu(x), glu.fc2(nn.functional.silu(x @ w.T) * (x @ v.T)))


def test_drop_path_and_layer_scale():
    torch.manual_seed(6)
    dp = DropPath(0.25)
    x = torch.ones(20000, 3)
    y = dp(x)
    kept = (y[:, 0] > 0).float().mean().item()
    assert kept == pytest.approx(0.75, abs=0.02)
    assert set(y.unique().tolist()) <= {0.0, torch.tensor(1 / 0.75).item()}
    assert torch.equal(dp.eval()(x), x)
    torch.testing.assert_close(LayerScale(3, 0.1)(x[:2]), torch.full((2, 3), 0.1))
    with pytest.raises(ValueError, match="drop path rate"):
        DropPath(1.0)
