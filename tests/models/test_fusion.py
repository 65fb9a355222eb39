"""FusionEncoder: members' tokens fused behind one class token; an absent input is masked (its values cannot change
the output), a member left out of the batch equals one marked absent in every row; bad members are named."""

import pytest
import torch

from mmattn.models import FusionEncoder
from mmattn.tasks.audio import SpectrogramPatchEmbed
from mmattn.tasks.text import TextEmbedding
from mmattn.tasks.vision import ImagePatchEmbed


def _fusion(**kw) -> FusionEncoder:
    torch.manual_seed(0)
    members = {
        "image": ImagePatchEmbed(16, 8, 3, 32),
        "audio": SpectrogramPatchEmbed(16, 24, 8, 8, 8, 32),
        "caption": TextEmbedding(30, 32),
    }
    return FusionEncoder(members, num_classes=5, dim=32, depth=2, num_heads=4, **kw).eval()


def test_an_absent_input_cannot_change_the_output() -> None:
    net = _fusion()
    x = net.example_input(3)
    x["caption"][1, 4:] = 0  # padding inside a present text
    present = {"image": torch.tensor([True, False, True]), "audio": torch.tensor([True, True, False])}
    out = net({**x, "present": present})
    noise = {
        "image": x["image"].clone(),
        "audio": x["audio"].clone(),
        "caption": x["caption"],
    }
    noise["image"][1] = torch.randn_like(noise["image"][1]) * 100  # absent in row 1
    noise["audio"][2] = torch.randn_like(noise["audio"][2]) * 100  # absent in row 2
    torch.testing.assert_close(net({**noise, "present": present}), out)
    # ...while a present input does change it.
    noise["image"][0] += 1
    assert not torch.allclose(net({**noise, "present": present})[0], out[0])


def test_a_member_left_out_equals_one_absent_in_every_row() -> None:
    net = _fusion()
    x = net.example_input(2)
    absent = {"present": {"audio": torch.zeros(2, dtype=torch.bool)}}
    torch.testing.assert_close(net({"image": x["image"], "caption": x["caption"]}), net({**x, **absent}))
    with pytest.raises(ValueError, match=r"no input of any member \(\['image', 'audio', 'caption'\]\)"):
        net({})
    with pytest.raises(ValueError, match=r"the inputs also hold \['video'\]"):
        net({**x, "video": x["image"]})


def test_every_member_trains_and_the_type_embeddings_too() -> None:
    net = _fusion().train()
    net(net.example_input(2)).square().mean().backward()
    for name in ("image", "audio", "caption"):
        grads = [p.grad for p in net.members[name].parameters()]
        assert all(g is not None for g in grads) and any(bool(g.abs().sum()) for g in grads), name
    assert net.type_embed.grad is not None and bool(net.type_embed.grad.abs().sum())


def test_bad_members_are_named() -> None:
    with pytest.raises(ValueError, match=r"at least two inputs, got members \['image'\]"):
        FusionEncoder({"image": ImagePatchEmbed(16, 8, 3, 32)}, num_classes=2, dim=32, depth=1, num_heads=2)
    with pytest.raises(ValueError, match=r"'present' is reserved"):
        FusionEncoder(
            {"present": ImagePatchEmbed(16, 8, 3, 32), "b": ImagePatchEmbed(16, 8, 3, 32)},
            num_classes=2,
            dim=32,
            depth=1,
            num_heads=2,
        )
    with pytest.raises(ValueError, match=r"member 'b': Linear is not an mmattn.modality.InputEmbedding"):
        FusionEncoder(
            {"a": ImagePatchEmbed(16, 8, 3, 32), "b": torch.nn.Linear(2, 2)},
            num_classes=2,
            dim=32,
            depth=1,
            num_heads=2,
        )
