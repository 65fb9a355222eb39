"""Modality-free data helpers: demo-data creation, splits, samplers, collate."""

from mmattn.data.demo import GeneratedData as GeneratedData
from mmattn.data.demo import ensure_dataset as ensure_dataset
from mmattn.data.splits import stratified_split as stratified_split
from mmattn.data.classification import ClassificationDataModule as ClassificationDataModule
from mmattn.data.sampler import TokenBudgetBatchSampler as TokenBudgetBatchSampler
