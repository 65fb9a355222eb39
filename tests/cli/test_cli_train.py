"""mmattn-train and mmattn-eval end to end: real console-script subprocesses plus in-process `train(cfg)` runs."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from mmattn_testing import compose_config, is_picture

from mmattn.cli.train import train


def _only_run_dir(root: Path) -> Path:
    runs = sorted(root.iterdir())
    assert len(runs) == 1, f"expected one run directory under {root}, found {runs}"
    return runs[0]


def test_train_then_eval_from_another_directory(run_cli, tiny_train, tmp_path: Path) -> None:
    # A relative paths.log_dir resolves against the launch directory (cwd), not against the package.
    result = run_cli("mmattn-train", *tiny_train, "logger=many", "paths.log_dir=runs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    run = _only_run_dir(tmp_path / "runs" / "train" / "runs")
    assert (run / ".hydra" / "config.yaml").is_file() and (run / ".hydra" / "overrides.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "csv" / "version_0" / "metrics.csv").is_file()
    assert list((run / "tensorboard" / "version_0").glob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"train/loss", "val/loss", "val/acc", "val/acc_top5", "test/loss", "test/acc", "test/acc_top5"} <= set(
        metrics
    )
    assert all(isinstance(v, float) for v in metrics.values())
    assert f"run directory: {run}" in result.stdout
    assert not list(run.glob(".metrics.json*"))  # no temporary file left by the atomic write

    # Attention pictures of validation images: rollout and class-token overlays, per-head grids.
    ckpt_abs = run / "checkpoints" / "last.ckpt"
    viz = ["what=attention", f"ckpt_path={ckpt_abs}", "num_samples=2", "out_dir=pics"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ckpt = os.path.relpath(run / "checkpoints" / "last.ckpt", elsewhere)
    # mmattn-viz and mmattn-eval (below) read the checkpoint independently: they run side by side.
    # `+data.<key>` edits the data config stored in the checkpoint (the model is rebuilt from it too).
    evaluation = ["mmattn-eval", f"ckpt_path={ckpt}", "+data.batch_size=4", "+trainer.limit_test_batches=2"]
    with ThreadPoolExecutor(2) as pool:
        pics_job = pool.submit(run_cli, "mmattn-viz", *viz, cwd=tmp_path)
        eval_job = pool.submit(run_cli, *evaluation, cwd=elsewhere)
        pics, result = pics_job.result(), eval_job.result()
    assert pics.returncode == 0, pics.stderr[-3000:]
    names = [Path(line).name for line in pics.stdout.splitlines()]
    assert names == ["attention_0.png", "heads_0.png", "attention_1.png", "heads_1.png"]
    assert all(is_picture(tmp_path / "pics" / n) for n in names)
    # A file of the user's, of another size than the model's: resized, with a warning naming it.
    from PIL import Image

    Image.new("RGB", (70, 50), (200, 30, 30)).save(tmp_path / "red.png")
    from mmattn.cli.viz import visualize

    mine = [*viz[:2], f"inputs=[{tmp_path / 'red.png'}]", f"out_dir={tmp_path / 'mine'}"]
    with pytest.warns(UserWarning, match="red.png is 70 x 50 px; resized for the model's 32 px"):
        visualize(compose_config("viz", mine))  # in this process: the CLI run above covered the command itself
    assert (tmp_path / "mine" / "attention_0.png").is_file()

    assert result.returncode == 0, result.stderr[-4000:]
    eval_run = _only_run_dir(elsewhere / "outputs" / "eval" / "runs")
    eval_metrics = json.loads((eval_run / "metrics.json").read_text())
    assert set(eval_metrics) == {"test/loss", "test/acc", "test/acc_top5"}
    assert (eval_run / ".hydra").is_dir() and f"run directory: {eval_run}" in result.stdout
    logged = (eval_run / "csv" / "version_0" / "hparams.yaml").read_text()
    assert "batch_size: 4" in logged


def test_unknown_experiment_gives_hydras_error_with_the_options(run_cli, tmp_path: Path) -> None:
    result = run_cli("mmattn-train", "experiment=nope", cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert "Could not find 'experiment/nope'" in result.stderr
    assert "Available options" in result.stderr and "vision_demo" in result.stderr and "vit_cifar10" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_in_process_train_writes_metrics_and_resume_continues_the_step(make_cfg, tmp_path: Path) -> None:
    metrics = train(make_cfg())
    run = tmp_path / "run"
    assert json.loads((run / "metrics.json").read_text()) == pytest.approx(metrics)
    last = run / "checkpoints" / "last.ckpt"
    first = torch.load(last, weights_only=True)
    assert (first["global_step"], first["epoch"]) == (2, 0)
    assert first["mmattn_config"]["model"]["dim"] == 32  # what mmattn-eval rebuilds the model from

    # ckpt_path=last resumes this run directory's last.ckpt: optimizer, schedule and counters continue.
    train(make_cfg("ckpt_path=last", "trainer.max_epochs=2", "test=false"))
    second = torch.load(last, weights_only=True)
    assert second["global_step"] == 4
    assert second["lr_schedulers"][0]["last_epoch"] == 4


def test_ckpt_path_errors_name_the_fix(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ckpt_path=last but .*last.ckpt does not exist; pass hydra.run.dir"):
        train(make_cfg("ckpt_path=last", output_dir=tmp_path / "fresh"))
    with pytest.raises(ValueError, match="ckpt_path=missing.ckpt does not exist"):
        train(make_cfg("ckpt_path=missing.ckpt"))


def test_class_count_mismatch_from_config_names_the_keys(make_cfg) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        train(make_cfg("module.num_classes=12", "model.num_classes=12"))
