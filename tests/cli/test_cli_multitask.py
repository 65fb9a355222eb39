"""Multi-task runs for real: kill -9 of a 2-process gloo DDP run and its resume, a bad task entry in a run config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from mmattn_testing import TINY_MULTITASK, cli_path, metric_steps


def _train(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([cli_path("mmattn-train"), *args], cwd=cwd, env=env, stdout=out, stderr=out)


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    proc.wait(timeout=timeout)
    text = log.read_text()
    assert proc.returncode == 0, text[-4000:]
    return text


@pytest.mark.slow
def test_kill_9_of_a_two_process_ddp_run_then_resume_continues_the_task_sequence_on_both_ranks(
    probe_env, tmp_path: Path
) -> None:
    from mmattn.data.mixing import MixedLoader

    run = tmp_path / "run"
    args = [
        *TINY_MULTITASK,
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "data.steps_per_epoch=8",
        "trainer.max_epochs=3",
        "callbacks.last_checkpoint.train_time_interval=null",
        "callbacks.last_checkpoint.every_n_train_steps=3",
        # The resume is what is tested; evaluation runs each epoch (testing is tested in tests/lit/test_multitask.py).
        "test=false",
        "+trainer.num_sanity_val_steps=0",
        "+callbacks.tasks._target_=mmattn_probes.TaskProbe",
        f"+callbacks.tasks.dirpath={run / 'probe'}",
        f"hydra.run.dir={run}",
    ]
    csv_path = run / "csv" / "version_0" / "metrics.csv"
    with open(tmp_path / "killed.log", "w") as out:
        # Its own process group: kill -9 reaches both ranks, as a node failure would.
        proc = subprocess.Popen(
            [cli_path("mmattn-train"), *args, "+callbacks.pace._target_=mmattn_probes.Pace"],
            cwd=tmp_path,
            env=probe_env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while not (csv_path.is_file() and max(metric_steps(csv_path).get("train/loss", [-1])) >= 13):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "killed.log").read_text()[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert 12 <= saved["global_step"] < 24 and saved["global_step"] % 8 != 0  # mid-epoch
    assert not (run / "probe").exists()

    log = _finish(
        _train([*args, "ckpt_path=last"], tmp_path, probe_env, tmp_path / "resumed.log"), tmp_path / "resumed.log"
    )
    assert "Restored all states from the checkpoint" in log and "find_unused_parameters" not in log
    got = metric_steps(csv_path)
    assert got["train/loss"] == list(range(24))
    # The sequence the schedule draws from the run's seed (42) and each epoch: every step trained its task once,
    # the steps logged before the kill and after the resume together, with none repeated or skipped.
    weights = {"shapes": 0.3, "dtmf": 0.1, "scan": 0.6}
    mixture = MixedLoader(dict.fromkeys(weights, [None]), 8, schedule="weights", seed=42, weights=weights)
    drawn = [task for epoch in range(3) for task in mixture.sequence(epoch)]
    for task in weights:
        assert got[f"train/{task}/loss"] == [step for step, t in enumerate(drawn) if t == task], task
    # Both ranks of the resumed run trained the same tasks, the rest of the sequence, and ended with one model.
    ranks = [json.loads((run / "probe" / f"tasks_rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["tasks"] == ranks[1]["tasks"] == drawn[saved["global_step"] :]
    assert ranks[0]["params_sha256"] == ranks[1]["params_sha256"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/shapes/acc", "val/dtmf/acc", "val/scan/exact", "val/score"} <= set(metrics)


def test_a_task_entry_with_an_unknown_modality_stops_training_with_one_line(env_data_dir, tmp_path: Path) -> None:
    from mmattn_testing import compose_config
    from omegaconf import open_dict

    from mmattn.cli.errors import user_message
    from mmattn.cli.train import train

    cfg = compose_config("train", [*TINY_MULTITASK, "tasks.dtmf.modality=audio"])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "run"), str(tmp_path / "logs")
    with pytest.raises(Exception) as error:
        train(cfg)
    message = user_message(error.value)  # what mmattn-train prints after "mmattn-train: error: "
    assert (
        message is not None
        and "task 'dtmf' has unknown modality 'audio'; the modalities of the loaded input embeddings are" in message
    )
    assert "\n" not in message
