"""Audio adapter: reading and features, spectrogram patches, AST, audio datamodules, the built-in DTMF demo."""

from ._hf import ast_from_hf_hub
from .ast import AST, SpectrogramPatchEmbed, SpectrogramRenderer
from .datamodules import (
    AudioClassificationDataModule,
    AudioFolderDataModule,
    DTMFDataModule,
    ESC50DataModule,
    SpeechCommandsDataModule,
)
from .dtmf import DTMF_CLASSES, make_dtmf
from .features import AST_MEAN, AST_STD, AudioFeatures, KaldiFbank, LogMelSpectrogram, SpecAugment

__all__ = [
    "AST",
    "ast_from_hf_hub",
    "SpectrogramPatchEmbed",
    "SpectrogramRenderer",
    "AudioClassificationDataModule",
    "AudioFolderDataModule",
    "DTMFDataModule",
    "ESC50DataModule",
    "SpeechCommandsDataModule",
    "DTMF_CLASSES",
    "make_dtmf",
    "AST_MEAN",
    "AST_STD",
    "AudioFeatures",
    "KaldiFbank",
    "LogMelSpectrogram",
    "SpecAugment",
]
