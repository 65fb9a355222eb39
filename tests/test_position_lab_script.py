"""scripts/position_lab.py: quick real runs of its benchmarks (training and evaluation through the CLIs) and their
outputs, and the tables, pictures and merging from given results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mmattn_testing import TINY_TRAIN, is_picture

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "position_lab.py"
sys.path.insert(0, str(SCRIPT.parent))
import position_lab  # noqa: E402  (scripts/ is no package)


@pytest.mark.slow
def test_quick_scan_and_resolution_runs_write_json_markdown_and_png(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "lab"
    common = ["--quick", "--data-dir", str(data_dir), "--out", str(out), "--threads", "1"]
    # Each benchmark's own loop, with the fewest processes: one training each, one evaluation.
    scan = [sys.executable, str(SCRIPT), "scan", "--schemes", "none", "--variants", "eos", *common]
    resolution = [sys.executable, str(SCRIPT), "resolution", "--schemes", "rotary2d", "--sizes", "32", *common]
    resolution += [o for o in TINY_TRAIN if o.startswith("data.")]  # the session's shapes set, in training and test
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in (scan, resolution)
    ]
    (scan_out, scan_err), (res_out, res_err) = (p.communicate(timeout=300) for p in procs)
    assert procs[0].returncode == 0, scan_err[-3000:]
    assert procs[1].returncode == 0, res_err[-3000:]

    assert scan_out.startswith("| scheme | test exact (own EOS) |")
    result = json.loads((out / "scan_length.json").read_text())
    run = result["runs"]["none"]
    assert run["overrides"] == ["model.positions=none", "model.encoder_positions=rotary"]
    assert 0.0 <= run["eos"]["test_exact"] <= 1.0 and run["train_eos"]["seconds"] > 0
    assert (out / "scan_length.md").read_text() == scan_out
    assert is_picture(out / "scan_length.png")

    assert res_out.splitlines()[0] == "| scheme | 32 px (trained) |"
    result = json.loads((out / "resolution_vit.json").read_text())
    assert 0.0 <= result["runs"]["rotary2d"]["test_acc"]["32"] <= 1.0
    # The evaluation ran through mmattn-eval with the data option and its size.
    assert (out / "resolution_vit" / "rotary2d" / "eval_32" / "metrics.json").is_file()
    assert is_picture(out / "resolution_vit.png")


def test_table_and_picture_from_results(tmp_path: Path) -> None:
    results = {
        "split": "add_jump",
        "variants": ["eos", "no_eos"],
        "runs": {
            "rotary": {
                "eos": {"test_exact": 0.1, "val_exact": 0.99},
                "no_eos": {"test_exact": 0.5, "val_exact": 0.98},
                "minutes": 7.5,
            },
            "t5": {"eos": {"test_exact": 0.25, "val_exact": 0.97}, "minutes": 3.0},
        },
    }
    table = position_lab.markdown(results)
    assert table.splitlines()[2] == "| rotary | 0.100 | 0.500 | 0.990 | 7.5 |"
    assert table.splitlines()[3] == "| t5 | 0.250 |  | 0.970 | 3.0 |"  # a variant not run stays empty
    assert position_lab.write_outputs(results, tmp_path) == tmp_path / "scan_add_jump.md"
    assert json.loads((tmp_path / "scan_add_jump.json").read_text()) == results
    assert is_picture(tmp_path / "scan_add_jump.png")
    with pytest.raises(SystemExit, match="unknown \\['nope'\\]"):
        position_lab.run_scan(position_lab.parse_args(["scan", "--schemes", "nope", "--out", str(tmp_path)]))


def test_resolution_table_and_merging_results_of_separate_jobs(tmp_path: Path) -> None:
    part = {"family": "vit", "experiment": "vision_demo", "base": 32, "unit": "px", "sizes": [24, 32, 48]}
    first = {**part, "runs": {"learned": {"test_acc": {"24": 0.5, "32": 0.96, "48": 0.7}}}}
    second = {**part, "runs": {"rotary2d": {"test_acc": {"24": 0.6, "32": 0.95}}}}
    files = []
    for name, results in (("a", first), ("b", second)):
        files.append(tmp_path / name / "resolution_vit.json")
        files[-1].parent.mkdir()
        files[-1].write_text(json.dumps(results))
    table = position_lab.merge(files, tmp_path / "all").read_text().splitlines()
    assert table[0] == "| scheme | 24 px | 32 px (trained) | 48 px |"
    assert table[2:] == ["| learned | 0.500 | 0.960 | 0.700 |", "| rotary2d | 0.600 | 0.950 |  |"]
    assert is_picture(tmp_path / "all" / "resolution_vit.png")
    other = tmp_path / "ast.json"
    other.write_text(json.dumps({**second, "family": "ast"}))
    with pytest.raises(SystemExit, match="holds family 'ast', the first file 'vit'"):
        position_lab.merge([files[0], other], tmp_path / "x")
