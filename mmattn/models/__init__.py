"""Generic compositions of the core layers."""

from .classifier import EncoderClassifier
from .decoder_only import DecoderOnly
from .decoding import beam_search, greedy_decode
from .dual_encoder import DualEncoder
from .encoder_decoder import EncoderDecoder, TokenEmbedding
from .fusion import EncoderTokens, FusionEncoder, encoder_tokens_from_checkpoint
from .multitask import MultiTaskNet
from .sampling import filter_logits, sample_tokens

__all__ = [
    "DecoderOnly",
    "DualEncoder",
    "EncoderClassifier",
    "EncoderDecoder",
    "EncoderTokens",
    "FusionEncoder",
    "MultiTaskNet",
    "TokenEmbedding",
    "beam_search",
    "encoder_tokens_from_checkpoint",
    "filter_logits",
    "greedy_decode",
    "sample_tokens",
]
