"""Package discovery that pyproject.toml alone cannot express: the top-level configs/ ships as `mmattn.configs`, and
our Hydra launcher as `hydra_plugins.mmattn_launcher`."""

from pathlib import Path

from setuptools import find_packages, setup

# Every config group folder is listed as a package of its own: setuptools otherwise warns once per folder that
# data files sit in a directory it was not told about.
config_packages = ["mmattn.configs"] + sorted(
    "mmattn.configs." + ".".join(p.relative_to("configs").parts)
    for p in Path("configs").rglob("*")
    if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.yaml"))
)

# Hydra finds launchers only in its `hydra_plugins` namespace package (no __init__.py, shared with other plugins).
plugin_packages = ["hydra_plugins.mmattn_launcher"]

setup(packages=find_packages(include=["mmattn", "mmattn.*"]) + plugin_packages + config_packages)
