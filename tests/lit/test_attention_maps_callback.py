"""callbacks=attention_maps: a real training run logs attention figures of a fixed validation batch to TensorBoard,
every N epochs, and says what to add when no TensorBoard logger is there."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mmattn.cli.train import train
from mmattn.lit import AttentionMaps


def _images(run: Path) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for events in sorted((run / "tensorboard" / "version_0").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"images": 0})
        acc.Reload()
        for tag in acc.Tags()["images"]:
            found.setdefault(tag, []).extend(e.step for e in acc.Images(tag))
    return found


def test_figures_reach_tensorboard_every_n_epochs(make_cfg, tmp_path: Path) -> None:
    overrides = [
        "callbacks=attention_maps",
        "callbacks.attention_maps.every_n_epochs=2",
        "callbacks.attention_maps.num_samples=2",
        "logger=tensorboard",
        "trainer.max_epochs=4",
    ]
    train(make_cfg(*overrides))
    images = _images(tmp_path / "run")
    assert set(images) == {"attention/attention_0", "attention/heads_0", "attention/attention_1", "attention/heads_1"}
    # Epochs 2 and 4 of 2 steps each (limit_train_batches=2): drawn at global steps 4 and 8 only.
    assert images["attention/attention_0"] == [4, 8]


def test_without_tensorboard_it_warns_and_options_are_checked(make_cfg) -> None:
    with pytest.warns(UserWarning, match="logger=tensorboard"):
        train(make_cfg("callbacks=attention_maps", "logger=csv"))
    with pytest.raises(ValueError, match="must be >= 1"):
        AttentionMaps(every_n_epochs=0)
