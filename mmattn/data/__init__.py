"""Modality-free data helpers: demo-data creation, samplers, collate."""

from mmattn.data.demo import ensure_dataset as ensure_dataset
