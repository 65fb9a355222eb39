"""Speech test data shared by the datamodule and shard tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

RATE = 16000
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


def make_librispeech(root: Path) -> None:
    """A small tree in LibriSpeech's layout under `root`: 2 train speakers, 1 dev, 1 test, 3 utterances each (tones)."""
    rng = np.random.default_rng(5)
    for subset, speakers in (("train-clean-100", (19, 26)), ("dev-clean", (84,)), ("test-clean", (121,))):
        for speaker in speakers:
            chapter = root / subset / str(speaker) / "198"
            chapter.mkdir(parents=True)
            lines = []
            for i in range(3):
                uid = f"{speaker}-198-{i:04d}"
                seconds = float(rng.uniform(0.4, 1.2))
                clip = np.random.default_rng(int(rng.integers(1 << 30)))
                t = np.arange(int(seconds * RATE)) / RATE
                wave = 0.2 * np.sin(2 * np.pi * clip.uniform(200, 800) * t) + 0.01 * clip.standard_normal(t.size)
                sf.write(chapter / f"{uid}.flac", wave, RATE)
                lines.append(f"{uid} {' '.join(rng.choice(WORDS, 2).tolist()).upper()}")
            (chapter / f"{speaker}-198.trans.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def librispeech() -> Callable[[Path], None]:
    """`make_librispeech` as a fixture."""
    return make_librispeech
