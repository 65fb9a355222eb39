"""Scale out on one machine, for real: kill -9 and resume, DDP jobs of a multirun, 2 nodes on loopback, mixed options.

Each test starts real processes (mmattn-train, Lightning DDP over gloo, submitit's local executor).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from mmattn_testing import TINY_DATA, TINY_TRAIN, cli_path, compose_config, metric_steps, metric_values
from omegaconf import open_dict

from mmattn.cli.errors import user_message
from mmattn.cli.train import train

# A run long enough to be killed mid-epoch: 8 epochs of 5 batches; LastCheckpoint every 3 steps. Every kind of random
# draw is on: item augmentation (flips, random erasing), Mixup in the step, dropout and drop-path in the model.
LONG = [
    *TINY_DATA,
    "data.re_prob=0.25",
    "module/mixup=mixup",
    "model.drop_rate=0.1",
    "model.drop_path_rate=0.1",
    "model.dim=32",
    "model.depth=1",
    "model.num_heads=2",
    "module.scheduler.warmup_epochs=0",
    "module.scheduler.warmup_steps=2",
    "trainer.max_epochs=8",
    "trainer.log_every_n_steps=1",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "callbacks.last_checkpoint.train_time_interval=null",
    "callbacks.last_checkpoint.every_n_train_steps=3",
]
PACE = "+callbacks.pace._target_=mmattn_probes.Pace"


def _popen(args: list[str], cwd: Path, env: dict[str, str], log: Path, extra_env: dict[str, str] | None = None):
    with open(log, "w") as out:
        return subprocess.Popen(
            [cli_path("mmattn-train"), *args], cwd=cwd, env={**env, **(extra_env or {})}, stdout=out, stderr=out
        )


def _run(args: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float = 300) -> str:
    proc = _popen(args, cwd, env, log)
    proc.wait(timeout=timeout)
    text = log.read_text()
    assert proc.returncode == 0, text[-4000:]
    return text


def _wait_for_step(csv_path: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Block until the run's metrics.csv holds a train/loss row at `step` or later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        if csv_path.is_file():
            if max(metric_steps(csv_path).get("train/loss", [-1])) >= step:
                return
        time.sleep(0.05)
    raise AssertionError(f"no train/loss row at step {step} within {timeout} s")


def _lr_column(csv_path: Path) -> dict[int, str]:
    import csv

    with open(csv_path, newline="") as f:
        return {int(r["step"]): r["lr-AdamW/pg1"] for r in csv.DictReader(f) if r.get("lr-AdamW/pg1")}


@pytest.mark.slow
def test_kill_9_mid_epoch_then_ckpt_path_last_continues_the_same_run_to_the_bit(
    probe_env, csv_steps, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    _run([*LONG, f"hydra.run.dir={reference}"], tmp_path, probe_env, tmp_path / "reference.log")

    run = tmp_path / "killed"
    csv_path = run / "csv" / "version_0" / "metrics.csv"
    proc = _popen([*LONG, PACE, f"hydra.run.dir={run}"], tmp_path, probe_env, tmp_path / "killed.log")
    _wait_for_step(csv_path, 13, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert 12 <= saved["global_step"] < 40 and saved["global_step"] % 5 != 0  # a step checkpoint mid-epoch
    assert not (run / "metrics.json").exists()

    # Resuming that mid-epoch state with another batch size cannot continue its order: one line says so (what
    # mmattn-train prints after "mmattn-train: error: "; checked in this process, the run's own is the one killed).
    other = tmp_path / "other_batch_size"
    shutil.copytree(run, other)
    cfg = compose_config("train", [*LONG, "data.batch_size=4", "ckpt_path=last"])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(other), str(tmp_path / "logs")
    with pytest.raises(Exception) as error:
        train(cfg)
    step = saved["global_step"]
    assert user_message(error.value).startswith(
        f"cannot continue the training order of epoch {step // 5} after batch {step % 5}: "
        "batch_size 8 in the checkpoint, 4 now"
    )

    log = _run([*LONG, f"hydra.run.dir={run}", "ckpt_path=last"], tmp_path, probe_env, tmp_path / "resumed.log")
    assert f"Restored all states from the checkpoint at {run / 'checkpoints' / 'last.ckpt'}" in log
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert final["global_step"] == 40
    expected = csv_steps(reference / "csv" / "version_0" / "metrics.csv")
    assert expected["train/loss"] == list(range(40))
    # Every metric has rows at exactly the steps of the uninterrupted run: no gap, no repeat.
    assert csv_steps(csv_path) == expected
    # And it is the same run: the same samples, augmentation and dropout give the same loss at every step, to the bit.
    reference_loss = metric_values(reference / "csv" / "version_0" / "metrics.csv", "train/loss")
    assert metric_values(csv_path, "train/loss") == reference_loss
    # The learning-rate schedule continued where it stopped (values are a function of the step only).
    assert _lr_column(csv_path) == _lr_column(reference / "csv" / "version_0" / "metrics.csv")
    assert [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    assert json.loads((run / "metrics.json").read_text())["test/acc"] >= 0.0


@pytest.mark.slow
def test_multirun_of_ddp_jobs_on_the_local_launcher_gives_one_directory_each(probe_env, tmp_path: Path) -> None:
    args = ["-m", "hydra/launcher=local", "trainer=ddp_cpu", "seed=1,2", "paths.log_dir=logs", *TINY_TRAIN]
    _run(args, tmp_path, probe_env, tmp_path / "multirun.log", timeout=600)
    sweeps = list((tmp_path / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0", "1"]
    for job in jobs:
        assert sorted(p.name for p in job.iterdir()) == [".hydra", "checkpoints", "csv", "metrics.json", "train.log"]
        assert {"val/acc", "test/acc"} <= set(json.loads((job / "metrics.json").read_text()))
        assert [p.name for p in (job / "csv").iterdir()] == ["version_0"]
        log = (job / "train.log").read_text()
        assert "MEMBER: 1/2" in log and "MEMBER: 2/2" in log  # both submitit tasks of the job joined one DDP group
    assert len(list(tmp_path.rglob("metrics.json"))) == 2
    seeds = {yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["seed"] for job in jobs}
    assert seeds == {1, 2}


@pytest.mark.slow
def test_two_nodes_on_loopback_see_the_same_steps_and_end_with_the_same_parameters(probe_env, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [
        *TINY_TRAIN,
        "trainer=ddp_cpu",
        "trainer.devices=1",
        "trainer.num_nodes=2",
        "trainer.max_epochs=2",
        "+callbacks.probe._target_=mmattn_probes.RankProbe",
        f"+callbacks.probe.dirpath={tmp_path / 'probe'}",
    ]
    port = str(29500 + os.getpid() % 1000)
    procs = [
        _popen(
            args,
            tmp_path,
            probe_env,
            tmp_path / f"node{rank}.log",
            {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "NODE_RANK": str(rank), "MMATTN_RUN_DIR": str(run)},
        )
        for rank in (0, 1)
    ]
    for rank, proc in enumerate(procs):
        proc.wait(timeout=300)
        assert proc.returncode == 0, (tmp_path / f"node{rank}.log").read_text()[-4000:]
    records = [json.loads((tmp_path / "probe" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["node_rank"] for r in records] == [0, 1] and all(r["world_size"] == 2 for r in records)
    # 20 images per node in batches of 8, limit_train_batches=2: 2 steps per epoch, 2 epochs.
    assert records[0]["global_step"] == records[1]["global_step"] == 4
    assert records[0]["params_sha256"] == records[1]["params_sha256"]
    assert "MEMBER: 2/2" in (tmp_path / "node1.log").read_text()
    # Both nodes ran in one run directory; node 1 wrote no composed config and no metrics of its own.
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "checkpoints", "csv", "metrics.json", "train.log"]
    assert len(list(tmp_path.rglob("metrics.json"))) == 1


@pytest.mark.slow
def test_bf16_accumulation_compile_and_lr_scaling_work_together_under_ddp(probe_env, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [
        *TINY_TRAIN,
        "trainer=ddp_cpu",
        "trainer.precision=bf16-mixed",
        "trainer.accumulate_grad_batches=2",
        "module.compile=true",
        "trainer.max_epochs=2",
        "module.scheduler=null",
        "lr_scaling.rule=linear",
        "lr_scaling.base_batch_size=8",
        f"hydra.run.dir={run}",
    ]
    log = _run(args, tmp_path, probe_env, tmp_path / "train.log", timeout=600)
    # 8 per process x 2 processes x 2 accumulated = 32 samples per step; lr 2e-3 x 32 / 8.
    assert "effective batch 32 samples per optimizer step = 8 per process x 2 process(es) x 2 accumulated" in log
    assert "lr 0.008 (lr_scaling.rule=linear from 0.002 at 8)" in log
    hparams = yaml.safe_load((run / "csv" / "version_0" / "hparams.yaml").read_text())
    assert hparams["run/effective_batch_size"] == 32 and hparams["run/lr"] == pytest.approx(8e-3)
    assert hparams["trainer"]["precision"] == "bf16-mixed" and hparams["module"]["compile"] is True
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2  # 2 batches per epoch per rank, accumulated in pairs, 2 epochs
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(8e-3)
    metrics = json.loads((run / "metrics.json").read_text())
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
