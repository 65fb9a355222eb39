"""Audio Spectrogram Transformer (Gong et al., 2021) on the shared core: spectrogram patches -> EncoderClassifier."""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from mmattn.modality import InputEmbedding, Renderer, TokenLayout, Tokens
from mmattn.models import EncoderClassifier
from mmattn.nn import PatchEmbed
from mmattn.viz.heat import overlay_heat

__all__ = ["AST", "SpectrogramPatchEmbed", "SpectrogramRenderer"]


class SpectrogramRenderer:
    """Draws features [frames, mel_bins] as a spectrogram (time across, frequency up), the heat over its patch grid
    (frequency rows from the bottom, time columns)."""

    def draw(
        self, ax: Any, example: Tensor, heat: Tensor | None, layout: TokenLayout, *, tokenizer: Any = None
    ) -> None:
        """Spectrogram on `ax`, with `heat` [f * t] over it when given."""
        spec = example.detach().float().cpu().T  # [mel, frames]
        mel, frames = spec.shape
        ax.imshow(spec.numpy(), cmap="magma", origin="lower", aspect="auto", extent=(0, frames, 0, mel))
        if heat is not None:
            overlay_heat(ax, heat, layout, (0, frames, 0, mel), origin="lower")
        ax.set_xlabel("frame", fontsize=8)
        ax.set_ylabel("mel bin", fontsize=8)


class SpectrogramPatchEmbed(InputEmbedding):
    """Features [B, frames, mel_bins] -> patch tokens [B, f * t, dim] on an (f, t) grid (frequency rows, time columns,
    as AST orders them).

    Args:
        num_mel_bins: Mel bins of the input.
        target_length: Frames the model is built for; other lengths resample the position table.
        patch_size: Square patch side (16 in AST).
        freq_stride: Patch stride along frequency (AST: 10, i.e. overlapping patches; 16 = no overlap).
        time_stride: Patch stride along time.
        dim: Token width.
    """

    def __init__(
        self, num_mel_bins: int, target_length: int, patch_size: int, freq_stride: int, time_stride: int, dim: int
    ) -> None:
        super().__init__()
        # Convolution keeps AST's rule: frames past the last whole patch are dropped, not rejected.
        self.patch = PatchEmbed(
            (num_mel_bins, target_length), patch_size, 1, dim, stride=(freq_stride, time_stride), strict=False
        )
        self.num_mel_bins = num_mel_bins
        self.dim = dim
        self.grid_size = self.patch.grid_size

    modality = "spectrogram"

    @property
    def layout(self) -> TokenLayout:
        """The (frequency, time) patch grid of `target_length` frames."""
        return TokenLayout.grid(*self.grid_size)

    def renderer(self) -> Renderer:
        """Draws the spectrogram under the heat."""
        return SpectrogramRenderer()

    def example_input(self, batch_size: int) -> Tensor:
        """Random features [batch_size, target_length, mel_bins] (for tracing and export)."""
        return self.patch.example_input(batch_size)[:, 0].transpose(1, 2)

    def embed(self, x: Tensor) -> Tokens:
        """Patch tokens of features x [B, frames, mel_bins] (no padding)."""
        if x.ndim != 3 or x.shape[-1] != self.num_mel_bins:
            raise ValueError(
                f"AST expects features [batch, frames, {self.num_mel_bins} mel bins], got shape {tuple(x.shape)}"
            )
        grid = self.patch(x.transpose(1, 2).unsqueeze(1))  # [b, f, t, dim] of [b, 1, mel, frames]
        b, f, t, d = grid.shape
        return Tokens(grid.reshape(b, f * t, d), None, TokenLayout.grid(f, t))


class AST(EncoderClassifier):
    """Audio classifier: overlapping spectrogram patches + class and distillation tokens + learned 2-D positions.

    The input is normalised log-mel features [B, frames, mel_bins] (`mmattn.tasks.audio.AudioFeatures`, the layout of
    HF's ASTFeatureExtractor). The head is AST's: the encoder's final norm, the mean of the class and distillation
    token outputs, LayerNorm, Linear.

    Args:
        num_mel_bins: Mel bins of the input (128 in AST).
        target_length: Frames per clip the position table is built for (1024 = 10 s at a 10 ms shift); clips of
            another length resample the table bicubically.
        patch_size: Square patch side.
        freq_stride: Patch stride along frequency.
        time_stride: Patch stride along time.
        num_classes: Classes of the head.
        dim: Token width.
        depth: Encoder layers.
        num_heads: Attention heads.
        mlp_ratio: Feed-forward width over `dim`.
        qkv_bias: Bias of the query/key/value projections.
        qk_norm: LayerNorm on queries and keys.
        dist_token: Prepend a distillation token next to the class token (AST keeps DeiT's).
        pool: "cls" (mean of the prefix tokens' outputs) or "avg" (mean over patch tokens).
        pos_embed: "learned", "sincos", "rotary2d", "rotary2d_mixed" or "none" (see `EncoderClassifier`).
        layer_scale: Initial LayerScale value, None to disable.
        drop_rate: Dropout on residual branches and before the head.
        pos_drop_rate: Dropout after adding positions.
        attn_drop_rate: Dropout on attention weights.
        drop_path_rate: Stochastic depth of the last layer.
        norm_eps: LayerNorm epsilon.

    Raises:
        ValueError: `num_heads` not dividing `dim`, a patch larger than the input, or bad options.
    """

    def __init__(
        self,
        *,
        num_mel_bins: int = 128,
        target_length: int = 1024,
        patch_size: int = 16,
        freq_stride: int = 10,
        time_stride: int = 10,
        num_classes: int = 527,
        dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        dist_token: bool = True,
        pool: Literal["cls", "avg"] = "cls",
        pos_embed: Literal["learned", "sincos", "rotary2d", "rotary2d_mixed", "none"] = "learned",
        layer_scale: float | None = None,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__(
            SpectrogramPatchEmbed(num_mel_bins, target_length, patch_size, freq_stride, time_stride, dim),
            num_classes=num_classes,
            dim=dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_norm=qk_norm,
            class_token=True,
            dist_token=dist_token,
            pool=pool,
            pos_embed=pos_embed,
            layer_scale=layer_scale,
            drop_rate=drop_rate,
            pos_drop_rate=pos_drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            norm_first=True,
            fc_norm=True,
            final_norm=True,
            norm_eps=norm_eps,
        )
        self.num_mel_bins = num_mel_bins
        self.target_length = target_length

    @classmethod
    def from_hf(cls, model: nn.Module, *, target_length: int | None = None) -> AST:
        """Build our AST from a transformers `ASTForAudioClassification` (config and weights).

        `target_length` builds the model for another clip length; the position table is then resampled from the
        HF grid.
        """
        from ._hf import ast_from_hf

        return ast_from_hf(cls, model, target_length=target_length)
