"""The language model through the CLI: mmattn-train experiment=lm_demo (the shared tiny run), mmattn-generate on it
(its stdout contract in a real subprocess; mmattn-eval on it runs in tests/docs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_lm_demo_trains_and_generates(trained_run, compose_cfg, tmp_path: Path) -> None:
    run = trained_run("lm")  # mmattn-train experiment=lm_demo, tiny
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/loss", "val/ppl", "val/grammatical", "test/ppl", "test/grammatical"} <= set(metrics)
    assert 0.0 <= metrics["val/grammatical"] <= 1.0
    ckpt = run / "checkpoints" / "last.ckpt"

    # The console script's contract: the samples, one a line, and nothing else on stdout; no run directory.
    args = [f"ckpt_path={ckpt}", "prompt=jump twice", "num_samples=3", "seed=7"]
    first = run_cli_generate(args, tmp_path)
    samples = first.stdout.splitlines()
    assert len(samples) == 3 and all(s.startswith("jump twice") for s in samples)
    assert not list(tmp_path.glob("outputs/generate*"))

    from mmattn.cli.generate import generate

    # The same seed, and recomputation samples the same tokens as the cache.
    assert generate(compose_cfg("generate", [*args, "use_cache=false"])) == samples
    long_prompt = " ".join(["walk"] * 100)
    with pytest.warns(RuntimeWarning, match="keeping its last 63 tokens"):
        generate(compose_cfg("generate", [f"ckpt_path={ckpt}", f"prompt={long_prompt}", "num_samples=1"]))


def run_cli_generate(args: list[str], cwd: Path):
    import os
    import subprocess
    import sys

    script = Path(sys.executable).parent / "mmattn-generate"
    result = subprocess.run(
        [str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result
