"""mmattn.models.hf_import: the renaming shared by the transformers ViT-style importers (ViT and AST) names what it
cannot place."""

import pytest
import torch

from mmattn.models.hf_import import convert_vit_style


def test_vit_style_renaming_packs_qkv_and_names_strangers() -> None:
    layer = {f"vit.layers.0.attention.{p}_proj.weight": torch.full((2, 2), float(i)) for i, p in enumerate("qkv")}
    out = convert_vit_style(
        {**layer, "vit.layernorm.bias": torch.zeros(2)},
        prefix="vit.",
        renames={"layernorm.": "encoder.norm."},
        family="ViT",
    )
    assert set(out) == {"encoder.layers.0.attn.qkv.weight", "encoder.norm.bias"}
    assert out["encoder.layers.0.attn.qkv.weight"][:, 0].tolist() == [0, 0, 1, 1, 2, 2]  # q, then k, then v
    with pytest.raises(ValueError, match=r"HF AST key 'audio.pooler.weight' has no counterpart in mmattn's AST"):
        convert_vit_style({"audio.pooler.weight": torch.zeros(1)}, prefix="audio.", renames={}, family="AST")
