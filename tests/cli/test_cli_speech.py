"""Speech recognition through the CLI: mmattn-train experiment=speech_demo (tiny), mmattn-transcribe on audio files,
mmattn-eval with WER/CER."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mmattn_testing import TINY_SPEECH, is_picture

from mmattn.tasks.speech import espeak_available


@pytest.mark.slow
def test_speech_demo_trains_transcribes_and_evaluates(run_cli, tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run_cli("mmattn-train", *TINY_SPEECH, f"paths.data_dir={data}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    if not espeak_available():
        assert "espeak-ng" in result.stderr and "DTMF" in result.stderr  # the fallback says so in the log
    (run,) = (tmp_path / "outputs" / "speech_demo" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/wer", "val/cer", "val/ctc_loss", "test/wer", "test/cer", "train/ctc_loss"} <= set(metrics)
    assert (run / "tokenizer" / "tokenizer.json").is_file()
    ckpt = run / "checkpoints" / "last.ckpt"
    clips = sorted((data / "spoken_digits" / "test").glob("*.flac"))[:3]

    result = run_cli("mmattn-transcribe", f"ckpt_path={ckpt}", *map(str, clips), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == list(map(str, clips))  # one line per file, in order
    # A tiny model's words are whatever it learned in two steps, but they come from the digit vocabulary.
    words = {w for line in lines for w in line.split("\t")[1].split()}
    assert words <= {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}

    ctc = run_cli(
        "mmattn-transcribe", f"ckpt_path={ckpt}", "method=ctc", "with_paths=false", str(clips[0]), cwd=tmp_path
    )
    assert ctc.returncode == 0, ctc.stderr[-4000:]
    assert len(ctc.stdout.splitlines()) == 1 and "\t" not in ctc.stdout

    pics = run_cli("mmattn-viz", "what=attention", f"ckpt_path={ckpt}", "num_samples=1", "out_dir=pics", cwd=tmp_path)
    assert pics.returncode == 0, pics.stderr[-3000:]
    assert all(is_picture(tmp_path / "pics" / n) for n in ("alignment_0.png", "alignment_heads_0.png"))

    missing = run_cli("mmattn-transcribe", f"ckpt_path={ckpt}", str(clips[0]), str(tmp_path / "nope.wav"), cwd=tmp_path)
    assert missing.returncode != 0 and "nope.wav does not exist" in missing.stderr and missing.stdout == ""
    assert not list(tmp_path.glob("outputs/transcribe*"))

    result = run_cli("mmattn-eval", f"ckpt_path={ckpt}", f"paths.data_dir={data}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (eval_run,) = (tmp_path / "outputs" / "eval" / "runs").iterdir()
    assert {"test/wer", "test/cer", "test/loss"} <= set(json.loads((eval_run / "metrics.json").read_text()))


def test_positional_files_are_told_apart_from_hydra_arguments() -> None:
    from mmattn.cli.transcribe import split_argv

    argv = ["ckpt_path=x.ckpt", "a.wav", "--config-dir", "/my/configs", "dir/b.flac", "-m", "beam_size=4", "c.ogg"]
    hydra_args, files = split_argv(argv)
    assert files == ["a.wav", "dir/b.flac", "c.ogg"]
    assert hydra_args == ["ckpt_path=x.ckpt", "--config-dir", "/my/configs", "-m", "beam_size=4"]
