"""The attention core: pure torch layers shared by every task adapter."""

from .alibi import ALiBi, alibi_slopes
from .attention import MultiHeadAttention, check_heads
from .capture import attention_layers, capture_attention
from .config import use_fused_attn
from .feedforward import Mlp, SwiGLU
from .kv_cache import KVCache
from .layers import DecoderLayer, EncoderLayer, LayerCache
from .masks import causal_mask, merge_masks
from .patch_embed import PatchEmbed
from .position import (
    LearnedPositionalEmbedding,
    LearnedPositionalEmbedding2D,
    RandomPositions,
    SinCos2DPositionalEmbedding,
    SinusoidalPositionalEncoding,
    resample_pos_embed,
    sincos_2d_table,
    sinusoidal_table,
)
from .regularization import DropPath, LayerScale
from .relative_bias import T5RelativeBias, relative_position_bucket
from .rotary import RotaryAngles, RotaryEmbedding, RotaryEmbedding2D
from .transformer import RELATIVE_POSITIONS, Decoder, DecoderCache, Encoder

__all__ = [
    "ALiBi",
    "Decoder",
    "DecoderCache",
    "DecoderLayer",
    "DropPath",
    "Encoder",
    "EncoderLayer",
    "KVCache",
    "LayerCache",
    "LayerScale",
    "LearnedPositionalEmbedding",
    "LearnedPositionalEmbedding2D",
    "Mlp",
    "MultiHeadAttention",
    "PatchEmbed",
    "RELATIVE_POSITIONS",
    "RandomPositions",
    "RotaryAngles",
    "RotaryEmbedding",
    "RotaryEmbedding2D",
    "SinCos2DPositionalEmbedding",
    "SinusoidalPositionalEncoding",
    "SwiGLU",
    "T5RelativeBias",
    "alibi_slopes",
    "attention_layers",
    "capture_attention",
    "causal_mask",
    "check_heads",
    "merge_masks",
    "relative_position_bucket",
    "resample_pos_embed",
    "sincos_2d_table",
    "sinusoidal_table",
    "use_fused_attn",
]
