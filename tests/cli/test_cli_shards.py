"""`mmattn-shards` then `mmattn-train ... data.format=shards`, for the vision demo and the audio demo: the command's
progress and summary, training from the shards, a checkpoint tested on shards and on files alike, one-line errors;
the speech and translation demos trained from their shards, and a text folder's token files written ahead of a run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mmattn_testing import TINY_AUDIO, TINY_DATA, TINY_LM, TINY_SPEECH, TINY_TRANSLATION, compose_config
from omegaconf import open_dict

from mmattn.cli.shards import write
from mmattn.cli.train import train


def _module(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m <name> args` as a user runs it (the console scripts are the same programs)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "150"}
    env.pop("MMATTN_RUN_DIR", None)
    command = [sys.executable, "-m", name, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_shapes_demo_to_shards_then_training_from_them(
    make_cfg, env_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = env_data_dir / "shards" / "shapes"
    result = _module("mmattn.cli.shards", "data=shapes", *TINY_DATA, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "40/40 items" in result.stderr  # the progress bar of the training split
    summary = result.stdout
    assert "mmattn-shards" in summary and f"shards: {out}" in summary
    assert all(f"│ {split:<5} │" in summary for split in ("train", "val", "test"))
    assert "│ total │    80 │" in summary and "written" in summary
    assert sorted(p.name for p in out.iterdir()) == ["test", "train", "val"]
    assert not (tmp_path / "outputs").exists()  # a conversion leaves no run directory behind

    metrics = train(make_cfg("data.format=shards"))
    assert {"val/acc", "test/acc", "test/loss"} <= set(metrics)
    # The checkpoint tests alike on the shards and on the files: the same items through the same transforms.
    from mmattn.cli.eval import evaluate

    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    results = {}
    for fmt in ("shards", "files"):
        cfg = compose_config("eval", [f"ckpt_path={ckpt}", f"+data.format={fmt}"])
        with open_dict(cfg):
            cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / f"eval_{fmt}"), str(tmp_path / "logs")
        results[fmt] = evaluate(cfg)
    assert results["shards"] == pytest.approx(results["files"], abs=1e-6)

    capsys.readouterr()
    _write(["data=shapes", *TINY_DATA], tmp_path)  # again, in this process: nothing to write
    assert capsys.readouterr().out.count("up to date, kept") == 3


@pytest.mark.slow
def test_dtmf_demo_to_shards_then_training_from_them(env_data_dir: Path, tmp_path: Path) -> None:
    data = [o for o in TINY_AUDIO if o.startswith("data.")]
    cfg = compose_config("shards", ["data=dtmf", *data])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)  # ${hydra:runtime.output_dir} resolves only inside a Hydra job
    written = {s.split: s.num_items for s in write(cfg)}
    assert written == {"train": 51, "val": 34, "test": 17, "noise": 5}
    cfg = compose_config("train", [*TINY_AUDIO, "data.format=shards"])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "run"), str(tmp_path / "logs")
    metrics = train(cfg)
    assert {"val/acc", "test/acc"} <= set(metrics)


def test_training_from_missing_shards_stops_with_one_line(env_data_dir: Path, tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    result = _module("mmattn.train", "data.format=shards", f"data.shards={nowhere}", cwd=tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"train.py: error: no shards at {nowhere}; write them with `mmattn-shards data=<this data config>` (it writes "
        "to data.shards), or point data.shards at them"
    ), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def _tiny_run(overrides: list[str], tmp_path: Path) -> dict[str, float]:
    cfg = compose_config("train", overrides)
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "run"), str(tmp_path / "logs")
    return train(cfg)


def _write(overrides: list[str], tmp_path: Path) -> dict[str, int]:
    cfg = compose_config("shards", overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    return {s.split: s.num_items for s in write(cfg)}


@pytest.mark.slow
def test_speech_demo_to_shards_then_training_from_them(env_data_dir: Path, tmp_path: Path) -> None:
    data = [o for o in TINY_SPEECH if o.startswith("data.")]
    assert _write(["data=spoken_digits", *data], tmp_path) == {"train": 24, "val": 6, "test": 6}
    assert (env_data_dir / "shards" / "spoken_digits" / "train" / "items.jsonl").is_file()
    metrics = _tiny_run([*TINY_SPEECH, "data.format=shards"], tmp_path)
    assert {"val/wer", "test/wer"} <= set(metrics)


@pytest.mark.slow
def test_translation_demo_to_shards_then_training_from_them(env_data_dir: Path, tmp_path: Path) -> None:
    assert _write(["data=scan"], tmp_path) == {"train": 15892, "val": 836, "test": 4182}
    metrics = _tiny_run([*TINY_TRANSLATION, "data.format=shards"], tmp_path)
    assert {"val/exact", "test/bleu"} <= set(metrics)


@pytest.mark.slow
def test_text_folder_to_token_files_then_training_reuses_them(env_data_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tokens"
    assert _write(["data=scan_lm", f"out={out}"], tmp_path) == {"train": 147078, "val": 7690, "test": 38740}
    assert f"data.token_dir={out} data.tokenizer_dir={out / 'tokenizer'}" in capsys.readouterr().out
    made = {p.name: p.stat().st_mtime_ns for p in [*out.iterdir(), *(out / "tokenizer").iterdir()]}
    metrics = _tiny_run([*TINY_LM, f"data.token_dir={out}", f"data.tokenizer_dir={out / 'tokenizer'}"], tmp_path)
    assert "val/loss" in metrics
    # Mapped as written: neither the tokenizer nor a split was made again, nothing tokenized into the run.
    assert {p.name: p.stat().st_mtime_ns for p in [*out.iterdir(), *(out / "tokenizer").iterdir()]} == made
    assert not (tmp_path / "run" / "tokens").exists()
    with pytest.raises(ValueError, match="set out=<a folder on a disk all the run's nodes see>"):
        _write(["data=scan_lm"], tmp_path)
