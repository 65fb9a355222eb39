"""Attention maps of a real ViT: with attention made uniform in every layer, the class token's rollout over the
patches is the closed form; the pictures are PNGs with content, drawn by the modality's renderer; a net of another
family and an embedding without a renderer are refused by name."""

import pytest
import torch
from mmattn_testing import is_picture

from mmattn.modality import InputEmbedding, TokenLayout, Tokens
from mmattn.models import EncoderClassifier
from mmattn.tasks.vision import ViT
from mmattn.viz.attention import alignment_figure, classifier_figures, classifier_maps, save_figures


class _NoRenderer(InputEmbedding):
    """Tokens as given [B, 5, 8], and no way to draw them."""

    modality = "blind"
    dim = 8
    layout = TokenLayout.sequence(5)

    def embed(self, x: torch.Tensor) -> Tokens:
        return Tokens(x, None, TokenLayout.sequence(x.shape[1]))

    def example_input(self, batch_size: int) -> torch.Tensor:
        return torch.randn(batch_size, 5, 8)


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
    expected = torch.full((2, 16), (1 - 0.5**depth) / n)
    torch.testing.assert_close(maps["rollout"], expected)
    torch.testing.assert_close(maps["last"], torch.full((2, 4, 16), 1 / n))
    assert maps["layout"] == TokenLayout.grid(4, 4)
    # Another image size gives its own grid (the position table resamples), and the maps follow it.
    assert classifier_maps(vit, torch.randn(1, 3, 48, 48))["layout"] == TokenLayout.grid(6, 6)


def test_pictures_and_errors(tmp_path) -> None:
    vit = _uniform_vit(2)
    with torch.no_grad():
        vit.encoder.layers[1].attn.qkv.weight.normal_()  # some structure to draw
    x = torch.randn(2, 3, 32, 32)
    paths = save_figures(classifier_figures(vit, x, 2, titles=["a", "b"]), tmp_path, dpi=40)
    assert [p.name for p in paths] == ["attention_0.png", "heads_0.png", "attention_1.png", "heads_1.png"]
    assert all(is_picture(p) for p in paths)
    with pytest.raises(ValueError, match="Linear is not an EncoderClassifier"):
        classifier_maps(torch.nn.Linear(2, 2), x)
    blind = EncoderClassifier(_NoRenderer(), num_classes=2, dim=8, depth=1, num_heads=2)
    with pytest.raises(ValueError, match=r"the blind \(_NoRenderer\) input has no renderer"):
        classifier_figures(blind, torch.randn(2, 5, 8), 1)
    m = torch.softmax(torch.randn(4, 6), -1)
    (path,) = save_figures([("al", alignment_figure(m, list("abcdef"), list("wxyz")))], tmp_path, dpi=40)
    assert path.name == "al.png" and is_picture(path)
