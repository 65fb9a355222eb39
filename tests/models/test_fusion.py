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


def test_pretrained_members_come_from_checkpoints_and_runs_store_their_architecture(trained_run, tmp_path) -> None:
    # The tiny vision and audio demo runs' encoders as frozen fusion members, as configs/model/fusion_pretrained.yaml
    # builds them; the stored config names the encoders' architecture, not the checkpoint files.
    from mmattn.build import safe_instantiate
    from mmattn.cli.cluster import ConfigError, last_checkpoint
    from mmattn.models import EncoderTokens, encoder_tokens_from_checkpoint
    from mmattn.models.pretrained import architecture_config

    vision, audio = (trained_run(f) / "checkpoints" / "last.ckpt" for f in ("vision", "audio"))
    config = {
        "_target_": "mmattn.models.FusionEncoder",
        "members": {
            "image": {"_target_": "mmattn.models.encoder_tokens_from_checkpoint", "ckpt_path": str(vision), "dim": 16},
            "audio": {"_target_": "mmattn.models.encoder_tokens_from_checkpoint", "ckpt_path": str(audio), "dim": 16},
        },
        "num_classes": 4,
        "dim": 16,
        "depth": 1,
        "num_heads": 2,
    }
    from hydra.utils import instantiate

    net = instantiate(config)  # the user's own config, as mmattn-train builds it (factories allowed)
    image = net.members["image"]
    assert isinstance(image, EncoderTokens) and image.modality == "image" and image.freeze
    assert all(not p.requires_grad for p in image.net.parameters())
    x = net.example_input(2)
    net.train()(x).sum().backward()
    assert image.proj.weight.grad is not None and image.net.embed.proj.weight.grad is None
    assert not image.net.training  # a frozen encoder keeps dropout off
    stored = architecture_config(net, config)
    assert stored["members"]["image"]["_target_"] == "mmattn.models.EncoderTokens"
    assert "ckpt_path" not in str(stored) and stored["num_classes"] == 4
    rebuilt = safe_instantiate(stored, where="model")  # what a checkpoint rebuilds: classes only
    rebuilt.load_state_dict(net.state_dict())
    torch.testing.assert_close(rebuilt.eval()(x), net.eval()(x))

    # The newest run's checkpoint of a task, found by name; none: one line naming the command that makes one.
    for stamp in ("2026-01-01_10-00-00", "2026-01-02_09-00-00"):
        folder = tmp_path / "outputs" / "vision_demo" / "runs" / stamp / "checkpoints"
        folder.mkdir(parents=True)
        (folder / "last.ckpt").symlink_to(vision)
    newest = tmp_path / "outputs" / "vision_demo" / "runs" / "2026-01-02_09-00-00" / "checkpoints" / "last.ckpt"
    assert last_checkpoint(str(tmp_path / "outputs"), "vision_demo") == str(newest)
    with pytest.raises(ConfigError, match=r"no checkpoint of vision_demo under .*; train one first"):
        last_checkpoint(str(tmp_path / "elsewhere"), "vision_demo")
    with pytest.raises(ValueError, match="EncoderTokens wraps an EncoderClassifier"):
        EncoderTokens(torch.nn.Linear(2, 2))
    assert encoder_tokens_from_checkpoint(str(vision)).dim == image.net.dim

    # Pooled: one token, the features the classifier's own head reads (its logits follow from it), drawn over the
    # whole input; the stored architecture keeps the choice.
    pooled = encoder_tokens_from_checkpoint(str(vision), pooled=True).eval()
    images = pooled.example_input(3)
    out = pooled.embed(images)
    assert out.tokens.shape == (3, 1, pooled.net.dim) and out.layout.shape == (1, 1) == pooled.layout.shape
    torch.testing.assert_close(pooled.net.head(out.tokens[:, 0]), pooled.net.eval()(images))
    fused = instantiate(
        {**config, "members": {**config["members"], "image": {**config["members"]["image"], "pooled": True}}}
    )
    assert architecture_config(fused, config)["members"]["image"]["pooled"] is True
    assert fused(fused.example_input(2)).shape == (2, 4)


def test_the_demo_config_builds_on_pretrained_runs(trained_run, compose_cfg) -> None:
    # configs/model/fusion_pretrained.yaml as experiment=fusion_demo composes it, on the tiny demo runs' checkpoints.
    from hydra.utils import instantiate

    vision, audio = (trained_run(f) / "checkpoints" / "last.ckpt" for f in ("vision", "audio"))
    cfg = compose_cfg(
        "train",
        ["experiment=fusion_demo", f"model.members.image.ckpt_path={vision}", f"model.members.audio.ckpt_path={audio}"],
    )
    net = instantiate(cfg.model)
    image, sound = net.members["image"], net.members["audio"]
    assert image.pooled and sound.pooled and not image.freeze and sound.freeze
    assert any(p.requires_grad for p in image.net.parameters()) and not any(
        p.requires_grad for p in sound.net.parameters()
    )
    assert net(net.example_input(2)).shape == (2, cfg.data.num_classes)
