"""Package discovery that pyproject.toml alone cannot express: the top-level configs/ ships as `mmattn.configs`."""

from pathlib import Path

from setuptools import find_packages, setup

# Every config group folder is listed as a package of its own: setuptools otherwise warns once per folder that
# data files sit in a directory it was not told about.
config_packages = ["mmattn.configs"] + sorted(
    "mmattn.configs." + ".".join(p.relative_to("configs").parts)
    for p in Path("configs").rglob("*")
    if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.yaml"))
)

setup(packages=find_packages(include=["mmattn", "mmattn.*"]) + config_packages)
