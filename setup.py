"""Package discovery that pyproject.toml alone cannot express: the top-level configs/ ships as `mmattn.configs`."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["mmattn", "mmattn.*", "tasks", "tasks.*"]) + ["mmattn.configs"])
