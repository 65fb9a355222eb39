"""The multi-task module and network: task entries that stop with one line, one shared encoder, idle tasks' gradients,
the selection score, a single task exported and fine-tuned from."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from mmattn.data.multitask import Source, check_task_entries, task_sources
from mmattn.lit import ClassificationModule, MultiTaskModule, Seq2SeqModule
from mmattn.lit.multitask import normalized
from mmattn.models import EncoderDecoder, MultiTaskNet

TINY = {"dim": 32, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0}
VIT = {"_target_": "mmattn.tasks.vision.ViT", "img_size": 16, "patch_size": 8, "num_classes": 3, **TINY}
AST = {
    "_target_": "mmattn.tasks.audio.AST",
    "num_mel_bins": 32,
    "target_length": 32,
    "patch_size": 16,
    "freq_stride": 16,
    "time_stride": 16,
    "num_classes": 4,
    **TINY,
}
DATA = {"_target_": "mmattn.tasks.vision.ShapesDataModule", "root": "unused"}


def _entries(**changes) -> dict:
    entries = {
        "shapes": {
            "data": DATA,
            "model": VIT,
            "module": {"_target_": "mmattn.lit.ClassificationModule", "num_classes": 3, "top_k": [1]},
            "modality": "image",
        },
        "tones": {
            "data": DATA,
            "model": AST,
            "module": {"_target_": "mmattn.lit.ClassificationModule", "num_classes": 4, "top_k": [1]},
            "modality": "spectrogram",
            "loss_weight": 0.5,
        },
    }
    for path, value in changes.items():
        task, _, key = path.partition("__")
        if value is None:
            entries[task].pop(key)
        else:
            entries[task][key] = value
    return entries


def _module(entries: dict) -> MultiTaskModule:
    net = MultiTaskNet({name: entry["model"] for name, entry in entries.items()})
    return MultiTaskModule(net, entries)


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        (_entries(tones__data=None), "task 'tones' has no data: set tasks.tones.data to its datamodule"),
        (_entries(tones__loss_weight=0), "tasks.tones.loss_weight=0 must be a number > 0"),
        (_entries(shapes__sampling_weight=-1.0), "tasks.shapes.sampling_weight=-1.0 must be a number > 0"),
        (
            [{"name": "shapes", **_entries()["shapes"]}, {"name": "shapes", **_entries()["tones"]}],
            "task name 'shapes' is used twice",
        ),
        (_entries(tones__lr=0.1), "tasks.tones has unknown key(s) ['lr']"),
        (_entries(shapes__model={"img_size": 16}), "tasks.shapes.model must be its network"),
        ({"val/x": _entries()["shapes"]}, "task name 'val/x' cannot name metrics"),
        (_entries(shapes__data={"a": DATA, "b": {"root": "x"}}), "tasks.shapes.data.b must be a datamodule config"),
        (_entries(shapes__data={"a": DATA}, shapes__sampling_weight={"c": 1.0}), "names ['c'], not datasets of"),
        (_entries(shapes__data={"a": DATA}, shapes__sampling_weight={"a": 0}), "tasks.shapes.sampling_weight.a=0 must"),
    ],
)
def test_a_bad_task_entry_stops_with_one_line_naming_it(tasks, message: str) -> None:
    with pytest.raises(ValueError) as error:
        check_task_entries(tasks)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_task_of_several_datasets_is_one_source_per_dataset_with_its_own_weight() -> None:
    other = {**DATA, "root": "other"}
    entries = check_task_entries(_entries(shapes__data={"a": DATA, "b": other}, shapes__sampling_weight={"b": 2.0}))
    assert task_sources(entries) == {
        "shapes/a": Source("shapes", DATA, None),
        "shapes/b": Source("shapes", other, 2.0),
        "tones": Source("tones", DATA, None),
    }
    modes = MultiTaskModule.metric_modes({"tasks": entries})
    assert {"val/shapes/a/acc", "val/shapes/b/acc", "val/tones/acc"} <= set(modes)
    module = _module(entries)
    assert list(module.source_modules) == ["shapes/a", "shapes/b", "tones"] and module.names == ["shapes", "tones"]
    # Both datasets train the one shapes network.
    assert module.source_modules["shapes/a"].net is module.source_modules["shapes/b"].net is module.net.tasks["shapes"]


def test_a_multitask_run_mixes_two_datasets_of_one_task_and_reports_each(env_data_dir: Path, tmp_path: Path) -> None:
    from mmattn_testing import TINY_MULTITASK, compose_config
    from omegaconf import open_dict

    from mmattn.cli.train import train

    two = [
        "~data@tasks.shapes.data",
        "+data@tasks.shapes.data.plain=shapes",
        "+data@tasks.shapes.data.flipped=shapes",
        *[f"tasks.shapes.data.{d}.{o.split('.', 3)[3]}" for d in ("plain", "flipped") for o in TINY_MULTITASK[1:5]],
        "tasks.shapes.data.flipped.hflip=1.0",
        "tasks.shapes.model.img_size=32",
        "tasks.shapes.model.num_classes=10",
        "tasks.shapes.module.num_classes=10",
        "data.schedule=round_robin",
        "data.steps_per_epoch=8",
    ]
    tiny = [o for o in TINY_MULTITASK if not o.startswith("tasks.shapes.data.")]
    cfg = compose_config("train", [*tiny, *two])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "run"), str(tmp_path / "logs")
    metrics = train(cfg)
    assert metrics["train/share/shapes/plain"] == metrics["train/share/shapes/flipped"] == pytest.approx(0.25)
    assert {"val/shapes/plain/acc", "val/shapes/flipped/acc", "test/shapes/flipped/acc", "val/score"} <= set(metrics)


def test_an_unknown_or_wrong_modality_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"task 'tones' has unknown modality 'audio'; .*spectrogram \(") as error:
        _module(_entries(tones__modality="audio"))
    assert "image (ImagePatchEmbed)" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ValueError, match="task 'tones' declares modality 'image', but its network's input is spectr"):
        _module(_entries(tones__modality="image"))


def test_every_task_network_holds_the_same_encoder_and_other_options_are_named() -> None:
    net = MultiTaskNet({"shapes": VIT, "tones": AST})
    assert net.tasks["shapes"].encoder is net.tasks["tones"].encoder is net.core
    shared = {id(p) for p in net.core.parameters()}
    own = list(net.task_parameters("tones"))
    assert own and not {id(p) for p in own} & shared
    assert net.modality("tones") == "spectrogram" and "AST" in net.describe("tones")
    with pytest.raises(ValueError, match=r"task 'tones': its encoder is built otherwise than task 'shapes''s \(`"):
        MultiTaskNet({"shapes": VIT, "tones": {**AST, "mlp_ratio": 4.0}})
    text_ids = EncoderDecoder(
        src_vocab_size=16, tgt_vocab_size=16, dim=32, encoder_depth=1, decoder_depth=1, num_heads=2
    )
    with pytest.raises(ValueError, match="task 'mt': its network .EncoderDecoder. feeds its encoder with no modality"):
        MultiTaskNet({"shapes": VIT, "mt": text_ids})


def test_attention_pictures_of_a_validation_batch_are_the_first_sources() -> None:
    import matplotlib.pyplot as plt

    module = _module(_entries()).eval()
    batch = (torch.rand(2, 3, 16, 16), torch.tensor([0, 2]))  # what the attention_maps callback keeps
    figures = module.attention_figures(batch, 1, classes=["a", "b", "c"])
    figures += module.attention_figures(("tones", (torch.rand(2, 32, 32), torch.tensor([1, 3]))), 1)  # named
    names = [name for name, _ in figures]
    assert any(n.startswith("shapes_attention") for n in names) and any(n.startswith("tones_") for n in names)
    for _, figure in figures:
        plt.close(figure)


def test_compile_compiles_the_task_networks_the_task_modules_call() -> None:
    entries = _entries()
    net = MultiTaskNet({name: entry["model"] for name, entry in entries.items()})
    module = MultiTaskModule(net, entries, compile=True)
    module.setup("validate")
    assert all(task._compiled_call_impl is not None for task in net.tasks.values())


def test_a_task_that_did_not_train_keeps_its_weights_and_optimizer_state() -> None:
    module = _module(_entries())
    net = module.net
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    module._active = {"shapes"}
    module.on_before_optimizer_step(torch.optim.AdamW(net.parameters()))
    assert all(p.grad is None for p in net.task_parameters("tones"))
    assert all(p.grad is not None for p in net.tasks["shapes"].parameters())  # its own and the shared encoder's
    assert module._active == set()
    # DDP needs a gradient of every parameter: the idle ones (tones' own) take part in shapes' loss with zero.
    idle = module._idle_parameters("shapes")
    assert {id(p) for p in idle} == {id(p) for p in net.task_parameters("tones")}


def test_task_modules_log_under_their_name_and_the_score_is_the_mean_of_their_normalised_monitors() -> None:
    module = _module(_entries(tones__monitor="loss"))
    assert module.monitors == {"shapes": ("val/acc", "max"), "tones": ("val/loss", "min")}
    modes = MultiTaskModule.metric_modes({"tasks": _entries()})
    assert modes["val/score"] == "max" and modes["val/tones/acc"] == "max" and modes["val/shapes/loss"] == "min"
    assert MultiTaskModule.default_monitor({}) == "val/score"
    assert normalized("bleu", 42.0, "max") == pytest.approx(0.42)
    assert normalized("wer", 0.25, "min") == pytest.approx(0.75)
    assert normalized("loss", 1.0, "min") == pytest.approx(math.exp(-1))
    with pytest.raises(ValueError, match="tasks.tones.monitor=bleu is never logged by its ClassificationModule"):
        _module(_entries(tones__monitor="bleu"))
    with pytest.raises(ValueError, match="tasks.tones.module.optimizer is set for one task"):
        _module(_entries(tones__module={**_entries()["tones"]["module"], "optimizer": {}}))


def test_one_task_of_a_trained_multitask_run_is_an_ordinary_checkpoint_and_a_fine_tuning_start(
    trained_run, tmp_path: Path
) -> None:
    import mmattn
    from mmattn.checkpoint import init_weights_from
    from mmattn.models.pretrained import LoadReport

    run = trained_run("multitask")
    module = mmattn.load(run / "checkpoints" / "last.ckpt")
    assert isinstance(module, MultiTaskModule) and module.names == ["shapes", "dtmf", "scan"]
    path = module.save_task("scan", tmp_path / "scan.ckpt")
    scan = mmattn.load(path)
    assert isinstance(scan, Seq2SeqModule) and scan.tokenizer is not None
    from mmattn.lit.seq2seq import pad_ids

    texts = ["jump twice", "walk left after run"]
    ids = pad_ids([torch.tensor(row) for row in scan.tokenizer.encode_src_batch(texts)], scan.tokenizer.pad_id)
    tgt = torch.ones(2, 3, dtype=torch.long)
    torch.testing.assert_close(scan.net(ids, tgt), module.net.tasks["scan"](ids, tgt), rtol=0, atol=0)
    assert mmattn.translate(path, ["jump twice"]) and isinstance(mmattn.translate(path, ["jump twice"])[0], str)
    shapes = mmattn.load(module.save_task("shapes", tmp_path / "shapes.ckpt"))
    assert isinstance(shapes, ClassificationModule) and shapes.classes == module.source_modules["shapes"].classes
    # What mmattn-viz draws of a file: read through the task's recorded data config, drawn by the image renderer.
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "red.png")
    assert [name for name, _ in shapes.file_attention_figures([str(tmp_path / "red.png")])][:1] == ["attention_0"]
    with pytest.raises(ValueError, match="a multi-task model draws attention through one task: write one with"):
        module.file_attention_figures([str(tmp_path / "red.png")])

    # mmattn-eval task=<name>: that task's test loaders only (its part of the stored multi-task data config).
    from mmattn_testing import compose_config
    from omegaconf import open_dict

    from mmattn.cli.eval import evaluate

    cfg = compose_config("eval", [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "task=shapes"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "eval")
    assert set(evaluate(cfg)) == {"test/shapes/acc", "test/shapes/loss", "test/score"}
    cfg = compose_config("eval", [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "decoding.beam_size=2"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "eval2")
    with pytest.raises(ValueError, match="decoding.beam_size is an option of sequence-to-sequence models; .* holds a"):
        evaluate(cfg)

    # Fine-tuning a single-task model from it: the shared encoder and the matching adapter load; a head for other
    # classes is named as skipped, and left as initialised.
    from mmattn.tasks.vision import ViT

    target = ViT(img_size=32, patch_size=8, num_classes=7, dim=32, depth=1, num_heads=2, mlp_ratio=2.0)
    report = init_weights_from(target, run / "checkpoints" / "last.ckpt")
    assert isinstance(report, LoadReport) and report.source.endswith("(task shapes)")
    assert "encoder.layers.0.attn.qkv.weight" in report.loaded and "embed.proj.weight" in report.loaded
    assert ("head.weight", (10, 32), (7, 32)) in report.skipped and "head.weight" in report.new
    encoder = module.net.tasks["shapes"].encoder
    torch.testing.assert_close(target.encoder.state_dict(), encoder.state_dict())
    with pytest.raises(ValueError, match="init_from_task=nope: .* holds the tasks dtmf, scan, shapes"):
        init_weights_from(target, run / "checkpoints" / "last.ckpt", task="nope")
