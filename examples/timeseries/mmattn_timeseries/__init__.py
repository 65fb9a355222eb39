"""Multichannel sensor sequences as an mmattn modality: an input embedding, a datamodule and configs."""

from .data import ACTIVITIES, ActivityDataModule, make_activities
from .embed import SensorPatchEmbed

__all__ = ["ACTIVITIES", "ActivityDataModule", "SensorPatchEmbed", "make_activities"]
