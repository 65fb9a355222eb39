"""Vision Transformer (Dosovitskiy et al., 2021) on the shared core: patches -> EncoderClassifier."""

from typing import Literal

from torch import nn

from mmattn.models import EncoderClassifier

from .embed import ImagePatchEmbed

__all__ = ["ViT"]


class ViT(EncoderClassifier):
    """Image classifier: `ImagePatchEmbed` + class token / average pooling + learned or 2-D sin-cos positions.

    Args:
        img_size: Image side (or (H, W)) the position table is built for; other sizes resample it.
        patch_size: Patch side (or (h, w)).
        in_chans: Image channels.
        num_classes: Classes of the head.
        dim: Token width.
        depth: Encoder layers.
        num_heads: Attention heads.
        mlp_ratio: Feed-forward width over `dim`.
        qkv_bias: Bias of the query/key/value projections.
        qk_norm: LayerNorm on queries and keys.
        class_token: Prepend a class token.
        pool: "cls" or "avg".
        pos_embed: "learned", "sincos", "rotary2d", "rotary2d_mixed" or "none" (see `EncoderClassifier`).
        layer_scale: Initial LayerScale value, None to disable.
        drop_rate: Dropout on residual branches and before the head.
        pos_drop_rate: Dropout after adding positions.
        attn_drop_rate: Dropout on attention weights.
        drop_path_rate: Stochastic depth of the last layer.
        norm_first: Pre-norm (True) or post-norm.
        fc_norm: Norm after pooling (default: with average pooling).
        norm_eps: LayerNorm epsilon.

    Raises:
        ValueError: `img_size` not divisible by `patch_size`, `num_heads` not dividing `dim`, or bad options.
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        class_token: bool = True,
        pool: Literal["cls", "avg"] = "cls",
        pos_embed: Literal["learned", "sincos", "rotary2d", "rotary2d_mixed", "none"] = "learned",
        layer_scale: float | None = None,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_first: bool = True,
        fc_norm: bool | None = None,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__(
            ImagePatchEmbed(img_size, patch_size, in_chans, dim),
            num_classes=num_classes,
            dim=dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_norm=qk_norm,
            class_token=class_token,
            pool=pool,
            pos_embed=pos_embed,
            layer_scale=layer_scale,
            drop_rate=drop_rate,
            pos_drop_rate=pos_drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            norm_first=norm_first,
            fc_norm=fc_norm,
            norm_eps=norm_eps,
        )

    @classmethod
    def from_timm(cls, model: nn.Module) -> "ViT":
        """Build our ViT from a timm `VisionTransformer` instance, its configuration and its weights."""
        from ._timm import vit_from_timm

        return vit_from_timm(cls, model)

    @classmethod
    def from_hf(cls, model: nn.Module, *, img_size: int | tuple[int, int] | None = None) -> "ViT":
        """Build our ViT from a transformers `ViTForImageClassification` (its config and weights).

        Logits match transformers' to 1e-4 in fp32. With `img_size`, the position table is resampled on import as
        transformers' `interpolate_pos_encoding=True` does (bicubic, no antialiasing), so the outputs at that size
        match `model(x, interpolate_pos_encoding=True)`; at run time our table resamples as timm's does.
        """
        from ._hf import vit_from_hf

        return vit_from_hf(cls, model, img_size=img_size)
