"""The wheel ships the config tree, so the CLI works from a non-editable install and from any directory."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_packages_and_configs(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("mmattn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").rglob("*.yaml")}
    assert configs, "no yaml files under configs/"
    missing = {c for c in configs if f"mmattn/configs/{c}" not in names}
    assert not missing, f"configs missing from the wheel: {sorted(missing)}"
    for module in ("mmattn/nn/attention.py", "mmattn/cli/train.py", "tasks/vision/vit.py"):
        assert module in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "mmattn-train = mmattn.cli.train:main" in text and "mmattn-eval = mmattn.cli.eval:main" in text
