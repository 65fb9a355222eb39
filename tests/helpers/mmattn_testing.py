"""Constants and helpers shared by the tests and their conftest files (tests/helpers is on pytest's pythonpath)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

HELPERS = Path(__file__).resolve().parent

# Small enough for a few seconds per run on 2 cores. The shapes sizes must be the same in every test: the demo data
# is generated once per session into one directory and refuses to be reused with other settings.
TINY_DATA = [
    "data.train_per_class=4",
    "data.val_per_class=2",
    "data.test_per_class=2",
    "data.batch_size=8",
    "data.num_workers=0",
]
TINY_TRAIN = [
    *TINY_DATA,
    "model.dim=32",
    "model.depth=1",
    "model.num_heads=2",
    "module.scheduler.warmup_epochs=0",
    "module.scheduler.warmup_steps=1",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
]


def cli_path(name: str) -> str:
    """Path of an installed console script of this venv (`mmattn-train`, `mmattn-eval`)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"console script {name} is not installed; run `pip install -e .`")
    return str(path)


def metric_steps(csv_path: Path) -> dict[str, list[int]]:
    """For every metric column of a CSVLogger file, the steps of its rows, in file order."""
    steps: dict[str, list[int]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key not in ("step", "epoch") and value != "":
                    steps.setdefault(key, []).append(int(row["step"]))
    return steps


def is_picture(path) -> bool:
    """Whether `path` is a valid PNG file whose pixels are not all alike (a picture with content)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        img.verify()
        kind = img.format
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    return kind == "PNG" and float(pixels.std()) > 5
