"""Speech recognition through the CLI: mmattn-train experiment=speech_demo (the shared tiny run), mmattn-transcribe on
audio files (its stdout contract in a real subprocess), mmattn-viz alignments; mmattn-eval on it runs in tests/docs."""

from __future__ import annotations

import json

import pytest
from mmattn_testing import is_picture

DIGITS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}


@pytest.mark.slow
def test_speech_demo_trains_transcribes_and_evaluates(run_cli, trained_run, compose_cfg, data_dir, tmp_path) -> None:
    run = trained_run("speech")  # mmattn-train experiment=speech_demo, tiny
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/wer", "val/cer", "val/ctc_loss", "test/wer", "test/cer", "train/ctc_loss"} <= set(metrics)
    assert (run / "tokenizer" / "tokenizer.json").is_file()
    ckpt = run / "checkpoints" / "last.ckpt"
    clips = sorted((data_dir / "spoken_digits" / "test").glob("*.flac"))[:3]

    # The console script's contract: one line per file, in order, and nothing else on stdout; no run directory.
    result = run_cli("mmattn-transcribe", f"ckpt_path={ckpt}", *map(str, clips), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == list(map(str, clips))
    # A tiny model's words are whatever it learned in two steps, but they come from the digit vocabulary.
    assert {w for line in lines for w in line.split("\t")[1].split()} <= DIGITS
    assert not list(tmp_path.glob("outputs/transcribe*"))

    from mmattn.cli.transcribe import transcribe
    from mmattn.cli.viz import visualize

    ctc = transcribe(
        compose_cfg("transcribe", [f"ckpt_path={ckpt}", "method=ctc", "with_paths=false"]), [str(clips[0])]
    )
    assert len(ctc) == 1 and "\t" not in ctc[0]  # CTC's best path of a two-step model: any pieces, one line

    pics = visualize(
        compose_cfg("viz", ["what=attention", f"ckpt_path={ckpt}", "num_samples=1", f"out_dir={tmp_path / 'pics'}"])
    )
    # The words figure draws each predicted token's attention over the waveform, by the speech renderer.
    assert [p.name for p in pics] == ["alignment_0.png", "alignment_heads_0.png", "words_0.png"]
    assert all(is_picture(p) for p in pics)

    with pytest.raises(FileNotFoundError, match=r"nope.wav does not exist"):
        transcribe(compose_cfg("transcribe", [f"ckpt_path={ckpt}"]), [str(clips[0]), str(tmp_path / "nope.wav")])

    from omegaconf import open_dict

    from mmattn.cli.eval import evaluate

    cfg = compose_cfg("eval", [f"ckpt_path={ckpt}"])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "eval"), str(tmp_path / "logs")
    assert {"test/wer", "test/cer", "test/loss"} <= set(evaluate(cfg))


def test_positional_files_are_told_apart_from_hydra_arguments() -> None:
    from mmattn.cli.transcribe import split_argv

    argv = ["ckpt_path=x.ckpt", "a.wav", "--config-dir", "/my/configs", "dir/b.flac", "-m", "beam_size=4", "c.ogg"]
    hydra_args, files = split_argv(argv)
    assert files == ["a.wav", "dir/b.flac", "c.ogg"]
    assert hydra_args == ["ckpt_path=x.ckpt", "--config-dir", "/my/configs", "-m", "beam_size=4"]
