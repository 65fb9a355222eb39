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
def test_translation_demo_trains_and_translates(trained_run, compose_cfg, tmp_path: Path) -> None:
    run = trained_run("translation")  # mmattn-train experiment=translation_demo, tiny
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/loss", "val/bleu", "val/exact", "test/bleu", "test/exact"} <= set(metrics)
    assert (run / "tokenizer" / "tokenizer.json").is_file()
    ckpt = run / "checkpoints" / "last.ckpt"

    # The console script's contract: one line per input line and nothing else on stdout, no run directory.
    commands = ["jump twice", "walk left and look", "run around right thrice after turn left"]
    result = _translate([f"ckpt_path={ckpt}"], cwd=tmp_path, stdin="\n".join(commands) + "\n")
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert not list(tmp_path.glob("outputs/translate*"))

    from mmattn.cli.translate import translate
    from mmattn.cli.viz import visualize

    (tmp_path / "in.txt").write_text("\n".join(commands) + "\n")
    out = tmp_path / "out.txt"
    translated = translate(
        compose_cfg("translate", [f"ckpt_path={ckpt}", f"input={tmp_path / 'in.txt'}", f"output={out}", "beam_size=3"])
    )
    assert out.read_text().splitlines() == translated and len(translated) == 3

    pics = visualize(
        compose_cfg("viz", ["what=attention", f"ckpt_path={ckpt}", "num_samples=2", f"out_dir={tmp_path / 'pics'}"])
    )
    assert [p.name for p in pics] == [
        "alignment_0.png",
        "alignment_heads_0.png",
        "alignment_1.png",
        "alignment_heads_1.png",
    ]
    assert all(is_picture(p) for p in pics)
    with pytest.raises(ValueError, match="this model's source is text, which is not read from files"):
        visualize(compose_cfg("viz", ["what=attention", f"ckpt_path={ckpt}", "inputs=[x.txt]"]))
    with pytest.raises(FileNotFoundError, match=r"input file .*missing.txt does not exist"):
        translate(compose_cfg("translate", [f"ckpt_path={ckpt}", f"input={tmp_path / 'missing.txt'}"]))


def test_translation_under_ddp_cpu_without_the_presets_setting_names_the_fix(
    compose_cfg, env_data_dir: Path, tmp_path: Path
) -> None:
    # Lightning cannot put a DistributedSampler under a custom batch sampler; the preset turns that off and the
    # datamodule hands each rank its own shard (SCAN's token-budget batches train, validate and test under 2-process
    # DDP in tests/cli/test_cli_multitask.py). Without the preset's setting the loaders stop with the fix instead of
    # Lightning's bare TypeError: checked here with the run's own 2-process DDP trainer, whose processes start at fit.
    from hydra.utils import instantiate
    from omegaconf import open_dict

    from mmattn.cli.utils import build_trainer

    cfg = compose_cfg("train", [*TINY_TRANSLATION, "trainer=ddp_cpu", "trainer.use_distributed_sampler=true"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    trainer = build_trainer(cfg, [], [])
    assert trainer.world_size == 2
    datamodule = instantiate(cfg.data)
    datamodule.trainer = trainer
    datamodule.prepare_data()
    datamodule.setup("fit")
    with pytest.raises(ValueError, match=r"set trainer.use_distributed_sampler=false \(running 2 processes\)"):
        datamodule.train_dataloader()
