"""Generic LightningModules, callbacks and optimizer/scheduler builders shared by every task."""

from mmattn.lit.callbacks import CONFIG_KEY, ConfigInCheckpoint, NonFiniteLossError, NonFiniteLossGuard
from mmattn.lit.classification import ClassificationModule
from mmattn.lit.optim import build_scheduler, resolve_warmup_steps, warmup_cosine_factor, weight_decay_groups

__all__ = [
    "CONFIG_KEY",
    "ClassificationModule",
    "ConfigInCheckpoint",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "build_scheduler",
    "resolve_warmup_steps",
    "warmup_cosine_factor",
    "weight_decay_groups",
]
