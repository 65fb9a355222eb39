"""Generic compositions of the core layers."""

from .classifier import EncoderClassifier

__all__ = ["EncoderClassifier"]
