"""Our ViT against timm's VisionTransformer: configuration import and outputs to 1e-4 in fp32."""

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from mmattn.tasks.vision import ViT

CONFIGS = {
    "tiny-cls": dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10),
    "avgpool-qknorm-ls-nobias": dict(
        img_size=32,
        patch_size=4,
        embed_dim=48,
        depth=3,
        num_heads=3,
        num_classes=5,
        global_pool="avg",
        qk_norm=True,
        init_values=1e-2,
        qkv_bias=False,
    ),
    "rect-patches": dict(
        img_size=(48, 32), patch_size=(16, 8), embed_dim=96, depth=1, num_heads=6, num_classes=7, mlp_ratio=2.0
    ),
    "avg-with-cls-no-fcnorm": dict(
        img_size=24, patch_size=6, embed_dim=32, depth=2, num_heads=2, num_classes=3, global_pool="avg", fc_norm=False
    ),
    "no-class-token": dict(
        img_size=32,
        patch_size=16,
        embed_dim=64,
        depth=2,
        num_heads=8,
        num_classes=4,
        class_token=False,
        global_pool="avg",
    ),
}


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Give every tensor random values so that no zero-initialised part (LayerScale, head) hides a mismatch."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_from_timm_matches_outputs(name):
    kw = CONFIGS[name]
    timm_model = _randomised(VisionTransformer(**kw))
    ours = ViT.from_timm(timm_model).eval()
    size = kw["img_size"] if isinstance(kw["img_size"], tuple) else (kw["img_size"],) * 2
    x = torch.randn(3, 3, *size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), timm_model(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours.forward_features(x), timm_model.forward_features(x), atol=1e-4, rtol=1e-4)


def test_from_timm_with_other_image_size_resamples_like_timm():
    kw = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10, dynamic_img_size=True)
    timm_model = _randomised(VisionTransformer(**kw))
    ours = ViT.from_timm(timm_model).eval()
    x = torch.randn(2, 3, 48, 40)  # a 6 x 5 grid instead of 4 x 4: both resample the table bicubically
    with torch.no_grad():
        torch.testing.assert_close(ours(x), timm_model(x), atol=1e-4, rtol=1e-4)


def test_unsupported_timm_features_are_named():
    with pytest.raises(ValueError, match="register tokens"):
        ViT.from_timm(VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, reg_tokens=2))
    with pytest.raises(ValueError, match="expects a timm VisionTransformer"):
        ViT.from_timm(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("pool,pos", [("cls", "learned"), ("avg", "sincos"), ("avg", "none")])
def test_vit_trains_one_step_without_nan(pool, pos):
    torch.manual_seed(1)
    model = ViT(
        img_size=16,
        patch_size=4,
        num_classes=3,
        dim=32,
        depth=2,
        num_heads=4,
        pool=pool,
        pos_embed=pos,
        class_token=pool == "cls",
        drop_path_rate=0.1,
        layer_scale=1e-5,
    )
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert ("pos_embed.weight" in model.no_weight_decay()) == (pos == "learned")


def test_checkpoint_at_another_image_size_loads_resampled():
    small = ViT(img_size=16, patch_size=4, num_classes=3, dim=32, depth=1, num_heads=4)
    big = ViT(img_size=32, patch_size=4, num_classes=3, dim=32, depth=1, num_heads=4)
    big.load_state_dict(small.state_dict())
    assert big.pos_embed.weight.shape == (1, 1 + 64, 32)
    assert big(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_bad_sizes_raise_with_values():
    with pytest.raises(
        ValueError, match=r"img_size 30 \(height\) is not divisible by patch_size 16; choose img_size in"
    ):
        ViT(img_size=30, patch_size=16, dim=32, depth=1, num_heads=2)
    with pytest.raises(ValueError, match=r"num_heads \(5\) must divide dim \(32\)"):
        ViT(img_size=32, patch_size=16, dim=32, depth=1, num_heads=5)
    model = ViT(img_size=32, patch_size=16, dim=32, depth=1, num_heads=2, num_classes=2)
    with pytest.raises(ValueError, match="img_size 40"):
        model(torch.randn(1, 3, 40, 32))
    with pytest.raises(ValueError, match="pool='cls' needs class_token"):
        ViT(img_size=32, patch_size=16, dim=32, depth=1, num_heads=2, class_token=False)
