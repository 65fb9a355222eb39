"""ViT.from_hf against transformers' ViTForImageClassification built from small configs with random weights."""

import pytest
import torch

from mmattn.tasks.vision import ViT

transformers = pytest.importorskip("transformers")


def _hf_vit(seed: int = 0, **overrides):
    config = dict(
        image_size=32,
        patch_size=8,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        num_labels=5,
    )
    config.update(overrides)
    torch.manual_seed(seed)
    model = transformers.ViTForImageClassification(transformers.ViTConfig(**config)).eval()
    with torch.no_grad():
        # Random values everywhere (norms and biases included), so every tensor's placement is checked.
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.ndim == 1 and p.shape[0] == config["hidden_size"] else 0.0))
    return model


def _size(image_size) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # layer_norm_eps 1e-12, the HF default
        {"qkv_bias": False, "image_size": (32, 24), "patch_size": 4, "layer_norm_eps": 1e-6, "num_labels": 3},
        {"hidden_size": 64, "num_attention_heads": 8, "intermediate_size": 128, "num_channels": 1, "num_labels": 0},
    ],
)
def test_from_hf_matches_transformers_logits(overrides):
    hf = _hf_vit(**overrides)
    ours = ViT.from_hf(hf).eval()
    size = _size(hf.config.image_size)
    for batch in (1, 3):
        x = torch.randn(batch, hf.config.num_channels, *size)
        with torch.no_grad():
            ref = hf(x).logits
            out = ours(x)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("img_size", [(48, 40), 24])
def test_another_image_size_resampled_on_import_matches_interpolate_pos_encoding(img_size):
    hf = _hf_vit(seed=1)
    ours = ViT.from_hf(hf, img_size=img_size).eval()
    x = torch.randn(2, 3, *_size(img_size))
    with torch.no_grad():
        ref = hf(x, interpolate_pos_encoding=True).logits
        torch.testing.assert_close(ours(x), ref, atol=1e-4, rtol=0)
        # Resampling at run time follows timm (antialiased bicubic), not transformers: other numbers.
        assert not torch.allclose(ViT.from_hf(hf).eval()(x), ref, atol=1e-3)


def test_unsupported_hf_vit_features_are_named():
    with pytest.raises(ValueError, match="hidden_act='gelu_new'"):
        ViT.from_hf(_hf_vit(hidden_act="gelu_new"))
    with pytest.raises(ValueError, match="expects a transformers ViTForImageClassification"):
        ViT.from_hf(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="expects a transformers ViTForImageClassification"):
        ViT.from_hf(transformers.ViTModel(transformers.ViTConfig(hidden_size=32, num_attention_heads=2)))
