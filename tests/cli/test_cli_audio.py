"""The audio task through the same CLI: `mmattn-train experiment=audio_demo` and `mmattn-eval` as subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mmattn_testing import TINY_AUDIO, is_picture


@pytest.mark.slow
def test_audio_demo_trains_and_evaluates_from_the_cli(run_cli, env_data_dir: Path, tmp_path: Path) -> None:
    result = run_cli("mmattn-train", *TINY_AUDIO, "data.freq_mask=8", "module/mixup=mixup", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (run,) = (tmp_path / "outputs" / "audio_demo" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/acc", "test/acc", "test/acc_top5"} <= set(metrics)
    assert (env_data_dir / "dtmf" / "testing_list.txt").is_file()

    result = run_cli("mmattn-eval", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (eval_run,) = (tmp_path / "outputs" / "eval" / "runs").iterdir()
    assert set(json.loads((eval_run / "metrics.json").read_text())) == {"test/loss", "test/acc", "test/acc_top5"}

    # AST attention over the spectrogram (frequency up, time across).
    ckpt = run / "checkpoints" / "last.ckpt"
    pics = run_cli("mmattn-viz", "what=attention", f"ckpt_path={ckpt}", "num_samples=1", "out_dir=pics", cwd=tmp_path)
    assert pics.returncode == 0, pics.stderr[-3000:]
    assert all(is_picture(tmp_path / "pics" / n) for n in ("attention_0.png", "heads_0.png"))
    # A clip of the user's at another rate and length: resampled and centred, each with a warning.
    import numpy as np
    import soundfile as sf

    t = np.arange(4000) / 8000
    sf.write(tmp_path / "beep.wav", 0.3 * np.sin(2 * np.pi * 941 * t) + 0.3 * np.sin(2 * np.pi * 1336 * t), 8000)
    beep = f"inputs=[{tmp_path / 'beep.wav'}]"
    pics = run_cli("mmattn-viz", "what=attention", f"ckpt_path={ckpt}", beep, cwd=tmp_path)
    assert pics.returncode == 0, pics.stderr[-3000:]
    assert "beep.wav is at 8000 Hz; resampled to the model's 16000 Hz" in pics.stderr
    assert "beep.wav lasts 0.50 s; centred in the model's 1 s" in pics.stderr


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
