"""Modality-free data helpers: demo-data creation, splits, samplers, collate."""

from mmattn.data.classification import ClassificationDataModule as ClassificationDataModule
from mmattn.data.demo import GeneratedData as GeneratedData
from mmattn.data.demo import ensure_dataset as ensure_dataset
from mmattn.data.mixing import MixedLoader as MixedLoader
from mmattn.data.multitask import MultiTaskDataModule as MultiTaskDataModule
from mmattn.data.resumable import ResumableDataLoader as ResumableDataLoader
from mmattn.data.resumable import train_loader as train_loader
from mmattn.data.sampler import FixedOrderTokenBudgetBatchSampler as FixedOrderTokenBudgetBatchSampler
from mmattn.data.sampler import TokenBudgetBatchSampler as TokenBudgetBatchSampler
from mmattn.data.sampler import TokenBudgetLoaders as TokenBudgetLoaders
from mmattn.data.sampler import token_budget_loader as token_budget_loader
from mmattn.data.sampler import token_budget_shard as token_budget_shard
from mmattn.data.skipping import BadFile as BadFile
from mmattn.data.skipping import SkippingDataLoader as SkippingDataLoader
from mmattn.data.skipping import collate_skipping as collate_skipping
from mmattn.data.splits import stratified_split as stratified_split
