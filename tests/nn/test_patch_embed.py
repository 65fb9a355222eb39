"""PatchEmbed: the token grid of a strided convolution, exact tiling checks, and AST's non-strict remainder rule."""

import pytest
import torch

from mmattn.nn import PatchEmbed


def test_grid_matches_the_convolution_and_token_order():
    embed = PatchEmbed((32, 48), 16, 3, 8)
    x = torch.randn(2, 3, 32, 48)
    out = embed(x)
    assert embed.grid_size == (2, 3) and out.shape == (2, 2, 3, 8)
    # Row-major grid: token (i, j) is the patch at rows 16i.., columns 16j...
    patch = x[:, :, 16:32, 32:48]
    ref = torch.einsum("bchw,dchw->bd", patch, embed.proj.weight) + embed.proj.bias
    torch.testing.assert_close(out[:, 1, 2], ref, atol=1e-5, rtol=0)


def test_overlapping_strides():
    embed = PatchEmbed((128, 100), 16, 1, 4, stride=10, strict=False)
    assert embed.grid_size == ((128 - 16) // 10 + 1, (100 - 16) // 10 + 1)
    assert embed(torch.randn(1, 1, 128, 100)).shape == (1, 12, 9, 4)


def test_strict_tiling_errors_name_the_sizes():
    with pytest.raises(ValueError, match=r"img_size 30 \(height\) is not divisible by patch_size 16"):
        PatchEmbed(30, 16, 3, 8)
    with pytest.raises(ValueError, match="not covered by patches of 16 at stride 10"):
        PatchEmbed((128, 100), 16, 1, 4, stride=10)
    lenient = PatchEmbed((128, 100), 16, 1, 4, stride=10, strict=False)
    with pytest.raises(ValueError, match=r"input width 8 is smaller than one patch \(16\)"):
        lenient(torch.randn(1, 1, 128, 8))
