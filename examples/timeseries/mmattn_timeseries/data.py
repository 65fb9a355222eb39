"""Synthetic accelerometer activities, written once as .npz files and read by a ClassificationDataModule.

Six activities of a 3-axis accelerometer at 50 Hz in windows of 2.56 s (128 samples, the window of the UCI HAR
dataset): each a gait-like pattern with its own rhythm, shape and gravity, worn in a random orientation (any heading,
up to 25 degrees of tilt) with random tempo, strength and sensor noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from mmattn.data import ClassificationDataModule, ensure_dataset

ACTIVITIES = ("cycling", "jumping", "running", "sitting", "stairs", "walking")
RATE_HZ = 50
WINDOW = 128
GRAVITY = 9.81
GENERATOR_VERSION = "2"


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """How the phone sits in the pocket: any heading (a turn about the vertical) and up to 25 degrees of tilt."""
    yaw, tilt, axis = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(0, 25)), rng.uniform(0, 2 * np.pi)
    c, s = np.cos(yaw), np.sin(yaw)
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    # Tilt: a rotation by `tilt` about a horizontal axis at angle `axis` (Rodrigues' formula).
    k = np.array([np.cos(axis), np.sin(axis), 0.0])
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    lean = np.eye(3) + np.sin(tilt) * cross + (1 - np.cos(tilt)) * cross @ cross
    return lean @ turn


def _window(activity: str, rng: np.random.Generator) -> np.ndarray:
    """One window [3, WINDOW] of `activity` in the body frame (z up), rotated into a random sensor frame."""
    t = np.arange(WINDOW) / RATE_HZ
    phase = rng.uniform(0, 2 * np.pi)
    tempo = rng.uniform(0.85, 1.15)
    strength = rng.uniform(0.7, 1.3)
    body = np.zeros((3, WINDOW))
    body[2] = GRAVITY
    if activity == "sitting":
        body[0] += 0.2 * rng.standard_normal()  # a slight lean, otherwise still
    elif activity in ("walking", "stairs", "running"):
        f = {"walking": 1.8, "stairs": 1.4, "running": 2.8}[activity] * tempo
        a = {"walking": 2.0, "stairs": 2.5, "running": 6.0}[activity] * strength
        step = 2 * np.pi * f * t + phase
        body[2] += a * (np.sin(step) + 0.4 * np.sin(2 * step))  # heel strike and its harmonic
        body[0] += 0.5 * a * np.sin(step / 2)  # sway at half the step rate
        if activity == "stairs":
            body[1] += 0.4 * a * np.sin(step + np.pi / 3) + 1.5  # forward lean of the climb
    elif activity == "jumping":
        period = 1 / (1.3 * tempo)
        landing = np.mod(t + phase / (2 * np.pi) * period, period) < 0.12
        body[2] = np.where(landing, GRAVITY + 18 * strength, 0.5)  # free flight, then a hard landing
    elif activity == "cycling":
        crank = 2 * np.pi * 1.1 * tempo * t + phase
        body[0] += 1.2 * strength * np.sin(crank)
        body[1] += 1.2 * strength * np.cos(crank)
        body[2] += 0.3 * strength * np.sin(2 * crank)
    else:
        raise ValueError(f"unknown activity {activity!r}; choose one of {list(ACTIVITIES)}")
    noise = rng.uniform(0.1, 0.6) * rng.standard_normal((3, WINDOW))
    return (_rotation(rng) @ body + noise).astype(np.float32)


def make_activities(root: str | Path, *, per_class: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write `root/{train,val,test}.npz` (x [N, 3, 128] float32, y [N] int64) once; return `root`."""
    counts = dict(per_class or {"train": 300, "val": 60, "test": 60})
    version = f"{GENERATOR_VERSION} {sorted(counts.items())} seed={seed}"

    def generate(tmp: Path) -> None:
        for s, (split, n) in enumerate(sorted(counts.items())):
            xs, ys = [], []
            for label, activity in enumerate(ACTIVITIES):
                for i in range(n):
                    xs.append(_window(activity, np.random.default_rng([seed, s, label, i])))
                    ys.append(label)
            np.savez(tmp / f"{split}.npz", x=np.stack(xs), y=np.asarray(ys, dtype=np.int64))

    return ensure_dataset(root, generate, name="activities", version=version)


def load_windows(
    root: str | Path, *, per_class: dict[str, int] | None = None, seed: int = 0
) -> dict[str, tuple[Tensor, Tensor]]:
    """Every split of the activities under `root` (written first if missing) as (windows [N, 3, 128], labels [N]),
    standardised per channel with the training split's statistics."""
    make_activities(root, per_class=per_class, seed=seed)
    splits = {s: np.load(Path(root) / f"{s}.npz") for s in ("train", "val", "test")}
    x_train = splits["train"]["x"]
    mean = x_train.mean(axis=(0, 2), keepdims=True)
    std = x_train.std(axis=(0, 2), keepdims=True) + 1e-6
    return {s: (torch.from_numpy((d["x"] - mean) / std), torch.from_numpy(d["y"])) for s, d in splits.items()}


class ActivityDataModule(ClassificationDataModule):
    """The synthetic activities as `(window [3, 128], label)` batches, standardised per channel with the training
    split's statistics.

    Args:
        root: Data directory; the files go to `root/activities/`.
        per_class: Windows per class and split, {"train": n, "val": n, "test": n}.
        seed: Seed of the synthesis.
        **kwargs: Options of `mmattn.data.ClassificationDataModule` (batch_size, num_workers, num_classes, ...).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        per_class: dict[str, int] | None = None,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser() / "activities"
        self.per_class, self.seed = per_class, seed

    def prepare_data(self) -> None:
        """Write the windows once (process-safe)."""
        make_activities(self.root, per_class=self.per_class, seed=self.seed)

    def _load(self) -> tuple[TensorDataset, TensorDataset, TensorDataset, list[str]]:
        splits = load_windows(self.root, per_class=self.per_class, seed=self.seed)
        train, val, test = (TensorDataset(*splits[s]) for s in ("train", "val", "test"))
        return train, val, test, list(ACTIVITIES)
