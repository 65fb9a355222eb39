"""Text modality: the BPE and byte tokenizers shared by every text task, plain-text language-model data, and the
SCAN grammar (the translation and language-model demos)."""

from .datamodule import PackedBlocks, SCANCommandsDataModule, TextFolderDataModule, is_scan_command, make_scan_commands
from .embedding import TextEmbedding, TextRenderer
from .encode import encode_eos, encode_texts, pad_ids
from .scan import interpret, make_scan, scan_pairs
from .tokenizer import TextTokenizer
from .tokenizer_dir import TokenizerInRunDir

__all__ = [
    "PackedBlocks",
    "SCANCommandsDataModule",
    "TextEmbedding",
    "TextFolderDataModule",
    "TextRenderer",
    "TextTokenizer",
    "TokenizerInRunDir",
    "encode_eos",
    "encode_texts",
    "interpret",
    "is_scan_command",
    "make_scan",
    "make_scan_commands",
    "pad_ids",
    "scan_pairs",
]
