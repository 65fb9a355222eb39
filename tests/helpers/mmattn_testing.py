"""Constants and helpers shared by the tests and their conftest files (tests/helpers is on pytest's pythonpath)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

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


# Tiny runs of each family's demo experiment (in-process and CLI tests share them).
TINY_SPEECH = [
    "experiment=speech_demo",
    "data.counts={train:24,valid:6,test:6}",
    "model.dim=32",
    "model.encoder_depth=1",
    "model.decoder_depth=1",
    "model.num_heads=2",
    "model.source.channels=8",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
]

TINY_LM = [
    "experiment=lm_demo",
    "model.dim=32",
    "model.depth=1",
    "model.num_heads=2",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "module.sample_eval.num_samples=8",
]

TINY_TRANSLATION = [
    "experiment=translation_demo",
    "model.dim=32",
    "model.encoder_depth=1",
    "model.decoder_depth=1",
    "model.num_heads=2",
    "data.max_tokens=2048",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "module.decoding.max_len_a=1.0",
    "module.decoding.max_len_b=4",
]

# The DTMF sizes must be the same in every test that uses the session data directory (the demo is written once).
TINY_AUDIO = [
    "experiment=audio_demo",
    "data.train_per_class=3",
    "data.val_per_class=2",
    "data.test_per_class=1",
    "data.batch_size=8",
    "model.dim=32",
    "model.depth=1",
    "model.num_heads=2",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
]

# The dual encoder on the speech demo's clips (the same counts as TINY_SPEECH: the data is written once per session).
TINY_CLAP = [
    "experiment=clap_demo",
    "data.counts={train:24,valid:6,test:6}",
    "data.batch_size=8",
    "model.embed_dim=16",
    "model.towers.audio.dim=32",
    "model.towers.audio.depth=1",
    "model.towers.audio.num_heads=2",
    "model.towers.audio.embed.channels=8",
    "model.towers.text.dim=32",
    "model.towers.text.depth=1",
    "model.towers.text.num_heads=2",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
]

# The demo experiment of each model family, tiny (the vision demo is the default experiment).
TINY_CAPTION = [
    "experiment=caption_demo",
    "data.num_train=48",
    "data.num_val=16",
    "data.num_test=16",
    "data.batch_size=16",
    "model.dim=32",
    "model.encoder_depth=1",
    "model.decoder_depth=1",
    "model.num_heads=2",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "module.decoding.max_len_b=6",
]

# The dual encoder on the scenes (the same sizes as TINY_CAPTION: the data is written once per session).
TINY_CLIP = [
    "experiment=clip_demo",
    "data.num_train=48",
    "data.num_val=16",
    "data.num_test=16",
    "data.batch_size=16",
    "model.embed_dim=16",
    "model.towers.image.dim=32",
    "model.towers.image.depth=1",
    "model.towers.image.num_heads=2",
    "model.towers.text.dim=32",
    "model.towers.text.depth=1",
    "model.towers.text.num_heads=2",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
]

TINY_FUSION = [
    "experiment=fusion_demo",
    "model=fusion_demo",  # members from scratch: no vision or audio demo run needed
    "data.pairs={train:100,val:100,test:100}",  # every (shape, key) cell once
    "data.image.train_per_class=2",
    "data.image.val_per_class=1",
    "data.image.test_per_class=1",
    "data.audio.train_per_class=1",
    "data.audio.val_per_class=1",
    "data.audio.test_per_class=1",
    "data.batch_size=8",
    "model.dim=32",
    "model.depth=1",
    "model.num_heads=2",
    "trainer.max_epochs=1",
    "module.scheduler.warmup_epochs=0",
    "module.scheduler.warmup_steps=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
]

# The three demos' data at the sizes above (written once per session), through one tiny shared encoder.
TINY_MULTITASK = [
    "experiment=multitask_demo",
    "tasks.shapes.data.train_per_class=4",
    "tasks.shapes.data.val_per_class=2",
    "tasks.shapes.data.test_per_class=2",
    "tasks.shapes.data.batch_size=8",
    "tasks.dtmf.data.train_per_class=3",
    "tasks.dtmf.data.val_per_class=2",
    "tasks.dtmf.data.test_per_class=1",
    "tasks.dtmf.data.batch_size=8",
    "tasks.scan.data.max_tokens=2048",
    "tasks.scan.model.decoder_depth=1",
    "tasks.scan.module.decoding.max_len_a=1.0",
    "tasks.scan.module.decoding.max_len_b=4",
    "core.dim=32",
    "core.depth=1",
    "core.num_heads=2",
    "data.steps_per_epoch=6",
    "module.scheduler.warmup_fraction=0",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
]

FAMILIES = {
    "vision": TINY_TRAIN,
    "audio": TINY_AUDIO,
    "lm": TINY_LM,
    "translation": TINY_TRANSLATION,
    "speech": TINY_SPEECH,
    "caption": TINY_CAPTION,
    "fusion": TINY_FUSION,
    "clap": TINY_CLAP,
    "clip": TINY_CLIP,
    "multitask": TINY_MULTITASK,
}


def compose_config(config_name: str, overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """Compose `configs/<config_name>.yaml` with `overrides`, the way the CLI does, without running a job."""
    GlobalHydra.instance().clear()
    with initialize_config_module("mmattn.configs", version_base="1.3"):
        return compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


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


def metric_values(csv_path: Path, key: str) -> dict[int, float]:
    """The values of one metric column of a CSVLogger file by step (the CSV keeps a float's every digit)."""
    with open(csv_path, newline="") as f:
        return {int(row["step"]): float(row[key]) for row in csv.DictReader(f) if row.get(key, "") != ""}


def is_picture(path) -> bool:
    """Whether `path` is a valid PNG file whose pixels are not all alike (a picture with content)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        img.verify()
        kind = img.format
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    return kind == "PNG" and float(pixels.std()) > 5


class IdTokenizer:
    """The tokenizer Seq2SeqModule needs, for nets tested on raw ids: pad 0, bos 1, eos 2; a row decodes to its ids
    before EOS, space-separated."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, tgt_vocab_size: int) -> None:
        self.tgt_vocab_size = tgt_vocab_size

    def decode_tgt_batch(self, rows: list[list[int]]) -> list[str]:
        """Ids before the first EOS (padding dropped), as text."""
        return [" ".join(str(i) for i in row[: row.index(self.eos_id)] if i != self.pad_id) for row in rows]
