"""ViTs from timm's pretrained weights (read from a local file, as timm.create_model(pretrained=True) does): parity at
the pretrained shape, a report of the new head and the resampled positions, and runs that store the architecture."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import timm
import torch
from mmattn_testing import TINY_DATA
from omegaconf import open_dict

import mmattn
from mmattn.models.pretrained import load_pretrained
from mmattn.tasks.vision import ViT, vit_from_timm_hub

NAME = "vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def timm_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A file of (random) weights of timm's ViT-Tiny, in the format timm's pretrained loader reads."""
    torch.manual_seed(0)
    reference = timm.create_model(NAME, pretrained=False).eval()
    path = tmp_path_factory.mktemp("timm") / "vit_tiny.pth"
    torch.save(reference.state_dict(), path)
    return path, reference


def test_the_pretrained_shape_matches_timm(timm_weights, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read the file, never the network
    path, reference = timm_weights
    with caplog.at_level(logging.INFO, logger="mmattn.models.pretrained"):
        model = vit_from_timm_hub(NAME, num_classes=1000, checkpoint_path=path).eval()
    assert "152 tensors loaded, 0 resampled, 0 skipped (shape), 0 newly initialised, 0 unused" in caplog.text
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-4)
    assert model.init_config["_target_"] == "mmattn.tasks.vision.ViT" and model.init_config["dim"] == 192


def test_a_new_head_and_image_size_are_reported(timm_weights, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path, reference = timm_weights
    with caplog.at_level(logging.INFO, logger="mmattn.models.pretrained"):
        model = vit_from_timm_hub(NAME, num_classes=5, img_size=32, checkpoint_path=path)
    assert "149 tensors loaded, 1 resampled, 2 skipped (shape), 2 newly initialised" in caplog.text
    assert "skipped head.weight: pretrained [1000, 192] vs model [5, 192]" in caplog.text
    assert "resampled pos_embed.weight" in caplog.text
    assert caplog.records[-1].levelno == logging.WARNING  # never silently
    assert model.pos_embed.weight.shape == (1, 1 + 2 * 2, 192)
    assert torch.equal(model.encoder.layers[0].attn.qkv.weight, reference.blocks[0].attn.qkv.weight)


def test_load_pretrained_reports_every_name() -> None:
    model = ViT(img_size=16, patch_size=8, num_classes=3, dim=8, depth=1, num_heads=2)
    donor = ViT(img_size=32, patch_size=8, num_classes=4, dim=8, depth=1, num_heads=2).state_dict()
    donor["extra.weight"] = torch.zeros(1)
    del donor["encoder.norm.weight"]
    report = load_pretrained(model, donor, source="a donor")
    assert report.resampled == ["pos_embed.weight"] and report.unused == ["extra.weight"]
    assert [name for name, _, _ in report.skipped] == ["head.weight", "head.bias"]
    assert report.new == ["encoder.norm.weight", "head.weight", "head.bias"]
    assert torch.equal(model.embed.proj.weight, donor["embed.proj.weight"])


def test_a_run_stores_the_architecture_not_the_download(
    timm_weights, compose_cfg, env_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path, _ = timm_weights
    local = tmp_path / "weights.pth"
    local.write_bytes(path.read_bytes())
    tiny = ["trainer.max_epochs=1", *(f"+trainer.limit_{s}_batches=1" for s in ("train", "val", "test"))]
    model_options = ["model=vit_small_timm", f"model.name={NAME}", f"model.checkpoint_path={local}"]
    cfg = compose_cfg("train", [*TINY_DATA, *model_options, *tiny])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "run"), str(tmp_path / "logs")
    from mmattn.cli.train import train

    train(cfg)
    local.unlink()  # a rebuild must not need the pretrained weights any more
    model = mmattn.load(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert model.hparams["net"]["_target_"] == "mmattn.tasks.vision.ViT" and model.net.dim == 192
