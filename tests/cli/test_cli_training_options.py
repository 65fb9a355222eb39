"""Training conveniences as config options: EMA of the weights, a W&B run that continues after a requeue, an MLflow
database file in the run, and an Optuna hyperparameter search whose trials return the optimised metric."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from mmattn_testing import TINY_TRAIN
from omegaconf import DictConfig

import mmattn
from mmattn.cli.train import train


def test_ema_weights_are_validated_and_saved(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    cfg = make_cfg("callbacks=[default,ema]", "callbacks.ema.decay=0.5", "++trainer.limit_train_batches=4")
    metrics = train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(ckpt, weights_only=True)
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert set(averaged) == set(raw) and any(not torch.equal(averaged[k], raw[k]) for k in raw)
    # The checkpoint's weights, which mmattn.load and mmattn-eval use, are the averaged ones ...
    model = mmattn.load(ckpt)
    assert all(torch.equal(v, averaged[k]) for k, v in model.state_dict().items())
    # ... and validation ran on them: recomputing val/loss with the averaged weights gives the logged value.
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    datamodule.setup("validate")
    losses, sizes = [], []
    with torch.no_grad():
        for x, y in datamodule.val_dataloader():
            losses.append(torch.nn.functional.cross_entropy(model(x), y) * len(y))
            sizes.append(len(y))
            break  # limit_val_batches=1
    assert float(sum(losses) / sum(sizes)) == pytest.approx(metrics["val/loss"], abs=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed (mmattn[wandb])")
def test_a_resumed_run_continues_its_wandb_run(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    import wandb

    train(make_cfg("logger=wandb"))
    wandb.finish()  # what the end of the job's process does
    # What a requeued SLURM job does: the same command in the same run directory, with SLURM_RESTART_COUNT > 0.
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    train(make_cfg("logger=wandb", "trainer.max_epochs=2"))
    wandb.finish()
    runs = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    ids = {path.name.rsplit("-", 1)[1] for path in runs}
    assert len(runs) == 2 and len(ids) == 1, runs  # two sessions of one W&B run
    from mmattn.cli.cluster import run_id

    assert ids == {run_id(str(tmp_path / "run"))}


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed (mmattn[mlflow])")
def test_mlflow_logs_into_a_database_file_in_the_run(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    metrics = train(make_cfg("logger=mlflow"))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "train"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["val/acc"] == pytest.approx(metrics["val/acc"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [0, 1]
    assert run.data.params["model/params/total"] == str(metrics["profile/params"].__int__())


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="optuna is not installed (mmattn[hparams])")
def test_an_optuna_search_runs_trials_and_reports_the_best(run_cli, tmp_path: Path) -> None:
    sweep = ["hparams_search=vision_optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2"]
    result = run_cli("mmattn-train", *sweep, *TINY_TRAIN, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    values = [json.loads((tmp_path / "sweep" / str(n) / "metrics.json").read_text())["val/acc_best"] for n in (0, 1)]
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(values))
    assert set(best["best_params"]) == {"module.optimizer.lr", "module.weight_decay", "module.label_smoothing"}


def test_an_optimized_metric_the_run_does_not_have_is_named(make_cfg: Callable[..., DictConfig]) -> None:
    from mmattn.cli.train import _main

    with pytest.raises(ValueError, match=r"optimized_metric=val/nope is not among the final metrics \["):
        _main.__wrapped__.__wrapped__(
            make_cfg("optimized_metric=val/nope")
        )  # the task function under Hydra's decorator
