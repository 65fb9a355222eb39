"""Generic LightningModules, callbacks and optimizer/scheduler builders shared by every task."""

from mmattn.lit.callbacks import CONFIG_KEY, ConfigInCheckpoint, NonFiniteLossError, NonFiniteLossGuard
from mmattn.lit.classification import ClassificationModule
from mmattn.lit.optim import build_scheduler, resolve_warmup_steps, warmup_cosine_factor, weight_decay_groups
from mmattn.lit.seq2seq import TOKENIZER_KEY, Seq2SeqModule, tokenizer_from_checkpoint

__all__ = [
    "CONFIG_KEY",
    "ClassificationModule",
    "Seq2SeqModule",
    "TOKENIZER_KEY",
    "tokenizer_from_checkpoint",
    "ConfigInCheckpoint",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "build_scheduler",
    "resolve_warmup_steps",
    "warmup_cosine_factor",
    "weight_decay_groups",
]
