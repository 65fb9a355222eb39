"""The Python API: mmattn.load on checkpoints and saved folders, inference on the loaded module for each family,
load_from_checkpoint without arguments, save_pretrained / from_pretrained round trips, and the errors on the way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import mmattn
from mmattn.lit import ClassificationModule, LanguageModelModule, Seq2SeqModule


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def saved(trained_run, tmp_path_factory: pytest.TempPathFactory):
    """`saved(family)`: a folder written by save_pretrained from that family's tiny run (shared; do not change)."""
    folders: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in folders:
            folders[family] = tmp_path_factory.mktemp(f"saved_{family}")
            mmattn.load(trained_run(family) / "checkpoints" / "last.ckpt").save_pretrained(folders[family])
        return folders[family]

    return get


def test_a_classifier_from_a_checkpoint_classifies_files_and_tensors(trained_run, data_dir: Path) -> None:
    ckpt = trained_run("vision") / "checkpoints" / "last.ckpt"
    model = mmattn.load(ckpt)
    assert isinstance(model, ClassificationModule) and not model.training
    files = sorted((data_dir / "shapes" / "val").rglob("*.png"))[:3]
    out = mmattn.classify(model, files, top_k=3)
    assert len(out) == 3 and all(len(row["labels"]) == 3 for row in out)
    assert all(row["probs"] == sorted(row["probs"], reverse=True) and sum(row["probs"]) <= 1 + 1e-6 for row in out)
    assert all(label in model.classes for row in out for label in row["labels"])
    assert model.classes == sorted(p.name for p in (data_dir / "shapes" / "val").iterdir())
    # The same through a batch the network takes, read by the recorded data config.
    assert mmattn.classify(model, model.read_files(files), top_k=3) == out
    again = ClassificationModule.load_from_checkpoint(ckpt)  # no net=..., no other argument
    assert _same_weights(again, model) and again.classes == model.classes


def test_save_pretrained_round_trips_every_family(trained_run, saved, data_dir: Path) -> None:
    for family in ("vision", "audio", "lm", "translation", "speech"):
        model = mmattn.load(trained_run(family) / "checkpoints" / "last.ckpt")
        folder = saved(family)
        names = {p.name for p in folder.iterdir()}
        assert {"config.json", "model.safetensors", "README.md"} <= names, names
        config = json.loads((folder / "config.json").read_text())
        assert config["module"] == f"{type(model).__module__}.{type(model).__qualname__}"
        assert config["hparams"]["net"]["_target_"] and config["hparams"]["data"]["_target_"]
        loaded = mmattn.load(folder)
        assert type(loaded) is type(model) and _same_weights(loaded, model), family
        assert type(model).from_pretrained(folder).hparams == loaded.hparams
        if family in ("lm", "translation", "speech"):
            assert "tokenizer.json" in names and loaded.tokenizer.to_dict() == model.tokenizer.to_dict()
    lm, lm_saved = mmattn.load(trained_run("lm") / "checkpoints" / "last.ckpt"), mmattn.load(saved("lm"))
    first, second = (mmattn.generate(m, ["jump"], num_samples=2, seed=3) for m in (lm, lm_saved))
    assert first == second
    mt, mt_saved = (
        mmattn.load(trained_run("translation") / "checkpoints" / "last.ckpt"),
        mmattn.load(saved("translation")),
    )
    assert mmattn.translate(mt_saved, ["jump twice", "walk left"]) == mmattn.translate(mt, ["jump twice", "walk left"])
    clips = sorted((data_dir / "spoken_digits" / "test").glob("*.flac"))[:2]
    asr, asr_saved = mmattn.load(trained_run("speech") / "checkpoints" / "last.ckpt"), mmattn.load(saved("speech"))
    assert mmattn.transcribe(asr_saved, clips) == mmattn.transcribe(asr, clips)
    audio_clips = sorted((data_dir / "dtmf").rglob("*.wav"))[:2]
    assert mmattn.classify(saved("audio"), audio_clips) == mmattn.classify(
        mmattn.load(trained_run("audio") / "checkpoints" / "last.ckpt"), audio_clips
    )


def test_the_commands_take_a_saved_folder(saved, tmp_path: Path, compose_cfg) -> None:
    from omegaconf import open_dict

    from mmattn.cli.eval import evaluate
    from mmattn.cli.generate import generate

    cfg = compose_cfg("eval", [f"ckpt_path={saved('vision')}", "+trainer.limit_test_batches=1"])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "eval"), str(tmp_path / "logs")
    assert {"test/acc", "test/loss"} <= set(evaluate(cfg))
    samples = generate(compose_cfg("generate", [f"ckpt_path={saved('lm')}", "num_samples=2", "max_new_tokens=4"]))
    assert len(samples) == 2


def test_wrong_kinds_and_broken_folders_say_what_is_wrong(trained_run, saved, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"holds a ClassificationModule, not a Seq2SeqModule"):
        Seq2SeqModule.from_pretrained(saved("vision"))
    with pytest.raises(ValueError, match=r"holds a Seq2SeqModule, not a LanguageModelModule"):
        LanguageModelModule.load_from_checkpoint(trained_run("translation") / "checkpoints" / "last.ckpt")
    with pytest.raises(ValueError, match=r"source is speech \(SpeechFrontEnd\), not text.*transcribe"):
        mmattn.translate(saved("speech"), ["one two"])
    with pytest.raises(ValueError, match=r"holds no config.json, so it is no saved mmattn model"):
        mmattn.load(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint file, no saved model folder and no Hub repo id"):
        mmattn.load(tmp_path / "nope.ckpt")
    # Weights that do not fit the architecture in config.json: the mismatched tensors are named.
    broken = tmp_path / "broken"
    shutil.copytree(saved("vision"), broken)
    config = json.loads((broken / "config.json").read_text())
    config["hparams"]["net"]["dim"] = 48
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match=r"model.safetensors does not fit the model of .*config.json: .*net\.cls_token"
    ):
        mmattn.load(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json is not an mmattn model config"):
        mmattn.load(broken)
    # A module built from a network object records no architecture, so a saved folder could not rebuild it.
    from mmattn.tasks.vision import ViT

    bare = ClassificationModule(ViT(img_size=8, patch_size=4, num_classes=2, dim=8, depth=1, num_heads=2), 2)
    with pytest.raises(ValueError, match=r"does not record its network's config"):
        bare.save_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match=r"records no data config, so it cannot read files"):
        mmattn.classify(bare, [tmp_path / "x.png"])


def test_a_module_built_from_a_net_config_saves_and_loads(tmp_path: Path) -> None:
    net = {"_target_": "mmattn.tasks.vision.ViT", "img_size": 8, "patch_size": 4, "num_classes": 3, "dim": 8}
    module = ClassificationModule({**net, "depth": 1, "num_heads": 2}, 3, classes=["a", "b", "c"])
    module.save_pretrained(tmp_path / "m")
    loaded = ClassificationModule.from_pretrained(tmp_path / "m")
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(loaded(x), module.eval()(x)) and mmattn.classify(loaded, x, top_k=1)[0]["labels"][0] in "abc"
