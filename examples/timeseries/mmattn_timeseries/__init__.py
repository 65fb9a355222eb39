"""Multichannel sensor sequences as an mmattn modality: an input embedding, datamodules and configs for three model
families (a classifier, a contrastive sensor <-> text dual encoder, a sensor + text fusion model)."""

from .claims import ActivityClaimsDataModule
from .data import ACTIVITIES, ActivityDataModule, make_activities
from .embed import SensorPatchEmbed
from .text import ACTIVITY_TEXTS, ActivityTextDataModule

__all__ = [
    "ACTIVITIES",
    "ACTIVITY_TEXTS",
    "ActivityClaimsDataModule",
    "ActivityDataModule",
    "ActivityTextDataModule",
    "SensorPatchEmbed",
    "make_activities",
]
