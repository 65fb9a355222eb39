"""Generic LightningModules, callbacks and optimizer/scheduler builders shared by every task."""

from mmattn.lit.attention_maps import AttentionMaps
from mmattn.lit.callbacks import (
    CONFIG_KEY,
    ConfigInCheckpoint,
    LastCheckpoint,
    NonFiniteLossError,
    NonFiniteLossGuard,
)
from mmattn.lit.checkpoint_io import AtomicCheckpointIO, atomic_write, replace_dir
from mmattn.lit.classification import ClassificationModule
from mmattn.lit.contrastive import ContrastiveModule
from mmattn.lit.language_model import LanguageModelModule
from mmattn.lit.loggers import ResumableCSVLogger, ResumableTensorBoardLogger
from mmattn.lit.multitask import MultiTaskModule
from mmattn.lit.optim import (
    build_scheduler,
    resolve_warmup_steps,
    scale_lr,
    warmup_cosine_factor,
    weight_decay_groups,
)
from mmattn.lit.preemption import Preempted, PreemptionCheckpoint
from mmattn.lit.profile import RunProfile
from mmattn.lit.seq2seq import TOKENIZER_KEY, Seq2SeqModule, tokenizer_from_checkpoint
from mmattn.lit.strategies import FSDPStrategy

__all__ = [
    "AtomicCheckpointIO",
    "AttentionMaps",
    "FSDPStrategy",
    "LanguageModelModule",
    "LastCheckpoint",
    "MultiTaskModule",
    "Preempted",
    "PreemptionCheckpoint",
    "RunProfile",
    "ResumableCSVLogger",
    "ResumableTensorBoardLogger",
    "atomic_write",
    "replace_dir",
    "scale_lr",
    "CONFIG_KEY",
    "ClassificationModule",
    "ContrastiveModule",
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
