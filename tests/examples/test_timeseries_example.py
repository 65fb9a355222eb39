"""A modality from outside the repository's packages: examples/timeseries trains through mmattn-train with configs of
its own (Hydra's search path extended on the command line), and nothing in mmattn/ (the built-in adapters under
mmattn/tasks/ included) or configs/ knows it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mmattn_testing import is_picture

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "timeseries"


@pytest.mark.slow
def test_the_timeseries_example_trains_from_outside(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Path-added, as docs/new_modality.md shows (pip install -e examples/timeseries works the same way).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")]))
    args = ["hydra.searchpath=[pkg://mmattn_timeseries.configs]", "experiment=timeseries_demo", "paths.data_dir=data"]
    result = run_cli("mmattn-train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (run,) = (tmp_path / "outputs" / "timeseries_demo" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val/acc"] >= 0.90 and metrics["test/acc"] >= 0.85, metrics
    assert sorted(p.name for p in (tmp_path / "data" / "activities").glob("*.npz")) == [
        "test.npz",
        "train.npz",
        "val.npz",
    ]
    # The guide's other commands: no search path needed, the checkpoint carries its config. Its classes are built only
    # once the user says the package is trusted.
    ckpt = run / "checkpoints" / "last.ckpt"
    from mmattn.build import UntrustedTargetError
    from mmattn.checkpoint import load

    with pytest.raises(UntrustedTargetError, match=r"pass trust=\[mmattn_timeseries\]"):
        load(ckpt)
    # Evaluated and drawn in this process (the package on its path, as installed): the training above was the run
    # from outside.
    from mmattn_testing import compose_config
    from omegaconf import open_dict

    from mmattn.cli.eval import evaluate
    from mmattn.cli.viz import visualize

    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(tmp_path)
    cfg = compose_config("eval", [f"ckpt_path={ckpt}", "trust=[mmattn_timeseries]", "paths.data_dir=data"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "eval")
    evaluated = evaluate(cfg)
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"], abs=0.02)
    viz = ["what=attention", f"ckpt_path={ckpt}", "num_samples=1", "out_dir=pics", "trust=[mmattn_timeseries]"]
    visualize(compose_config("viz", viz))
    assert all(is_picture(tmp_path / "pics" / n) for n in ("attention_0.png", "heads_0.png"))


def test_nothing_in_the_framework_mentions_the_example() -> None:
    needles = ("timeseries", "mmattn_timeseries", "ActivityDataModule", "SensorPatchEmbed")
    for top in ("mmattn", "configs"):
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".yaml", ".txt", ".md", ".toml"):
                text = path.read_text(errors="replace")
                assert not any(n in text for n in needles), f"{path} mentions the example"


def test_the_window_shape_is_the_models_not_the_datas(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from hydra.utils import instantiate
    from mmattn_testing import compose_config

    monkeypatch.syspath_prepend(str(EXAMPLE))
    cfg = compose_config("train", ["hydra.searchpath=[pkg://mmattn_timeseries.configs]", "experiment=timeseries_demo"])
    # The datamodule never used in_chans / seq_len: only the model config holds them now.
    assert "in_chans" not in cfg.data and "seq_len" not in cfg.data
    assert (cfg.model.embed.in_chans, cfg.model.embed.seq_len) == (3, 128)
    net = instantiate(cfg.model)
    assert net(torch.randn(2, 3, 128)).shape == (2, cfg.data.num_classes)
    with pytest.raises(ValueError, match=r"expects windows \[batch, 3, 128\], got \(2, 3, 64\)"):
        net(torch.randn(2, 3, 64))


# ---------------------------------------------------------------------------------- the other families, in-process
# Tiny runs of the contrastive and fusion presets, composed exactly as mmattn-train composes them (the search path
# on the command line), trained once per module; evaluate / visualize are what mmattn-eval / mmattn-viz run.
SEARCH = "hydra.searchpath=[pkg://mmattn_timeseries.configs]"
TINY_WINDOWS = "data.per_class={train:16,val:4,test:4}"  # one size for every test: the data is written once
TINY_SCHEDULE = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "module.scheduler.warmup_epochs=0",
    "module.scheduler.warmup_steps=1",
]
TINY = {
    "timeseries_clip": [
        TINY_WINDOWS,
        "data.batch_size=8",
        "model.embed_dim=16",
        *(f"model.towers.{t}.{k}" for t in ("sensor", "text") for k in ("dim=32", "depth=1", "num_heads=2")),
        *TINY_SCHEDULE,
    ],
    "timeseries_fusion": [
        TINY_WINDOWS,
        "data.batch_size=4",
        "model.dim=32",
        "model.depth=1",
        "model.num_heads=2",
        *TINY_SCHEDULE,
    ],
}


@pytest.fixture(scope="module")
def example_data(tmp_path_factory: pytest.TempPathFactory):
    """The example package importable (path-added, as the guide shows) and one data directory for this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(EXAMPLE))
        yield tmp_path_factory.mktemp("timeseries_data")


@pytest.fixture(scope="module")
def example_run(example_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """`example_run(experiment)`: the run directory of a tiny mmattn-train run of that preset, trained once."""
    from mmattn_testing import compose_config
    from omegaconf import open_dict

    from mmattn.cli.train import train

    runs: dict[str, Path] = {}

    def get(experiment: str) -> Path:
        if experiment not in runs:
            root = tmp_path_factory.mktemp(experiment)
            cfg = compose_config("train", [SEARCH, f"experiment={experiment}", *TINY[experiment]])
            with open_dict(cfg):
                cfg.paths.data_dir = str(example_data)
                cfg.paths.output_dir, cfg.paths.log_dir = str(root / "run"), str(root / "logs")
            train(cfg)
            runs[experiment] = root / "run"
        return runs[experiment]

    return get


def _eval_and_viz(ckpt: Path, tmp_path: Path, num_samples: int) -> tuple[dict[str, float], list[Path]]:
    """mmattn-eval and mmattn-viz what=attention on `ckpt`, the example package trusted."""
    from mmattn_testing import compose_config
    from omegaconf import open_dict

    from mmattn.cli.eval import evaluate
    from mmattn.cli.viz import visualize

    trust = "trust=[mmattn_timeseries]"
    cfg = compose_config("eval", [f"ckpt_path={ckpt}", trust])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "eval"), str(tmp_path / "logs")
    metrics = evaluate(cfg)
    viz = ["what=attention", f"ckpt_path={ckpt}", f"num_samples={num_samples}", f"out_dir={tmp_path / 'pics'}", trust]
    return metrics, visualize(compose_config("viz", viz))


def test_the_sensor_text_dual_encoder_trains_evaluates_retrieves_and_draws(example_run, tmp_path: Path) -> None:
    import torch

    import mmattn
    from mmattn.build import UntrustedTargetError

    run = example_run("timeseries_clip")
    metrics = json.loads((run / "metrics.json").read_text())
    recalls = {f"test/{q}_to_{c}_r{k}" for q, c in (("sensor", "text"), ("text", "sensor")) for k in (1, 5, 10)}
    assert recalls | {"test/mean_r1", "test/zero_shot_acc", "val/zero_shot_acc"} <= set(metrics)
    assert (run / "tokenizer" / "tokenizer.json").is_file()
    ckpt = run / "checkpoints" / "last.ckpt"
    evaluated, pics = _eval_and_viz(ckpt, tmp_path, num_samples=4)
    assert evaluated["test/mean_r1"] == pytest.approx(metrics["test/mean_r1"])
    assert [p.name for p in pics] == ["similarity.png", "pairs.png"] and all(is_picture(p) for p in pics)

    with pytest.raises(UntrustedTargetError, match=r"pass trust=\[mmattn_timeseries\]"):
        mmattn.load(ckpt)
    model = mmattn.load(ckpt, trust=["mmattn_timeseries"])
    # Text queries are encoded with the checkpoint's tokenizer by the recorded datamodule, never set up (no data
    # read); a character it never saw becomes <unk> and is counted, not refused.
    windows = torch.randn(5, 3, 128)
    hits = mmattn.retrieve(
        model, ["someone running", "someone skiing ⛷"], windows, query_tower="text", candidate_tower="sensor"
    )
    assert [len(row) for row in hits] == [5, 5] and hits[0][0]["score"] >= hits[0][1]["score"]
    assert model.recorded_datamodule().unknown_texts == 1


def test_the_sensor_text_fusion_trains_evaluates_and_draws_both_inputs(example_run, tmp_path: Path) -> None:
    run = example_run("timeseries_fusion")
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/acc", "test/acc", "test/loss"} <= set(metrics)
    evaluated, pics = _eval_and_viz(run / "checkpoints" / "last.ckpt", tmp_path, num_samples=2)
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"])
    assert [p.name for p in pics] == ["fusion_0.png", "fusion_1.png"] and all(is_picture(p) for p in pics)


def test_the_contrastive_batches(example_data: Path) -> None:
    import torch
    from mmattn_timeseries import ACTIVITIES, ACTIVITY_TEXTS, ActivityTextDataModule

    assert tuple(ACTIVITY_TEXTS) == ACTIVITIES  # one set of descriptions per activity, in label order
    dm = ActivityTextDataModule(example_data, per_class={"train": 16, "val": 4, "test": 4}, batch_size=10)
    dm.prepare_data()
    dm.setup("fit")
    train = list(dm.train_dataloader())
    assert [len(b["match"]) for b in train] == [10] * 9  # 96 windows: full batches only, the short one dropped
    batch = next(iter(dm.val_dataloader()))
    assert sorted(batch) == ["label", "match", "sensor", "text"]
    assert batch["sensor"].shape == (10, 3, 128) and batch["text"].dtype == batch["match"].dtype == torch.long
    assert batch["match"].tolist() == batch["label"].tolist() and len(set(batch["label"].tolist())) > 1
    # Each text is EOS-terminated and describes the window's activity; evaluation fixes the description.
    for ids, activity in zip(batch["text"], batch["label"]):
        text = dm.tokenizer.decode(ids)
        assert ids[ids != dm.pad_id][-1] == dm.tokenizer.eos_id and text in ACTIVITY_TEXTS[ACTIVITIES[activity]]
    assert next(iter(dm.val_dataloader()))["text"].tolist() == batch["text"].tolist()
    assert dm.prompts[0] == "someone cycling" and [len(p) for p in dm.prompt_sets] == [4] * 6


def test_the_claim_batches_hold_each_window_with_a_true_and_a_false_claim(example_data: Path) -> None:
    from mmattn_timeseries import ACTIVITIES, ACTIVITY_TEXTS, ActivityClaimsDataModule

    sizes = {"train": 16, "val": 4, "test": 4}
    dm = ActivityClaimsDataModule(example_data, per_class=sizes, batch_size=3)
    dm.setup("fit")
    assert dm.classes == ["false", "true"]
    inputs, truth = next(iter(dm.test_dataloader()))
    assert sorted(inputs) == ["sensor", "text"] and inputs["sensor"].shape == (6, 3, 128)
    assert truth.tolist() == [1, 0] * 3 and inputs["text"].shape[0] == 6
    assert all(bool((inputs["sensor"][i] == inputs["sensor"][i + 1]).all()) for i in (0, 2, 4))
    windows = dm.test_set.dataset  # in a fixed shuffled order: the first batch holds several activities
    activities = [ACTIVITIES[windows.labels[w]] for w in dm.test_set.indices[:3]]
    assert len(set(activities)) > 1
    for i in range(6):
        assert (dm.tokenizer.decode(inputs["text"][i]) in ACTIVITY_TEXTS[activities[i // 2]]) == bool(truth[i])
    # The single-input baselines leave the other input out; any model of one input alone scores 0.5 at best.
    text_only = ActivityClaimsDataModule(example_data, per_class=sizes, only="text")
    text_only.setup("fit")
    assert sorted(next(iter(text_only.val_dataloader()))[0]) == ["text"]
    with pytest.raises(ValueError, match=r"only must be null, 'sensor' or 'text', got 'image'"):
        ActivityClaimsDataModule(example_data, only="image")


def test_texts_outside_the_tokenizer_are_counted_not_refused(example_data: Path) -> None:
    from mmattn_timeseries import ActivityTextDataModule

    dm = ActivityTextDataModule(example_data, per_class={"train": 16, "val": 4, "test": 4})
    with pytest.raises(RuntimeError, match=r"setup\(\) must run before texts are encoded"):
        dm.encode_texts(["someone running"])
    dm.setup("fit")
    ids = dm.encode_texts(["someone running", "someone skiing ⛷", "Someone   RUNNING"])
    assert ids.shape[0] == 3 and dm.unknown_texts == 1
    assert dm.tokenizer.unk_id in ids[1].tolist() and ids[0].tolist() == ids[2].tolist()  # lowercased, spaces folded
    with pytest.raises(ValueError, match=r"encode_texts takes a non-empty list of strings"):
        dm.encode_texts("someone running")
