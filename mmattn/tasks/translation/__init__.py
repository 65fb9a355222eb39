"""Translation adapter: parallel text, the source/target BPE tokenizer, token-budget batches, the SCAN demo (its
grammar lives in `mmattn.tasks.text.scan`)."""

from mmattn.tasks.text.scan import interpret, make_scan, scan_pairs

from .datamodule import ParallelTextDataset, SCANDataModule, TranslationDataModule, collate_pairs
from .tokenizer import Seq2SeqTokenizer

__all__ = [
    "ParallelTextDataset",
    "SCANDataModule",
    "Seq2SeqTokenizer",
    "TranslationDataModule",
    "collate_pairs",
    "interpret",
    "make_scan",
    "scan_pairs",
]
