"""Attention maps of a real ViT: with attention made uniform in every layer, the class token's rollout over the
patches is the closed form; the pictures are PNGs with content; inputs of another grid are refused by name."""

import pytest
import torch
from mmattn_testing import is_picture

from mmattn.tasks.vision import ViT
from mmattn.viz.attention import alignment_figure, classifier_figures, classifier_maps, save_figures


def _uniform_vit(depth: int) -> ViT:
    torch.manual_seed(0)
    vit = ViT(img_size=32, patch_size=8, num_classes=3, dim=32, depth=depth, num_heads=4).eval()
    with torch.no_grad():
        for layer in vit.encoder.layers:
            # Zero query and key projections: every score is 0, so every softmax row is uniform.
            layer.attn.qkv.weight[: 2 * 32].zero_()
            layer.attn.qkv.bias[: 2 * 32].zero_()
    return vit


@pytest.mark.parametrize("depth", [1, 3])
def test_uniform_attention_gives_the_closed_form_rollout(depth: int) -> None:
    vit = _uniform_vit(depth)
    maps = classifier_maps(vit, torch.randn(2, 3, 32, 32))
    n = 1 + 16  # class token + 4 x 4 patches
    # Rollout = 0.5^L I + (1 - 0.5^L) / N: the class token's row gives every patch (1 - 0.5^L) / N.
    expected = torch.full((2, 4, 4), (1 - 0.5**depth) / n)
    torch.testing.assert_close(maps["rollout"], expected)
    torch.testing.assert_close(maps["last"], torch.full((2, 4, 4, 4), 1 / n))


def test_pictures_and_errors(tmp_path) -> None:
    vit = _uniform_vit(2)
    with torch.no_grad():
        vit.encoder.layers[1].attn.qkv.weight.normal_()  # some structure to draw
    x = torch.randn(2, 3, 32, 32)
    paths = save_figures(classifier_figures(x, classifier_maps(vit, x), titles=["a", "b"]), tmp_path, dpi=40)
    assert [p.name for p in paths] == ["attention_0.png", "heads_0.png", "attention_1.png", "heads_1.png"]
    assert all(is_picture(p) for p in paths)
    spectrogram = torch.randn(1, 50, 16)
    with pytest.raises(ValueError, match="cannot draw an input of shape"):
        classifier_figures(spectrogram[:, None, :, :2].expand(1, 2, 50, 2), {"rollout": None})
    with pytest.raises(ValueError, match="not the 4 x 4 grid the model was built for"):
        classifier_maps(vit, torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match="no token-grid encoder"):
        classifier_maps(torch.nn.Linear(2, 2), x)
    m = torch.softmax(torch.randn(4, 6), -1)
    (path,) = save_figures([("al", alignment_figure(m, list("abcdef"), list("wxyz")))], tmp_path, dpi=40)
    assert path.name == "al.png" and is_picture(path)
