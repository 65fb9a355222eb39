"""The multi-modal families through the CLI on their built-in demos (tiny): image captioning (an image source feeding
the text decoder) captions PNG files with mmattn-transcribe and draws each word's attention over the image; early
fusion of an image and a tone draws both inputs under the class token's attention; both evaluate with mmattn-eval."""

from __future__ import annotations

import json

import pytest
from mmattn_testing import is_picture


@pytest.mark.slow
def test_caption_demo_trains_captions_files_and_draws(run_cli, trained_run, compose_cfg, data_dir, tmp_path) -> None:
    run = trained_run("caption")
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/attributes", "val/bleu", "test/attributes", "test/bleu"} <= set(metrics)
    ckpt = run / "checkpoints" / "last.ckpt"
    images = sorted((data_dir / "scenes" / "test").glob("*.png"))[:2]

    # One general command decodes files into text: audio for a speech model, images for a captioning model.
    result = run_cli("mmattn-transcribe", f"ckpt_path={ckpt}", *map(str, images), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == list(map(str, images))
    import mmattn

    # The same captions from Python, the checkpoint given as a path string.
    captions = [line.split("\t")[1] for line in result.stdout.splitlines()]
    assert mmattn.transcribe(str(ckpt), images) == captions

    from mmattn.cli.eval import evaluate
    from mmattn.cli.viz import visualize

    pics = visualize(
        compose_cfg(
            "viz", ["what=attention", f"ckpt_path={ckpt}", f"inputs=[{images[0]}]", f"out_dir={tmp_path / 'pics'}"]
        )
    )
    assert [p.name for p in pics] == ["alignment_0.png", "alignment_heads_0.png", "words_0.png"]
    assert all(is_picture(p) for p in pics)
    evaluated = evaluate(compose_cfg("eval", [f"ckpt_path={ckpt}", f"paths.output_dir={tmp_path / 'eval'}"]))
    assert evaluated["test/attributes"] == pytest.approx(metrics["test/attributes"])

    # A text-only command refuses the image model at load, in one line naming what the model reads.
    result = run_cli("mmattn-translate", f"ckpt_path={ckpt}", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "mmattn-translate: error: this model's source is image (ImagePatchEmbed), not text, so it does not "
        "translate text; read files with transcribe (mmattn-transcribe)"
    )


@pytest.mark.slow
def test_fusion_demo_trains_evaluates_and_draws_both_inputs(trained_run, compose_cfg, tmp_path) -> None:
    run = trained_run("fusion")
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/acc", "test/acc"} <= set(metrics)
    ckpt = run / "checkpoints" / "last.ckpt"

    from mmattn.cli.eval import evaluate
    from mmattn.cli.viz import visualize

    pics = visualize(
        compose_cfg("viz", ["what=attention", f"ckpt_path={ckpt}", "num_samples=1", f"out_dir={tmp_path / 'pics'}"])
    )
    assert [p.name for p in pics] == ["fusion_0.png"] and is_picture(pics[0])
    # The same checkpoint with the image absent in every example: evaluated from the tone alone, never crashed.
    only = evaluate(
        compose_cfg("eval", [f"ckpt_path={ckpt}", "+data.only=audio", f"paths.output_dir={tmp_path / 'eval'}"])
    )
    assert 0.0 <= only["test/acc"] <= 1.0

    import mmattn
    from mmattn.export import ExportError, export_module

    with pytest.raises(ExportError, match=r"FusionEncoder takes dict inputs, not one tensor"):
        export_module(mmattn.load(ckpt), tmp_path / "exported")
