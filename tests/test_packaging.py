"""The wheel ships the config tree, so the CLI works from a non-editable install and from any directory."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_packages_and_configs(tmp_path):
    # setuptools reuses build/lib between builds, and a stale copy there would hide a file the build now misses
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-v",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("mmattn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").rglob("*.yaml")}
    assert configs, "no yaml files under configs/"
    prefix = "mmattn/configs/"
    shipped = {n.removeprefix(prefix) for n in names if n.startswith(prefix) and n.endswith(".yaml")}
    assert shipped == configs, f"wheel configs differ: missing {configs - shipped}, extra {shipped - configs}"
    # A clean build log: every config folder is a declared package and the license is an SPDX string.
    log = result.stdout + result.stderr
    assert "absent from the `packages` configuration" not in log and "License classifiers" not in log
    assert "project.license` as a TOML table is deprecated" not in log
    for module in ("mmattn/nn/attention.py", "mmattn/cli/train.py", "mmattn/tasks/vision/vit.py"):
        assert module in names
    # No generic top-level package besides mmattn: a `tasks` package would collide with others in site-packages.
    assert {n.split("/")[0] for n in names if n.endswith(".py")} == {"mmattn"}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "mmattn-train = mmattn.cli.train:main" in text and "mmattn-eval = mmattn.cli.eval:main" in text
    assert "mmattn-translate = mmattn.cli.translate:main" in text
    assert "mmattn-generate = mmattn.cli.generate:main" in text
    assert "mmattn-transcribe = mmattn.cli.transcribe:main" in text
    assert "mmattn-viz = mmattn.cli.viz:main" in text
    assert "mmattn-predict = mmattn.cli.predict:main" in text


def test_the_core_never_imports_the_adapters() -> None:
    # DESIGN.md's layering: mmattn's core reaches the modality adapters (mmattn/tasks) only through config targets,
    # mmattn/nn imports nothing of mmattn but itself, and the inference recipes sit above the modules they use.
    import ast

    core = [p for p in (ROOT / "mmattn").rglob("*.py") if "tasks" not in p.relative_to(ROOT / "mmattn").parts]
    assert len(core) > 40
    for path in core:
        names = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
        assert not [n for n in names if n.startswith("mmattn.tasks")], f"{path} imports an adapter"
        if "nn" == path.parent.name:
            assert not [n for n in names if n.startswith("mmattn.") and not n.startswith("mmattn.nn")], path
        if path.parent.name in ("lit", "models", "data", "nn"):
            assert "mmattn.inference" not in names, f"{path} imports the recipes above it"
