"""mmattn.build: a stored config builds only trusted kinds of class, and nothing at all when one target fails."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mmattn.build import (
    TRUST_ENV,
    UntrustedTargetError,
    canonical_target,
    check_config,
    resolve_class,
    resolve_function,
    safe_instantiate,
    trusting,
)
from mmattn.lit.tokenizer_state import tokenizer_from_checkpoint
from mmattn.tasks.vision import ViT

VIT = {
    "_target_": "mmattn.tasks.vision.ViT",
    "img_size": 8,
    "patch_size": 4,
    "num_classes": 2,
    "dim": 8,
    "depth": 1,
    "num_heads": 2,
}


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "precious.txt"
    path.write_text("do not lose me\n")
    return path


def test_our_models_build_and_library_modules_too() -> None:
    assert isinstance(safe_instantiate(VIT, where="model"), ViT)
    linear = safe_instantiate({"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 3}, where="model")
    assert isinstance(linear, nn.Linear)


def test_files_are_not_written_by_open_or_torch_save(victim: Path) -> None:
    open_cfg = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    with pytest.raises(UntrustedTargetError, match=r"model names 'builtins.open', from package 'builtins', which is"):
        safe_instantiate(open_cfg, where="model")
    save_cfg = {"_target_": "torch.save", "obj": {}, "f": str(victim)}
    with pytest.raises(UntrustedTargetError, match=r"'torch.save', a function, not a class"):
        safe_instantiate(save_cfg, where="model")
    # Hidden one level down, next to a valid model: checked before anything is built.
    nested = {**VIT, "img_size": open_cfg}
    with pytest.raises(UntrustedTargetError, match=r"model.img_size names 'builtins.open'"):
        safe_instantiate(nested, where="model")
    in_list = {"_target_": "torch.nn.Sequential", "_args_": [save_cfg]}
    with pytest.raises(UntrustedTargetError, match=r"model._args_\[0\] names 'torch.save'"):
        safe_instantiate(in_list, where="model")
    assert victim.read_text() == "do not lose me\n"


def test_methods_and_other_kinds_are_refused(victim: Path) -> None:
    with pytest.raises(UntrustedTargetError, match="not a class"):
        resolve_class("mmattn.tasks.vision.ViT.from_timm", where="model")
    with pytest.raises(UntrustedTargetError, match="a class that is not a Module or LightningDataModule"):
        resolve_class("torch.optim.SGD", where="model")
    with pytest.raises(UntrustedTargetError, match="not a dotted name"):
        resolve_class("ViT", where="model")
    with pytest.raises(ValueError, match="cannot be imported"):
        resolve_class("mmattn.tasks.vision.NoSuchNet", where="model")


def test_functions_and_tokenizers_only_from_mmattn_or_trusted_packages(victim: Path) -> None:
    assert resolve_function("mmattn.tasks.text.is_scan_command", where="check")("jump twice")
    for name in ("os.remove", "shutil.rmtree", "torch.save"):
        with pytest.raises(UntrustedTargetError, match="not trusted"):
            resolve_function(name, where="module.sample_eval.check")
    crafted = {"mmattn_tokenizer": {"class": "torch.nn.Linear", "in_features": 1}}
    with pytest.raises(UntrustedTargetError, match=r"'torch.nn.Linear', from package 'torch', which is not trusted"):
        tokenizer_from_checkpoint(crafted)
    assert victim.read_text() == "do not lose me\n"


def test_a_users_package_is_built_only_when_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Importing a package runs its code, so an untrusted one must not even be imported.
    package = tmp_path / "my_modality"
    package.mkdir()
    imported = tmp_path / "imported.flag"
    (package / "__init__.py").write_text(
        f"from pathlib import Path\nPath({str(imported)!r}).write_text('x')\n"
        "from torch import nn\n\nclass Embed(nn.Linear):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(TRUST_ENV, raising=False)
    config = {"_target_": "my_modality.Embed", "in_features": 2, "out_features": 2}
    with pytest.raises(UntrustedTargetError, match=r"pass trust=\[my_modality\] \(or set MMATTN_TRUST=my_modality\)"):
        check_config(config, where="model")
    assert not imported.exists() and "my_modality" not in sys.modules
    assert isinstance(safe_instantiate(config, where="model", trust=["my_modality"]), nn.Linear)
    assert imported.exists()
    monkeypatch.setenv(TRUST_ENV, "other,my_modality")
    assert isinstance(safe_instantiate(config, where="model"), nn.Linear)
    monkeypatch.delenv(TRUST_ENV)
    with trusting(["my_modality"]):
        assert isinstance(safe_instantiate(config, where="model"), nn.Linear)
    with pytest.raises(UntrustedTargetError):
        check_config(config, where="model")
    monkeypatch.delitem(sys.modules, "my_modality")


def test_legacy_task_names_still_build() -> None:
    assert canonical_target("tasks.vision.ViT") == "mmattn.tasks.vision.ViT"
    assert isinstance(safe_instantiate({**VIT, "_target_": "tasks.vision.ViT"}, where="model"), ViT)
    assert torch.is_tensor(safe_instantiate(VIT, where="model")(torch.zeros(1, 3, 8, 8)))
