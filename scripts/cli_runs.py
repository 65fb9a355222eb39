"""What the benchmark scripts share: running mmattn's CLIs as a user does (one subprocess each), progress, plotting.

`position_lab.py` and `small_data.py` import it from this folder (scripts/ is no package: Python puts a script's own
folder on the path).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def log(msg: str) -> None:
    """Progress on stderr."""
    print(msg, file=sys.stderr, flush=True)


def run(cmd: list[str], env: dict[str, str], log_file: Path) -> float:
    """Run one CLI command, its output into `log_file`; return its wall time. Raises with the log's tail on failure."""
    start = time.perf_counter()
    with log_file.open("w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = log_file.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); see {log_file}:\n{tail}")
    return time.perf_counter() - start


def env_with_threads(threads: int | None) -> dict[str, str]:
    """The environment of every run: OMP_NUM_THREADS when asked."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def cli(name: str) -> str:
    """A console script of this environment."""
    return str(Path(sys.executable).parent / name)


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
