"""Multi-task runs for real: 2-process DDP over gloo, kill -9 and resume, a bad task entry from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from mmattn_testing import TINY_MULTITASK, cli_path, metric_steps, metric_values

TASK_LOSSES = ("train/shapes/loss", "train/dtmf/loss", "train/scan/loss")


def _train(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([cli_path("mmattn-train"), *args], cwd=cwd, env=env, stdout=out, stderr=out)


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    proc.wait(timeout=timeout)
    text = log.read_text()
    assert proc.returncode == 0, text[-4000:]
    return text


@pytest.mark.slow
def test_two_ddp_processes_run_the_same_task_at_every_step_without_unused_parameter_search(
    probe_env, tmp_path: Path
) -> None:
    run = tmp_path / "ddp"
    args = [
        *TINY_MULTITASK,
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "data.steps_per_epoch=5",
        "trainer.max_epochs=2",
        "+callbacks.tasks._target_=mmattn_probes.TaskProbe",
        f"+callbacks.tasks.dirpath={run / 'probe'}",
        f"hydra.run.dir={run}",
    ]
    log = _finish(_train(args, tmp_path, probe_env, tmp_path / "ddp.log"), tmp_path / "ddp.log")
    assert "find_unused_parameters" not in log
    ranks = [json.loads((run / "probe" / f"tasks_rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["tasks"] == ranks[1]["tasks"] and len(ranks[0]["tasks"]) == 10
    assert len(set(ranks[0]["tasks"])) > 1  # several tasks trained
    # DDP kept one model: the same parameters on both ranks after steps of different tasks.
    assert ranks[0]["params_sha256"] == ranks[1]["params_sha256"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/shapes/acc", "val/dtmf/acc", "val/scan/exact", "val/score", "test/scan/exact"} <= set(metrics)


@pytest.mark.slow
def test_kill_9_then_ckpt_path_last_continues_the_task_sequence_without_repeating_or_skipping_a_step(
    probe_env, tmp_path: Path
) -> None:
    long = [
        *TINY_MULTITASK,
        "data.steps_per_epoch=8",
        "trainer.max_epochs=3",
        "callbacks.last_checkpoint.train_time_interval=null",
        "callbacks.last_checkpoint.every_n_train_steps=3",
    ]
    reference = tmp_path / "reference"
    _finish(
        _train([*long, f"hydra.run.dir={reference}"], tmp_path, probe_env, tmp_path / "ref.log"), tmp_path / "ref.log"
    )

    run = tmp_path / "killed"
    csv_path = run / "csv" / "version_0" / "metrics.csv"
    pace = ["+callbacks.pace._target_=mmattn_probes.Pace"]
    proc = _train([*long, *pace, f"hydra.run.dir={run}"], tmp_path, probe_env, tmp_path / "killed.log")
    import time

    deadline = time.monotonic() + 120
    while not (csv_path.is_file() and max(metric_steps(csv_path).get("train/loss", [-1])) >= 13):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "killed.log").read_text()[-3000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert 12 <= saved["global_step"] < 24 and saved["global_step"] % 8 != 0  # mid-epoch

    log = _finish(
        _train([*long, f"hydra.run.dir={run}", "ckpt_path=last"], tmp_path, probe_env, tmp_path / "r.log"),
        tmp_path / "r.log",
    )
    assert "Restored all states from the checkpoint" in log
    expected = metric_steps(reference / "csv" / "version_0" / "metrics.csv")
    got = metric_steps(csv_path)
    assert expected["train/loss"] == list(range(24))
    # Each task trained at exactly the steps of the uninterrupted run: its sequence continued, nothing repeated.
    for key in TASK_LOSSES:
        assert got[key] == expected[key], key
    assert sum(len(expected[key]) for key in TASK_LOSSES) == 24
    # On the same batches: the loss of every step is the uninterrupted run's, to the bit.
    reference_loss = metric_values(reference / "csv" / "version_0" / "metrics.csv", "train/loss")
    assert metric_values(csv_path, "train/loss") == reference_loss


def test_a_task_entry_with_an_unknown_modality_stops_the_cli_with_one_line(run_cli, tmp_path: Path) -> None:
    result = run_cli("mmattn-train", *TINY_MULTITASK, "tasks.dtmf.modality=audio", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("mmattn-train: error: ")
    assert "task 'dtmf' has unknown modality 'audio'; the modalities of the loaded input embeddings are" in lines[-1]
    assert "Traceback" not in result.stderr
