"""DualEncoder: any two towers (two modalities, or one twice) into one normalised space, and its build-time checks."""

from __future__ import annotations

import math

import pytest
import torch
from mmattn_towers import PassTower, VectorEmbedding, identity_dual_encoder
from torch import nn

from mmattn.models import DualEncoder, EncoderClassifier
from mmattn.tasks.text import TextEmbedding
from mmattn.tasks.vision import ImagePatchEmbed


def _text_tower(dim: int = 32) -> EncoderClassifier:
    embed = TextEmbedding(20, dim, pad_id=0, example_length=6)
    return EncoderClassifier(embed, num_classes=0, dim=dim, depth=1, num_heads=2, class_token=False, pool="avg")


def _image_tower(dim: int = 48) -> EncoderClassifier:
    embed = ImagePatchEmbed(16, 8, 3, dim)
    return EncoderClassifier(embed, num_classes=0, dim=dim, depth=1, num_heads=2)


def test_two_modalities_embed_into_one_normalised_space() -> None:
    torch.manual_seed(0)
    net = DualEncoder({"image": _image_tower(), "text": _text_tower()}, 24)
    assert net.names == ("image", "text")
    assert {name: proj.in_features for name, proj in net.proj.items()} == {"image": 48, "text": 32}
    assert all(proj.bias is None for proj in net.proj.values())  # CLIP's projections have no bias
    ids = torch.tensor([[3, 4, 5, 2, 0, 0], [6, 7, 2, 0, 0, 0]])
    out = net({"image": torch.randn(2, 3, 16, 16), "text": ids, "match": torch.tensor([0, 1])})
    assert set(out) == {"image", "text"} and out["image"].shape == out["text"].shape == (2, 24)
    assert torch.allclose(out["image"].norm(dim=-1), torch.ones(2), atol=1e-5)
    # Only the towers present are embedded; padding does not change a text's embedding.
    alone = net({"text": ids[1:, :3]})
    assert set(alone) == {"text"} and torch.allclose(alone["text"], out["text"][1:], atol=1e-5)
    out["image"].sum().backward()
    assert net.towers["image"].embed.proj.weight.grad is not None


def test_the_same_modality_twice_and_learned_temperature() -> None:
    net = DualEncoder({"query": _text_tower(), "doc": _text_tower(16)}, 8, init_logit_bias=-10.0)
    assert math.isclose(net.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
    assert net.logit_bias.item() == -10.0
    with torch.no_grad():
        net.logit_scale.fill_(10.0)
    assert math.isclose(float(net.scale()), 100.0, rel_tol=1e-5)  # capped at log(100), CLIP's clamp
    a = nn.functional.normalize(torch.randn(3, 8), dim=-1)
    assert torch.allclose(net.logits(a, a), 100 * a @ a.T - 10, atol=1e-4)
    assert {"logit_scale", "logit_bias"} <= net.no_weight_decay()
    assert "towers.query.embed.embed_tokens.embed.weight" in net.no_weight_decay()
    assert DualEncoder({"a": _text_tower(), "b": _text_tower()}, 8).logit_bias is None


@pytest.mark.parametrize("names", [["only"], ["a", "b", "c"]])
def test_exactly_two_towers(names) -> None:
    towers = {name: PassTower(VectorEmbedding(3)) for name in names}
    with pytest.raises(ValueError, match=r"^DualEncoder takes exactly two towers, got \d: \[") as err:
        DualEncoder(towers, 4)
    assert "\n" not in str(err.value) and all(repr(n) in str(err.value) for n in names)


def test_towers_are_checked_when_built() -> None:
    class NoContract(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(3, 3)

        def forward(self, x):
            return x

    with pytest.raises(ValueError, match=r"tower 'b': its embed: Linear is not an mmattn.modality.InputEmbedding"):
        DualEncoder({"a": PassTower(VectorEmbedding(3)), "b": NoContract()}, 4)
    with pytest.raises(ValueError, match=r"tower 'b': its embed: NoneType is not"):
        DualEncoder({"a": PassTower(VectorEmbedding(3)), "b": nn.Identity()}, 4)

    class Tokens3D(PassTower):
        def forward(self, x):
            return self.embed(x).tokens  # [B, 1, D]: not pooled

    with pytest.raises(ValueError, match=r"tower 'b' \(vector \(VectorEmbedding\)\) must map a batch to pooled"):
        DualEncoder({"a": PassTower(VectorEmbedding(3)), "b": Tokens3D(VectorEmbedding(3))}, 4)
    with pytest.raises(ValueError, match=r"embed_dim must be >= 1"):
        DualEncoder({"a": PassTower(VectorEmbedding(3)), "b": PassTower(VectorEmbedding(3))}, 0)


def test_building_is_deterministic_and_leaves_the_towers_training() -> None:
    def build() -> DualEncoder:
        torch.manual_seed(5)
        return DualEncoder({"a": _text_tower(), "b": _image_tower()}, 4)

    net, again = build(), build()
    assert net.training and all(tower.training for tower in net.towers.values())
    assert all(torch.equal(p, q) for p, q in zip(net.state_dict().values(), again.state_dict().values()))
    # The dry run that measures each tower draws no random numbers of the caller's.
    torch.manual_seed(5)
    towers = {"a": _text_tower(), "b": _image_tower()}
    state = torch.get_rng_state()
    DualEncoder(towers, 4, init_logit_bias=None)
    torch.set_rng_state(state)
    proj = [nn.Linear(32, 4, bias=False), nn.Linear(48, 4, bias=False)]
    nn.init.normal_(proj[0].weight, std=32**-0.5)
    assert torch.equal(proj[0].weight, net.proj["a"].weight)


def test_unknown_tower_names_and_inputs_are_one_line() -> None:
    net = identity_dual_encoder()
    with pytest.raises(ValueError, match=r"no tower 'audio'; this DualEncoder's towers are \['vec', 'ids'\]"):
        net.embedding("audio")
    with pytest.raises(ValueError, match=r"inputs hold none of the towers \['vec', 'ids'\] \(keys: \['match'\]\)"):
        net({"match": torch.zeros(2)})
