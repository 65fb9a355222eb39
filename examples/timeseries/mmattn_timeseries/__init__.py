"""Multichannel sensor sequences as an mmattn modality: an input embedding, datamodules and configs for two model
families (a classifier, a contrastive sensor <-> text dual encoder)."""

from .data import ACTIVITIES, ActivityDataModule, make_activities
from .embed import SensorPatchEmbed
from .text import ACTIVITY_TEXTS, ActivityTextDataModule

__all__ = [
    "ACTIVITIES",
    "ACTIVITY_TEXTS",
    "ActivityDataModule",
    "ActivityTextDataModule",
    "SensorPatchEmbed",
    "make_activities",
]
