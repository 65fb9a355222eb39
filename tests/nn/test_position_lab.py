"""The position-encoding lab: every scheme's own property, and the attention properties every scheme must keep
(padding, fused = explicit path, causality, cache = full decoding)."""

import pytest
import torch

from mmattn.nn import (
    ALiBi,
    Decoder,
    Encoder,
    RandomPositions,
    RotaryEmbedding,
    RotaryEmbedding2D,
    T5RelativeBias,
    relative_position_bucket,
)

D, H = 32, 4
ENCODER_SCHEMES = [None, "rotary", "alibi", "t5", "rotary2d", "rotary2d_mixed"]
DECODER_SCHEMES = [None, "rotary", "alibi", "t5"]


def _set_fused(module: torch.nn.Module, fused: bool) -> None:
    for m in module.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = fused


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_buckets_match_transformers(bidirectional):
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    relative = torch.arange(-300, 300)[None, :]
    theirs = t5.T5Attention._relative_position_bucket(
        relative, bidirectional=bidirectional, num_buckets=32, max_distance=128
    )
    ours = relative_position_bucket(relative, bidirectional=bidirectional, num_buckets=32, max_distance=128)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("module", [T5RelativeBias(H), T5RelativeBias(H, bidirectional=False), ALiBi(H)])
def test_relative_biases_depend_on_the_offset_only(module):
    q_pos, k_pos = torch.arange(7), torch.arange(9)
    bias = module.bias(q_pos, k_pos)
    assert bias.shape == (H, 7, 9)
    torch.testing.assert_close(module.bias(q_pos + 40, k_pos + 40), bias)  # shifting both changes nothing
    for i in range(7):
        for j in range(9):
            torch.testing.assert_close(bias[:, i, j], module.bias(torch.tensor([0]), torch.tensor([j - i]))[:, 0, 0])
    torch.testing.assert_close(module(3, 9, offset=2), module.bias(torch.arange(2, 5), k_pos))


def test_random_positions_are_sorted_distinct_and_inside_the_range():
    rp = RandomPositions(50)
    torch.manual_seed(0)
    draws = [rp.draw(12) for _ in range(20)]
    for p in draws:
        assert p.shape == (12,) and (p[1:] > p[:-1]).all() and p.min() >= 0 and p.max() < 50
    assert len({tuple(p.tolist()) for p in draws}) > 1  # training draws vary
    assert int(torch.stack(draws).max()) > 40  # and reach far beyond the 12 tokens' own positions
    rp.eval()
    assert torch.equal(rp.draw(12), rp.draw(12))  # evaluation repeats
    with pytest.raises(ValueError, match="raise random_positions to at least 51"):
        rp.draw(51)


def test_rotary_angles_at_positions_equal_the_offset_rotation():
    rope = RotaryEmbedding(8, max_len=4)
    q, k = torch.randn(2, H, 5, 8), torch.randn(2, H, 5, 8)
    ours = rope.angles(torch.arange(3, 8))(q, k)
    ref = rope(q, k, offset=3)
    torch.testing.assert_close(ours[0], ref[0])
    torch.testing.assert_close(ours[1], ref[1])


@pytest.mark.parametrize("mode", ["axial", "mixed"])
def test_2d_rotary_scores_depend_on_the_grid_offset_only(mode):
    torch.manual_seed(0)
    rope = RotaryEmbedding2D(8, H, mode=mode, depth=2)
    grid = (6, 7)
    angles = rope.angles(grid, num_prefix_tokens=1)
    assert len(angles) == 2
    q, k = torch.randn(1, H, 1, 8), torch.randn(1, H, 1, 8)
    n = 1 + 6 * 7
    qr, kr = angles[1](q.expand(1, H, n, 8), k.expand(1, H, n, 8))
    scores = qr @ kr.transpose(-1, -2)  # [1, H, n, n]

    def cell(r: int, c: int) -> int:
        return 1 + r * 7 + c

    for (r1, c1), (r2, c2), (dr, dc) in [((0, 0), (2, 3), (3, 1)), ((1, 4), (5, 0), (0, 2)), ((2, 2), (2, 2), (3, 4))]:
        torch.testing.assert_close(
            scores[..., cell(r1, c1), cell(r2, c2)], scores[..., cell(r1 + dr, c1 + dc), cell(r2 + dr, c2 + dc)]
        )
    torch.testing.assert_close(qr[..., 0, :], q[..., 0, :])  # the class token is not rotated
    if mode == "axial":
        # pair 0 turns by the column at frequency 1, pair d/4 by the row at frequency 1
        x = torch.zeros(1, 1, n, 8)
        x[..., 0] = 1.0
        x[..., 4] = 1.0
        rot = angles[0](x, x)[0][0, 0, cell(2, 3)]
        expected = torch.tensor([torch.cos(torch.tensor(3.0)), torch.sin(torch.tensor(3.0))])
        torch.testing.assert_close(rot[:2], expected)
        expected = torch.tensor([torch.cos(torch.tensor(2.0)), torch.sin(torch.tensor(2.0))])
        torch.testing.assert_close(rot[4:6], expected)
    else:
        assert rope.freqs.requires_grad and rope.freqs.shape == (2, H, 4, 2)


@pytest.mark.parametrize("scheme", ENCODER_SCHEMES)
def test_every_encoder_scheme_keeps_padding_and_fused_paths(scheme):
    torch.manual_seed(1)
    enc = Encoder(D, 2, H, relative_position=scheme).eval()
    grid = (2, 3)
    x = torch.randn(2, 7, D)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    kw = {"key_padding_mask": pad, "grid_size": grid, "num_prefix_tokens": 1}
    fused = enc(x, **kw)
    y = x.clone()
    y[1, 5:] = 100.0  # padded tokens must not matter
    torch.testing.assert_close(enc(y, **kw)[1, :5], fused[1, :5])
    _set_fused(enc, False)
    torch.testing.assert_close(enc(x, **kw), fused, atol=1e-5, rtol=1e-5)
    if scheme in ("rotary", "alibi", "t5"):
        # explicit positions: shifting them all leaves relative schemes unchanged
        torch.testing.assert_close(enc(x, **kw, positions=torch.arange(7) + 30), fused, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scheme", DECODER_SCHEMES)
@pytest.mark.parametrize("random", [False, True])
def test_every_decoder_scheme_caches_exactly_and_stays_causal(scheme, random):
    torch.manual_seed(2)
    dec = Decoder(D, 2, H, relative_position=scheme).eval()
    x, mem = torch.randn(3, 8, D), torch.randn(3, 6, D)
    positions = RandomPositions(40).draw(8) if random else None
    full = dec(x, mem, positions=positions)
    cache = dec.init_cache(3, 8, memory_len=6, positions=positions)
    steps = [dec(x[:, t : t + 1], mem, cache=cache) for t in range(8)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    y = x.clone()
    y[:, 5:] = torch.randn(3, 3, D)
    torch.testing.assert_close(dec(y, mem, positions=positions)[:, :5], full[:, :5])
    _set_fused(dec, False)
    torch.testing.assert_close(dec(x, mem, positions=positions), full, atol=1e-5, rtol=1e-5)


def test_impossible_stack_schemes_stop_at_build_time():
    with pytest.raises(ValueError, match="'rotary2d' cannot serve a decoder stack.*patch grid"):
        Decoder(D, 1, H, relative_position="rotary2d")
    with pytest.raises(ValueError, match="axial 2-D rotary needs head_dim divisible by 4, got 6"):
        Encoder(12, 1, 2, relative_position="rotary2d")
    enc = Encoder(D, 1, H, relative_position="rotary2d")
    with pytest.raises(ValueError, match="need the token grid"):
        enc(torch.randn(1, 6, D))
    with pytest.raises(ValueError, match="6 tokens do not make 1 prefix tokens \\+ a 2x3 grid"):
        enc(torch.randn(1, 6, D), grid_size=(2, 3), num_prefix_tokens=1)
    with pytest.raises(ValueError, match="T5 bias max_distance 4 must exceed"):
        T5RelativeBias(H, num_buckets=32, max_distance=4)
