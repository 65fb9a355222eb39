"""scripts/position_lab.py: one real quick run (train + oracle-length evaluation through the CLIs) and its outputs,
and the table and picture from given results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mmattn_testing import is_picture

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "position_lab.py"
sys.path.insert(0, str(SCRIPT.parent))
import position_lab  # noqa: E402  (scripts/ is no package)


@pytest.mark.slow
def test_a_quick_scan_run_writes_json_markdown_and_png(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "lab"
    cmd = [sys.executable, str(SCRIPT), "scan", "--quick", "--schemes", "none", "--variants", "eos_oracle"]
    cmd += ["--data-dir", str(data_dir), "--out", str(out), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("| scheme | test exact (oracle length) |")
    result = json.loads((out / "scan_length.json").read_text())
    run = result["runs"]["none"]
    assert run["overrides"] == ["model.positions=none", "model.encoder_positions=rotary"]
    assert 0.0 <= run["eos_oracle"]["test_exact"] <= 1.0 and run["train_eos"]["seconds"] > 0
    # `mmattn-eval decoding.oracle_length=true` ran on the trained checkpoint.
    assert (out / "length" / "none" / "eos" / "oracle_eval" / "metrics.json").is_file()
    assert (out / "scan_length.md").read_text() == proc.stdout
    assert is_picture(out / "scan_length.png")


def test_table_and_picture_from_results(tmp_path: Path) -> None:
    results = {
        "split": "add_jump",
        "runs": {
            "rotary": {
                "eos": {"test_exact": 0.1, "val_exact": 0.99},
                "no_eos": {"test_exact": 0.5, "val_exact": 0.98},
                "minutes": 7.5,
            },
            "t5": {"eos": {"test_exact": 0.25, "val_exact": 0.97}, "minutes": 3.0},
        },
    }
    variants = ["eos", "no_eos"]
    table = position_lab.markdown(results, variants)
    assert table.splitlines()[2] == "| rotary | 0.100 | 0.500 | 0.990 | 7.5 |"
    assert table.splitlines()[3] == "| t5 | 0.250 |  | 0.970 | 3.0 |"  # a variant not run stays empty
    position_lab.write_outputs(results, tmp_path, variants)
    assert json.loads((tmp_path / "scan_add_jump.json").read_text()) == results
    assert is_picture(tmp_path / "scan_add_jump.png")
    with pytest.raises(SystemExit, match="unknown \\['nope'\\]"):
        position_lab.run_scan(position_lab.parse_args(["scan", "--schemes", "nope", "--out", str(tmp_path)]))
