"""Translation adapter: parallel text, the source/target BPE tokenizer, token-budget batches, the SCAN demo (its
grammar lives in `tasks.text.scan`)."""

from tasks.text.scan import interpret, make_scan, scan_pairs

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
