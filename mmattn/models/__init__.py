"""Generic compositions of the core layers."""

from .classifier import EncoderClassifier
from .decoder_only import DecoderOnly
from .decoding import beam_search, greedy_decode
from .encoder_decoder import EncoderDecoder, TokenEmbedding
from .fusion import FusionEncoder
from .sampling import filter_logits, sample_tokens

__all__ = [
    "DecoderOnly",
    "EncoderClassifier",
    "EncoderDecoder",
    "FusionEncoder",
    "TokenEmbedding",
    "beam_search",
    "filter_logits",
    "greedy_decode",
    "sample_tokens",
]
