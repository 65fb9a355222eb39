"""AST from a transformers AST folder (what a Hub id resolves to): parity at the pretrained shape, a reported new head
and resampled position table for another clip length."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from mmattn.tasks.audio import ast_from_hf_hub

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    config = transformers.ASTConfig(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        num_mel_bins=40,
        max_length=120,
        num_labels=7,
    )
    torch.manual_seed(0)
    reference = transformers.ASTForAudioClassification(config).eval()
    folder = tmp_path_factory.mktemp("hf_ast")
    reference.save_pretrained(folder)
    return folder, reference


def test_the_pretrained_shape_matches_transformers(hf_folder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, reference = hf_folder
    model = ast_from_hf_hub(str(folder), num_classes=7).eval()
    x = torch.randn(2, 120, 40)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x).logits, atol=1e-4)
    assert model.init_config["_target_"] == "mmattn.tasks.audio.AST" and model.init_config["target_length"] == 120


def test_another_task_gets_a_new_head_and_resampled_positions(hf_folder, monkeypatch, caplog) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, reference = hf_folder
    with caplog.at_level(logging.INFO, logger="mmattn.models.pretrained"):
        model = ast_from_hf_hub(str(folder), num_classes=3, target_length=200)
    assert "1 resampled, 2 skipped (shape), 2 newly initialised" in caplog.text
    assert "skipped head.weight: pretrained [7, 48] vs model [3, 48]" in caplog.text
    assert model(torch.randn(1, 200, 40)).shape == (1, 3)
