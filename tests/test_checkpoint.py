"""mmattn.checkpoint: checkpoints load weights-only, rebuild only trusted classes, and bad files say what they are."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from mmattn.build import UntrustedTargetError
from mmattn.checkpoint import load_module, read_checkpoint
from mmattn.lit import ClassificationModule, Seq2SeqModule


class _Unsafe:
    """A class torch's weights-only unpickler refuses (it would have to be imported and called)."""


def _rewrite(src: Path, dst: Path, net: object = None, module: str | None = None) -> Path:
    """A copy of a real checkpoint whose network config (or module class) was replaced, as an attacker would."""
    checkpoint = torch.load(src, map_location="cpu", weights_only=True)
    if net is not None:
        checkpoint["hyper_parameters"]["net"] = net
    if module is not None:
        checkpoint["mmattn_module"] = module
    torch.save(checkpoint, dst)
    return dst


def test_a_run_checkpoint_rebuilds_its_module(trained_run) -> None:
    ckpt = trained_run("vision") / "checkpoints" / "last.ckpt"
    module = load_module(ckpt)
    assert isinstance(module, ClassificationModule) and not module.training
    assert module.hparams["net"]["_target_"] == "mmattn.tasks.vision.ViT"
    assert module.hparams["data"]["_target_"] == "mmattn.tasks.vision.ShapesDataModule"
    assert module.classes == module.hparams["classes"] and len(module.classes) == 10
    stored = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(v, stored[k]) for k, v in module.state_dict().items())
    with pytest.raises(ValueError, match=r"holds a ClassificationModule, not a Seq2SeqModule; needs translation"):
        load_module(ckpt, kinds=(Seq2SeqModule,), hint="; needs translation")


def test_crafted_configs_build_nothing(trained_run, tmp_path: Path) -> None:
    ckpt = trained_run("vision") / "checkpoints" / "last.ckpt"
    victim = tmp_path / "precious.txt"
    victim.write_text("keep\n")
    crafted = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    with pytest.raises(UntrustedTargetError, match=r"open.ckpt: net names 'builtins.open'"):
        load_module(_rewrite(ckpt, tmp_path / "open.ckpt", net=crafted))
    crafted = {"_target_": "torch.save", "obj": {}, "f": str(victim)}
    with pytest.raises(UntrustedTargetError, match=r"save.ckpt: net names 'torch.save', a function"):
        load_module(_rewrite(ckpt, tmp_path / "save.ckpt", net=crafted))
    with pytest.raises(UntrustedTargetError, match=r"module names 'os.system'"):
        load_module(_rewrite(ckpt, tmp_path / "module.ckpt", module="os.system"))
    assert victim.read_text() == "keep\n"


def test_files_that_are_not_checkpoints_say_so(trained_run, tmp_path: Path) -> None:
    data = (trained_run("vision") / "checkpoints" / "last.ckpt").read_bytes()
    cases = {
        "truncated.ckpt": data[: len(data) // 2],
        "garbage.ckpt": bytes(range(256)) * 8,
        "text.ckpt": b"hello\n",
        "empty.ckpt": b"",
        "pickle.ckpt": pickle.dumps({"state_dict": {}}),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name} is not a (readable )?checkpoint") as caught:
            read_checkpoint(tmp_path / name)
        assert "weights_only=False" not in str(caught.value)  # torch's advice would be the wrong one here
    torch.save({"state_dict": {}, "x": OrderedDict(a=_Unsafe())}, tmp_path / "objects.ckpt")
    with pytest.raises(ValueError, match=r"holds pickled Python objects \(.*_Unsafe\), not only tensors"):
        read_checkpoint(tmp_path / "objects.ckpt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"plain.pt is a torch file but not a Lightning checkpoint"):
        read_checkpoint(tmp_path / "plain.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(ValueError, match=r"foreign.ckpt records no module class .*load_from_checkpoint\(path\)"):
        load_module(tmp_path / "foreign.ckpt")
    with pytest.raises(ValueError, match=r"foreign.ckpt records no network config, .*net=<the network>"):
        ClassificationModule.load_from_checkpoint(tmp_path / "foreign.ckpt")
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*nope.ckpt does not exist"):
        read_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(ValueError, match=r"is a folder, not a checkpoint file; .*consolidate_checkpoint"):
        read_checkpoint(tmp_path)
