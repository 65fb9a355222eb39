"""A real two-process DDP run on CPU (gloo): one run directory, written by rank 0 only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


@pytest.mark.slow
def test_ddp_cpu_ranks_share_one_run_directory(run_cli, tiny_train, tmp_path: Path) -> None:
    result = run_cli("mmattn-train", *tiny_train, "trainer=ddp_cpu", "paths.log_dir=logs", cwd=tmp_path, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "MEMBER: 2/2" in output  # the second rank really ran

    runs = sorted((tmp_path / "logs" / "train" / "runs").iterdir())
    assert len(runs) == 1, runs
    run = runs[0]
    # Rank 1 ran in rank 0's directory and wrote nothing of its own: no .hydra, no job log, no metrics, no logs.
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "checkpoints", "csv", "metrics.json", "train.log"]
    assert [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    assert len(list(tmp_path.rglob("metrics.json"))) == 1
    assert output.count("run directory:") == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/acc", "test/acc"} <= set(metrics)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
