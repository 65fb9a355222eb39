"""Tiny in-memory net, data and trainer factories for the mmattn.lit tests (no Hydra, no files)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mmattn.data import train_loader
from mmattn.lit import ClassificationModule


class TinyNet(nn.Module):
    """Flatten + LayerNorm + linear: any real nn.Module works; the module knows nothing about images."""

    def __init__(self, num_classes: int = 10, in_features: int = 3 * 4 * 4) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.norm = nn.LayerNorm(in_features)
        self.head = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(x.flatten(1)))


class TinyData(pl.LightningDataModule):
    """Random 3x4x4 "images" with labels; exposes `num_classes` like the task datamodules."""

    def __init__(self, num_classes: int = 10, n: int = 40, batch_size: int = 8) -> None:
        super().__init__()
        self.num_classes = num_classes
        generator = torch.Generator().manual_seed(0)
        self.dataset = TensorDataset(
            torch.randn(n, 3, 4, 4, generator=generator), torch.randint(0, num_classes, (n,), generator=generator)
        )
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return train_loader(self.dataset, self.trainer, batch_size=self.batch_size, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size)

    test_dataloader = val_dataloader


@pytest.fixture
def tiny_net() -> type[TinyNet]:
    """The TinyNet class."""
    return TinyNet


@pytest.fixture
def tiny_data() -> type[TinyData]:
    """The TinyData class."""
    return TinyData


@pytest.fixture
def make_module() -> Callable[..., ClassificationModule]:
    """ClassificationModule over a TinyNet, AdamW lr 1e-2 unless `optimizer` is given."""

    def make(num_classes: int = 10, **kwargs) -> ClassificationModule:
        kwargs.setdefault("optimizer", functools.partial(torch.optim.AdamW, lr=1e-2))
        return ClassificationModule(TinyNet(num_classes), num_classes, **kwargs)

    return make


@pytest.fixture
def make_trainer(tmp_path: Path) -> Callable[..., pl.Trainer]:
    """A quiet 1-epoch CPU Trainer under tmp_path; keyword arguments override the defaults."""

    def make(**kwargs) -> pl.Trainer:
        defaults = dict(
            default_root_dir=tmp_path,
            accelerator="cpu",
            devices=1,
            max_epochs=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        return pl.Trainer(**{**defaults, **kwargs})

    return make
