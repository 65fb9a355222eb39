"""Shared fixtures: Hydra configs composed from `mmattn.configs`, on CPU, tiny, with outputs and data under tmp."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from mmattn_testing import FAMILIES, HELPERS, TINY_TRAIN, cli_path, compose_config, metric_steps
from omegaconf import DictConfig, open_dict


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    """`compose_config` as a fixture (test modules cannot import conftest)."""
    return compose_config


@pytest.fixture
def tiny_train() -> list[str]:
    """Overrides that make a train run tiny (also for CLI subprocesses)."""
    return list(TINY_TRAIN)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory for the session, so the shapes demo is generated once."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def env_data_dir(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point MMATTN_DATA_DIR (read by configs/paths/default.yaml) at the session data directory."""
    monkeypatch.setenv("MMATTN_DATA_DIR", str(data_dir))
    return data_dir


@pytest.fixture
def make_cfg(env_data_dir: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """Factory of tiny CPU train configs whose run directory is `tmp_path/run` (or `output_dir`)."""

    def make(*overrides: str, output_dir: Path | None = None, config_name: str = "train") -> DictConfig:
        tiny = TINY_TRAIN if config_name == "train" else []
        cfg = compose_config(config_name, [*tiny, *overrides])
        with open_dict(cfg):
            # Replaces ${hydra:runtime.output_dir}, which only resolves inside a running Hydra job.
            cfg.paths.output_dir = str(output_dir or tmp_path / "run")
            cfg.paths.log_dir = str(tmp_path / "logs")
        return cfg

    return make


@pytest.fixture
def run_cli(env_data_dir: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run a console script with arguments in `cwd`; return the finished process (stdout+stderr captured)."""

    def run(name: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
        # What a user sees: errors from mmattn's own checks as one line (tracebacks only for the unexpected).
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("MMATTN_RUN_DIR", None)
        return subprocess.run(
            [cli_path(name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )

    return run


@pytest.fixture
def probe_env(env_data_dir: Path) -> dict[str, str]:
    """Environment for CLI subprocesses that use the callbacks of tests/helpers/mmattn_probes.py."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MMATTN_RUN_DIR", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HELPERS), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def csv_steps() -> Callable[[Path], dict[str, list[int]]]:
    """`metric_steps` as a fixture."""
    return metric_steps


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Callable[[str], Path]:
    """`trained_run(family)`: the run directory of a tiny finished mmattn-train run of that family's demo, trained
    in-process once per session and shared (tests must not change it)."""
    from mmattn.cli.train import train

    runs: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in runs:
            root = tmp_path_factory.mktemp(f"run_{family}")
            cfg = compose_config("train", [*FAMILIES[family], f"paths.data_dir={data_dir}"])
            with open_dict(cfg):
                cfg.paths.output_dir = str(root / "run")
                cfg.paths.log_dir = str(root / "logs")
            train(cfg)
            runs[family] = root / "run"
        return runs[family]

    return get
