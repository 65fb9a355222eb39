"""The language model through the CLI: mmattn-train experiment=lm_demo, mmattn-generate and mmattn-eval on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mmattn_testing import TINY_LM


@pytest.mark.slow
def test_lm_demo_trains_and_generates(run_cli, env_data_dir: Path, tmp_path: Path) -> None:
    result = run_cli("mmattn-train", *TINY_LM, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (run,) = (tmp_path / "outputs" / "lm_demo" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/loss", "val/ppl", "val/grammatical", "test/ppl", "test/grammatical"} <= set(metrics)
    assert 0.0 <= metrics["val/grammatical"] <= 1.0
    ckpt = run / "checkpoints" / "last.ckpt"

    args = [f"ckpt_path={ckpt}", "prompt=jump twice", "num_samples=3", "seed=7"]
    first = run_cli("mmattn-generate", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    samples = first.stdout.splitlines()
    assert len(samples) == 3 and all(s.startswith("jump twice") for s in samples)  # nothing else on stdout
    again = run_cli("mmattn-generate", *args, "use_cache=false", cwd=tmp_path)
    assert again.stdout == first.stdout  # same seed, and recomputation samples the same tokens as the cache
    assert not list(tmp_path.glob("outputs/generate*"))

    long_prompt = " ".join(["walk"] * 100)
    result = run_cli("mmattn-generate", f"ckpt_path={ckpt}", f"prompt={long_prompt}", "num_samples=1", cwd=tmp_path)
    assert result.returncode == 0 and "keeping its last 63 tokens" in result.stderr

    result = run_cli("mmattn-eval", f"ckpt_path={ckpt}", "+trainer.limit_test_batches=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (eval_run,) = (tmp_path / "outputs" / "eval" / "runs").iterdir()
    assert {"test/loss", "test/ppl", "test/grammatical"} == set(json.loads((eval_run / "metrics.json").read_text()))
