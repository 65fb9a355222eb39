"""The image modality's side of the contract: image patches as tokens on a grid, and how an image is drawn."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from mmattn.modality import InputEmbedding, Renderer, TokenLayout, Tokens
from mmattn.nn import PatchEmbed
from mmattn.viz.heat import overlay_heat

__all__ = ["ImagePatchEmbed", "ImageRenderer"]


class ImageRenderer:
    """Draws an image [C, H, W] as the model sees it (rescaled to [0, 1]), the heat over its patch grid."""

    def draw(
        self, ax: Any, example: Tensor, heat: Tensor | None, layout: TokenLayout, *, tokenizer: Any = None
    ) -> None:
        """Image on `ax`, with `heat` [h * w] over it when given."""
        img = example.detach().float().cpu()
        img = (img - img.amin()) / (img.amax() - img.amin()).clamp_min(1e-8)
        img = img.expand(3, -1, -1) if img.shape[0] == 1 else img[:3]
        h, w = img.shape[-2:]
        ax.imshow(img.permute(1, 2, 0).numpy(), extent=(0, w, h, 0))
        if heat is not None:
            overlay_heat(ax, heat, layout, (0, w, h, 0))
        ax.axis("off")


class ImagePatchEmbed(InputEmbedding, PatchEmbed):
    """Images [B, C, H, W] -> patch tokens [B, h * w, dim] on an (h, w) grid (ViT's patch embedding).

    Args: those of `mmattn.nn.PatchEmbed` (img_size, patch_size, in_chans, dim, stride, bias, strict).
    """

    modality = "image"

    def __init__(
        self, img_size: int | tuple[int, int], patch_size: int | tuple[int, int], in_chans: int, dim: int, **kw: Any
    ) -> None:
        PatchEmbed.__init__(self, img_size, patch_size, in_chans, dim, **kw)
        self.dim = dim

    @property
    def layout(self) -> TokenLayout:
        """The patch grid of `img_size`."""
        return TokenLayout.grid(*self.grid_size)

    def embed(self, x: Tensor) -> Tokens:
        """Patch tokens of images x [B, C, H, W] (no padding)."""
        grid = PatchEmbed.forward(self, x)  # [B, h, w, D]
        b, h, w, d = grid.shape
        return Tokens(grid.reshape(b, h * w, d), None, TokenLayout.grid(h, w))

    def example_input(self, batch_size: int) -> Tensor:
        """Random images [batch_size, C, H, W] of `img_size`."""
        return PatchEmbed.example_input(self, batch_size)

    def renderer(self) -> Renderer:
        """Draws the image under the heat."""
        return ImageRenderer()

    def forward(self, x: Tensor) -> Tokens:
        """`embed(x)`."""
        return self.embed(x)
