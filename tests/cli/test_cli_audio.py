"""The audio task through the same CLI functions: `mmattn-train experiment=audio_demo` with Mixup, `mmattn-eval`,
`mmattn-viz` on its checkpoint and on a clip of the user's, and scripts/audio_stats.py as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mmattn_testing import TINY_AUDIO, is_picture


@pytest.mark.slow
def test_audio_demo_trains_with_mixup_and_evaluates(make_cfg, compose_cfg, env_data_dir: Path, tmp_path: Path) -> None:
    # In-process, as mmattn-train runs it (its console script is exercised by the vision tests): AST with batch
    # Mixup and SpecAugment on the DTMF demo, then mmattn-eval and mmattn-viz on its checkpoint.
    from omegaconf import open_dict

    from mmattn.cli.eval import evaluate
    from mmattn.cli.train import train
    from mmattn.cli.viz import visualize

    cfg = compose_cfg("train", [*TINY_AUDIO, "data.freq_mask=8", "module/mixup=mixup"])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "run"), str(tmp_path / "logs")
    metrics = train(cfg)
    assert {"val/acc", "test/acc", "test/acc_top5"} <= set(metrics)
    assert (env_data_dir / "dtmf" / "testing_list.txt").is_file()
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"

    cfg = compose_cfg("eval", [f"ckpt_path={ckpt}"])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "eval"), str(tmp_path / "logs")
    assert set(evaluate(cfg)) == {"test/loss", "test/acc", "test/acc_top5"}

    # AST attention over the spectrogram (frequency up, time across).
    pics = visualize(
        compose_cfg("viz", ["what=attention", f"ckpt_path={ckpt}", "num_samples=1", f"out_dir={tmp_path}"])
    )
    assert [p.name for p in pics] == ["attention_0.png", "heads_0.png"] and all(is_picture(p) for p in pics)
    # A clip of the user's at another rate and length: resampled and centred, each with a warning.
    import numpy as np
    import soundfile as sf

    t = np.arange(4000) / 8000
    sf.write(tmp_path / "beep.wav", 0.3 * np.sin(2 * np.pi * 941 * t) + 0.3 * np.sin(2 * np.pi * 1336 * t), 8000)
    with pytest.warns(UserWarning) as seen:
        visualize(
            compose_cfg(
                "viz",
                ["what=attention", f"ckpt_path={ckpt}", f"inputs=[{tmp_path / 'beep.wav'}]", f"out_dir={tmp_path}"],
            )
        )
    messages = " | ".join(str(w.message) for w in seen)
    assert "beep.wav is at 8000 Hz; resampled to the model's 16000 Hz" in messages
    assert "beep.wav lasts 0.50 s; centred in the model's 1 s" in messages


@pytest.mark.slow
def test_audio_stats_script_prints_the_training_feature_statistics(
    compose_cfg, env_data_dir: Path, tmp_path: Path
) -> None:
    from hydra.utils import instantiate

    script = Path(__file__).resolve().parents[2] / "scripts" / "audio_stats.py"
    overrides = [o for o in TINY_AUDIO if not o.startswith("+trainer")]
    result = subprocess.run(
        [sys.executable, str(script), *overrides, f"hydra.run.dir={tmp_path / 'stats'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("data.mean=") and " data.std=" in line
    mean, std = (float(part.split("=")[1]) for part in line.split())
    expected = instantiate(compose_cfg("train", overrides).data).feature_stats()
    assert (mean, std) == pytest.approx(expected, abs=1e-4)
    assert std > 0 and abs(mean - -4.27) > 0.1  # measured, not the AudioSet fall-back
