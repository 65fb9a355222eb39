"""A modality from outside the repository's packages: examples/timeseries trains through mmattn-train with configs of
its own (Hydra's search path extended on the command line), and nothing in mmattn/ (the built-in adapters under
mmattn/tasks/ included) or configs/ knows it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mmattn_testing import is_picture

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "timeseries"


@pytest.mark.slow
def test_the_timeseries_example_trains_from_outside(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Path-added, as docs/new_modality.md shows (pip install -e examples/timeseries works the same way).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")]))
    args = ["hydra.searchpath=[pkg://mmattn_timeseries.configs]", "experiment=timeseries_demo", "paths.data_dir=data"]
    result = run_cli("mmattn-train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (run,) = (tmp_path / "outputs" / "timeseries_demo" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val/acc"] >= 0.90 and metrics["test/acc"] >= 0.85, metrics
    assert sorted(p.name for p in (tmp_path / "data" / "activities").glob("*.npz")) == [
        "test.npz",
        "train.npz",
        "val.npz",
    ]
    # The guide's other commands: no search path needed, the checkpoint carries its config. Its classes are built only
    # once the user says the package is trusted.
    ckpt = run / "checkpoints" / "last.ckpt"
    from mmattn.build import UntrustedTargetError
    from mmattn.checkpoint import load

    with pytest.raises(UntrustedTargetError, match=r"pass trust=\[mmattn_timeseries\]"):
        load(ckpt)
    result = run_cli("mmattn-eval", f"ckpt_path={ckpt}", "trust=[mmattn_timeseries]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (eval_run,) = (tmp_path / "outputs" / "eval" / "runs").iterdir()
    evaluated = json.loads((eval_run / "metrics.json").read_text())
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"], abs=0.02)
    viz = ["what=attention", f"ckpt_path={ckpt}", "num_samples=1", "out_dir=pics", "trust=[mmattn_timeseries]"]
    result = run_cli("mmattn-viz", *viz, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert all(is_picture(tmp_path / "pics" / n) for n in ("attention_0.png", "heads_0.png"))


def test_nothing_in_the_framework_mentions_the_example() -> None:
    needles = ("timeseries", "mmattn_timeseries", "ActivityDataModule", "SensorPatchEmbed")
    for top in ("mmattn", "configs"):
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".yaml", ".txt", ".md", ".toml"):
                text = path.read_text(errors="replace")
                assert not any(n in text for n in needles), f"{path} mentions the example"


def test_the_window_shape_is_the_models_not_the_datas(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from hydra.utils import instantiate
    from mmattn_testing import compose_config

    monkeypatch.syspath_prepend(str(EXAMPLE))
    cfg = compose_config("train", ["hydra.searchpath=[pkg://mmattn_timeseries.configs]", "experiment=timeseries_demo"])
    # The datamodule never used in_chans / seq_len: only the model config holds them now.
    assert "in_chans" not in cfg.data and "seq_len" not in cfg.data
    assert (cfg.model.embed.in_chans, cfg.model.embed.seq_len) == (3, 128)
    net = instantiate(cfg.model)
    assert net(torch.randn(2, 3, 128)).shape == (2, cfg.data.num_classes)
    with pytest.raises(ValueError, match=r"expects windows \[batch, 3, 128\], got \(2, 3, 64\)"):
        net(torch.randn(2, 3, 64))
