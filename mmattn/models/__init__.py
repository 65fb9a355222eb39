"""Generic compositions of the core layers."""

from .classifier import EncoderClassifier
from .decoding import beam_search, greedy_decode
from .encoder_decoder import EncoderDecoder, TokenEmbedding

__all__ = ["EncoderClassifier", "EncoderDecoder", "TokenEmbedding", "beam_search", "greedy_decode"]
