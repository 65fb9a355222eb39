"""AST against HF transformers' ASTForAudioClassification, and its shape rules."""

import pytest
import torch

from mmattn.tasks.audio.ast import AST

transformers = pytest.importorskip("transformers")


def _hf_ast(seed: int = 0, **overrides):
    config = dict(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        num_mel_bins=40,
        max_length=120,
        num_labels=7,
        layer_norm_eps=1e-12,
    )
    config.update(overrides)
    torch.manual_seed(seed)
    model = transformers.ASTForAudioClassification(transformers.ASTConfig(**config)).eval()
    with torch.no_grad():
        # Random values everywhere (norms and biases included), so every tensor's placement is checked.
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.ndim == 1 and p.shape[0] == config["hidden_size"] else 0.0))
    return model


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # AST's overlapping 16x16 patches at stride 10
        {"frequency_stride": 16, "time_stride": 16, "qkv_bias": False},
        {"patch_size": 8, "frequency_stride": 4, "time_stride": 6, "num_hidden_layers": 3, "hidden_size": 32},
    ],
)
def test_from_hf_matches_transformers_logits(overrides):
    hf = _hf_ast(**overrides)
    ours = AST.from_hf(hf).eval()
    feats = torch.randn(3, hf.config.max_length, hf.config.num_mel_bins)
    with torch.no_grad():
        ref = hf(feats).logits
        out = ours(feats)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_from_hf_other_clip_length_resamples_positions():
    hf = _hf_ast(seed=1)
    ours = AST.from_hf(hf).eval()
    longer = AST.from_hf(hf, target_length=250).eval()
    assert longer.grid_size == (3, 24) and ours.grid_size == (3, 11)
    feats = torch.randn(2, 250, 40)
    with torch.no_grad():
        # Built for 250 frames (table resampled on load) = built for 120 and resampled at run time.
        torch.testing.assert_close(longer(feats), ours(feats), atol=1e-5, rtol=0)


def test_ast_shapes_and_errors():
    model = AST(num_mel_bins=64, target_length=100, num_classes=5, dim=32, depth=1, num_heads=4)
    # (64 - 16) // 10 + 1 = 5 frequency rows, (100 - 16) // 10 + 1 = 9 time columns; 4 frames are left uncovered.
    assert model.grid_size == (5, 9) and model.num_prefix_tokens == 2
    x = torch.randn(2, 100, 64, requires_grad=True)
    out = model(x)
    out.sum().backward()
    assert out.shape == (2, 5) and torch.isfinite(x.grad).all()
    assert model(torch.randn(1, 300, 64)).shape == (1, 5)  # another clip length: positions resampled
    with pytest.raises(ValueError, match=r"\[batch, frames, 64 mel bins\], got shape \(2, 100, 128\)"):
        model(torch.randn(2, 100, 128))
    with pytest.raises(ValueError, match="smaller than one patch"):
        model(torch.randn(2, 10, 64))
    with pytest.raises(ValueError, match=r"num_heads \(5\) must divide dim \(32\)"):
        AST(dim=32, num_heads=5)


def test_from_hf_refuses_other_models():
    with pytest.raises(ValueError, match="expects a transformers ASTForAudioClassification"):
        AST.from_hf(torch.nn.Linear(2, 2))
    hf = _hf_ast(hidden_act="relu")
    with pytest.raises(ValueError, match="hidden_act='relu'"):
        AST.from_hf(hf)


def test_vision_and_audio_share_the_core_classes(compose_cfg) -> None:
    from hydra.utils import instantiate

    from mmattn.lit import ClassificationModule
    from mmattn.models import EncoderClassifier
    from mmattn.nn import Encoder
    from mmattn.tasks.vision import ViT

    audio = compose_cfg("train", ["experiment=audio_demo", "model.depth=1"])
    vision = compose_cfg("train", ["experiment=vision_demo", "model.depth=1"])
    ast, vit = instantiate(audio.model), instantiate(vision.model)
    assert isinstance(ast, EncoderClassifier) and isinstance(vit, ViT)
    assert type(ast.encoder) is type(vit.encoder) is Encoder
    assert audio.module._target_ == vision.module._target_ == "mmattn.lit.ClassificationModule"
    assert isinstance(instantiate(audio.module, net=ast), ClassificationModule)
