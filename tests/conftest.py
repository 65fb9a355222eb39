"""Shared fixtures: Hydra configs composed from `mmattn.configs`, on CPU, tiny, with outputs and data under tmp."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from mmattn_testing import HELPERS, TINY_TRAIN, cli_path, metric_steps
from omegaconf import DictConfig, open_dict


def compose_config(config_name: str, overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """Compose `configs/<config_name>.yaml` with `overrides`, the way the CLI does, without running a job."""
    GlobalHydra.instance().clear()
    with initialize_config_module("mmattn.configs", version_base="1.3"):
        return compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


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
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
        env.pop("MMATTN_RUN_DIR", None)
        return subprocess.run(
            [cli_path(name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )

    return run


@pytest.fixture
def probe_env(env_data_dir: Path) -> dict[str, str]:
    """Environment for CLI subprocesses that use the callbacks of tests/helpers/mmattn_probes.py."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    env.pop("MMATTN_RUN_DIR", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HELPERS), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def csv_steps() -> Callable[[Path], dict[str, list[int]]]:
    """`metric_steps` as a fixture."""
    return metric_steps
