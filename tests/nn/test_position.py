"""Position encodings against their paper formulas and timm's resampling."""

import math

import pytest
import torch

from mmattn.nn import (
    ALiBi,
    LearnedPositionalEmbedding,
    LearnedPositionalEmbedding2D,
    RotaryEmbedding,
    SinCos2DPositionalEmbedding,
    SinusoidalPositionalEncoding,
    alibi_slopes,
    resample_pos_embed,
    sincos_2d_table,
    sinusoidal_table,
)


def test_sinusoidal_table_matches_the_formula():
    table = sinusoidal_table(50, 16)
    for p in (0, 1, 7, 49):
        for i in range(8):
            angle = p / 10000 ** (2 * i / 16)
            assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_module_offsets_and_grows():
    pe = SinusoidalPositionalEncoding(8, max_len=4)
    x = torch.zeros(1, 3, 8)
    torch.testing.assert_close(pe(x, offset=5), sinusoidal_table(8, 8)[5:8][None])
    with pytest.raises(ValueError, match="even dim"):
        sinusoidal_table(4, 7)


def test_halves_layout_puts_the_sines_first_and_grows_in_that_layout():
    interleaved, halves = sinusoidal_table(50, 16), sinusoidal_table(50, 16, layout="halves")
    # Same frequencies, channels reordered: all sines, then all cosines (Marian's table).
    torch.testing.assert_close(halves[:, :8], interleaved[:, 0::2], rtol=0, atol=0)
    torch.testing.assert_close(halves[:, 8:], interleaved[:, 1::2], rtol=0, atol=0)
    pe = SinusoidalPositionalEncoding(16, max_len=4, layout="halves")
    torch.testing.assert_close(pe(torch.zeros(1, 3, 16), offset=40), halves[40:43][None])
    with pytest.raises(ValueError, match="layout must be 'interleaved' or 'halves', got 'paired'"):
        sinusoidal_table(4, 8, layout="paired")


def test_learned_1d_table_bounds():
    pe = LearnedPositionalEmbedding(4, 8)
    assert pe(torch.zeros(2, 4, 8)).shape == (2, 4, 8)
    with pytest.raises(ValueError, match="beyond the learned table of 4"):
        pe(torch.zeros(2, 3, 8), offset=2)


@pytest.mark.parametrize("interleaved", [True, False])
def test_rotary_scores_depend_only_on_relative_position(interleaved):
    torch.manual_seed(0)
    rope = RotaryEmbedding(16, interleaved=interleaved)
    q, k = torch.randn(16), torch.randn(16)

    def score(p: int, r: int) -> float:
        qp = rope.rotate(q.expand(1, 1, p + 1, 16).contiguous())[0, 0, p]
        kr = rope.rotate(k.expand(1, 1, r + 1, 16).contiguous())[0, 0, r]
        return float(qp @ kr)

    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-4)
    assert score(0, 0) == pytest.approx(float(q @ k), abs=1e-5)  # position 0 is the identity
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-3)


def test_rotary_matches_paper_pairs():
    rope = RotaryEmbedding(4, base=10000.0)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4).expand(1, 1, 3, 4).contiguous()
    out = rope.rotate(x)[0, 0, 2]  # position 2
    theta = [1.0, 10000 ** (-2 / 4)]
    expect = []
    for i, (a, b) in enumerate([(1.0, 2.0), (3.0, 4.0)]):
        c, s = math.cos(2 * theta[i]), math.sin(2 * theta[i])
        expect += [a * c - b * s, a * s + b * c]
    torch.testing.assert_close(out, torch.tensor(expect))
    # the offset continues positions, and the table grows past max_len
    small = RotaryEmbedding(4, max_len=2)
    torch.testing.assert_close(small.rotate(x[:, :, :1], offset=2)[0, 0, 0], out)


def test_alibi_slopes_and_bias():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    six = alibi_slopes(6)  # not a power of two: 4 geometric slopes, then every other slope of the 8-head set
    torch.testing.assert_close(six[:4], torch.tensor([2.0 ** -(2 * (i + 1)) for i in range(4)]))
    torch.testing.assert_close(six[4:], torch.tensor([2.0**-1, 2.0**-3]))
    bias = ALiBi(8)(3, 5, offset=2)
    assert bias.shape == (8, 3, 5)
    assert bias[0, 0, 2] == 0  # query at position 2, key at position 2
    assert bias[0, 0, 0].item() == pytest.approx(-2 * 0.5)


def test_sincos_2d_table_formula():
    table = sincos_2d_table((3, 4), 16)
    omega = [10000 ** (-i / 3) for i in range(4)]
    row, col = 2, 1
    vec = table[row * 4 + col]
    for i, w in enumerate(omega):
        assert vec[i].item() == pytest.approx(math.sin(col * w), abs=1e-6)
        assert vec[4 + i].item() == pytest.approx(math.cos(col * w), abs=1e-6)
        assert vec[8 + i].item() == pytest.approx(math.sin(row * w), abs=1e-6)
        assert vec[12 + i].item() == pytest.approx(math.cos(row * w), abs=1e-6)
    pe = SinCos2DPositionalEmbedding((3, 4), 16, num_prefix_tokens=1)
    x = torch.zeros(2, 13, 16)
    out = pe(x)
    assert out[:, 0].abs().max() == 0
    torch.testing.assert_close(out[0, 1:], table)
    assert pe(torch.zeros(1, 1 + 6, 16), (2, 3)).shape == (1, 7, 16)


@pytest.mark.parametrize("old,new,prefix", [((4, 4), (6, 6), 1), ((4, 4), (2, 3), 0), ((3, 8), (5, 12), 2)])
def test_resample_matches_timm(old, new, prefix):
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(0)
    table = torch.randn(1, prefix + old[0] * old[1], 8)
    ours = resample_pos_embed(table, new, old, num_prefix_tokens=prefix)
    theirs = resample_abs_pos_embed(table, list(new), list(old), num_prefix_tokens=prefix)
    assert ours.shape == (1, prefix + new[0] * new[1], 8)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours[:, :prefix], table[:, :prefix])
    with pytest.raises(ValueError, match="expected 1 prefix"):
        resample_pos_embed(table, new, (9, 9), num_prefix_tokens=1)


def test_resampling_a_constant_table_keeps_it_constant():
    table = torch.full((1, 16, 4), 0.7)
    torch.testing.assert_close(resample_pos_embed(table, (7, 5), (4, 4)), torch.full((1, 35, 4), 0.7))


def test_learned_2d_table_resamples_at_runtime_and_on_load():
    small = LearnedPositionalEmbedding2D((4, 4), 8, num_prefix_tokens=1)
    big = LearnedPositionalEmbedding2D((6, 6), 8, num_prefix_tokens=1)
    big.load_state_dict(small.state_dict())
    expected = resample_pos_embed(small.weight, (6, 6), (4, 4), num_prefix_tokens=1)
    torch.testing.assert_close(big.weight.data, expected.data)
    torch.testing.assert_close(small.table((6, 6)), expected)
    odd = LearnedPositionalEmbedding2D((3, 5), 8)
    with pytest.raises(ValueError, match="cannot infer the grid"):
        LearnedPositionalEmbedding2D((2, 2), 8).load_state_dict(odd.state_dict())
