"""Translation through the CLI: mmattn-train experiment=translation_demo, then mmattn-translate on its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mmattn_testing import TINY_TRANSLATION, is_picture


def _translate(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "mmattn-translate"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [str(script), *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300, env=env
    )


@pytest.mark.slow
def test_translation_demo_trains_and_translates(run_cli, env_data_dir: Path, tmp_path: Path) -> None:
    result = run_cli("mmattn-train", *TINY_TRANSLATION, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (run,) = (tmp_path / "outputs" / "translation_demo" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/loss", "val/bleu", "val/exact", "test/bleu", "test/exact"} <= set(metrics)
    assert (run / "tokenizer" / "tokenizer.json").is_file()
    ckpt = run / "checkpoints" / "last.ckpt"

    commands = ["jump twice", "walk left and look", "run around right thrice after turn left"]
    result = _translate([f"ckpt_path={ckpt}"], cwd=tmp_path, stdin="\n".join(commands) + "\n")
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 3  # one line per input line and nothing else on stdout
    assert not list(tmp_path.glob("outputs/translate*"))  # translating writes no run directory

    (tmp_path / "in.txt").write_text("\n".join(commands) + "\n")
    result = _translate([f"ckpt_path={ckpt}", "input=in.txt", "output=out.txt", "beam_size=3"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout == "" and len((tmp_path / "out.txt").read_text().splitlines()) == 3

    pics = run_cli("mmattn-viz", "what=attention", f"ckpt_path={ckpt}", "num_samples=2", "out_dir=pics", cwd=tmp_path)
    assert pics.returncode == 0, pics.stderr[-3000:]
    names = [Path(p).name for p in pics.stdout.splitlines()]
    assert names == ["alignment_0.png", "alignment_heads_0.png", "alignment_1.png", "alignment_heads_1.png"]
    assert all(is_picture(tmp_path / "pics" / n) for n in names)
    bad = run_cli("mmattn-viz", "what=attention", f"ckpt_path={ckpt}", "inputs=[x.txt]", cwd=tmp_path)
    assert bad.returncode != 0 and "cannot read input files" in bad.stderr

    result = _translate([f"ckpt_path={ckpt}", "input=missing.txt"], cwd=tmp_path)
    assert result.returncode != 0 and "input file" in result.stderr and "missing.txt" in result.stderr

    # mmattn-eval rebuilds model, module and tokenizer from the checkpoint alone.
    result = run_cli("mmattn-eval", f"ckpt_path={ckpt}", "+trainer.limit_test_batches=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (eval_run,) = (tmp_path / "outputs" / "eval" / "runs").iterdir()
    assert {"test/bleu", "test/exact", "test/loss"} == set(json.loads((eval_run / "metrics.json").read_text()))


@pytest.mark.slow
def test_translation_under_ddp_cpu_shards_its_own_batches(run_cli, env_data_dir: Path, tmp_path: Path) -> None:
    # Lightning cannot put a DistributedSampler under a custom batch sampler; the preset turns that off and the
    # datamodule hands each rank its own shard. Two real gloo processes must train, validate and test.
    result = run_cli("mmattn-train", *TINY_TRANSLATION, "trainer=ddp_cpu", cwd=tmp_path, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "MEMBER: 2/2" in output
    assert len(list(tmp_path.rglob("metrics.json"))) == 1

    # Without the preset's setting the run stops with the fix instead of Lightning's bare TypeError.
    result = run_cli(
        "mmattn-train",
        *TINY_TRANSLATION,
        "trainer=ddp_cpu",
        "trainer.use_distributed_sampler=true",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode != 0 and "set trainer.use_distributed_sampler=false" in result.stderr
