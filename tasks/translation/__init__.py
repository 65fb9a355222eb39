"""Translation adapter: parallel text, BPE tokenizer, token-budget batches, the built-in SCAN demo."""

from .datamodule import ParallelTextDataset, SCANDataModule, TranslationDataModule, collate_pairs
from .scan import interpret, make_scan, scan_pairs
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
