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


def test_byte_tokens_with_gpt_demo_need_model_vocab_size_260(compose_cfg, env_data_dir: Path, tmp_path: Path) -> None:
    """The issue's silent case (a 260-id byte tokenizer in an 8000-row gpt_demo) stops with one line; the row count
    it names builds a net of exactly the tokenizer's size."""
    from omegaconf import open_dict

    import mmattn
    from mmattn.cli.errors import user_message
    from mmattn.cli.train import train

    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("".join(f"walk {w} twice\n" for w in ("left", "right", "around") * 20))
    own_text = ["data=text_folder", f"data.root={tmp_path / 'text'}", "data.tokenizer=bytes", "data.documents=line"]
    tiny = ["data.block_size=16", "data.batch_size=4", "data.num_workers=0", "data.pin_memory=false"]
    tiny += ["model=gpt_demo", "model.dim=32", "model.depth=1", "model.num_heads=2", "module=language_model"]
    tiny += ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1"]

    def run(*overrides: str) -> Path:
        cfg = compose_cfg("train", [*own_text, *tiny, *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.paths.log_dir = str(tmp_path / "logs")
        train(cfg)
        return tmp_path / "run"

    for rows, why in ((8000, "is 8000, more than 325 ("), (128, "is 128, too few rows to embed them")):
        with pytest.raises(ValueError) as caught:
            run(f"model.vocab_size={rows}")
        message = user_message(caught.value)
        assert message is not None and message.startswith(f"the tokenizer has 260 ids but model.vocab_size {why}")
        assert message.endswith("set model.vocab_size=260") and "\n" not in message

    lm = mmattn.load(run("model.vocab_size=260") / "checkpoints" / "last.ckpt")
    assert lm.net.vocab_size == lm.tokenizer.vocab_size == 260 and lm.net.output.out_features == 260
