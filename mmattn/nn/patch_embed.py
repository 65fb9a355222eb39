"""Patch embedding: a strided convolution that turns an image-like input into a grid of tokens."""

import torch
from torch import Tensor, nn

__all__ = ["PatchEmbed"]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _grid(size: int, patch: int, stride: int) -> int:
    return (size - patch) // stride + 1


class PatchEmbed(nn.Module):
    """Conv2d(in_chans, dim, kernel=patch_size, stride) over [B, C, H, W] -> token grid [B, h, w, dim].

    A stride smaller than the patch gives overlapping patches (AST uses 16x16 patches at stride 10).

    Args:
        img_size: Input (H, W) the model is built for (an int means square).
        patch_size: Patch (height, width).
        in_chans: Input channels (3 for RGB, 1 for a spectrogram).
        dim: Token width.
        stride: Patch stride; defaults to the patch size (no overlap).
        bias: Bias of the projection.
        strict: Require the patches to tile the input exactly; False lets the convolution drop a remainder
            (AST: 1024 frames at stride 10 leave 8 frames uncovered), as long as one patch fits.

    Raises:
        ValueError: The patches do not tile `img_size` exactly (with `strict`), or the input is smaller than a patch.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int],
        patch_size: int | tuple[int, int],
        in_chans: int,
        dim: int,
        *,
        stride: int | tuple[int, int] | None = None,
        bias: bool = True,
        strict: bool = True,
    ) -> None:
        super().__init__()
        self.img_size = _pair(img_size)
        self.patch_size = _pair(patch_size)
        self.stride = self.patch_size if stride is None else _pair(stride)
        self.strict = strict
        self._check(self.img_size)
        self.grid_size = self.grid_for(self.img_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=self.patch_size, stride=self.stride, bias=bias)

    def _check(self, size: tuple[int, int]) -> None:
        for axis, s, p, st in zip(("height", "width"), size, self.patch_size, self.stride):
            if not self.strict and s < p:
                raise ValueError(f"input {axis} {s} is smaller than one patch ({p}); use a larger input or patch {s}")
            if self.strict and (s < p or (s - p) % st):
                if st == p:
                    choices = ", ".join(str(p * k) for k in range(1, 5))
                    raise ValueError(
                        f"img_size {s} ({axis}) is not divisible by patch_size {p}; "
                        f"choose img_size in {{{choices}, ...}}"
                    )
                raise ValueError(
                    f"img_size {s} ({axis}) is not covered by patches of {p} at stride {st}: "
                    f"(size - patch) must be a multiple of the stride"
                )

    def grid_for(self, size: tuple[int, int]) -> tuple[int, int]:
        """Token grid (h, w) for an input of spatial size (H, W)."""
        return _grid(size[0], self.patch_size[0], self.stride[0]), _grid(size[1], self.patch_size[1], self.stride[1])

    def example_input(self, batch_size: int) -> Tensor:
        """A random input of the size the embedding is built for, [batch_size, C, H, W] (for tracing and export)."""
        return torch.randn(batch_size, self.proj.in_channels, *self.img_size)

    def forward(self, x: Tensor) -> Tensor:
        """Patchify x [B, C, H, W] into [B, h, w, dim]."""
        if x.ndim != 4:
            raise ValueError(f"PatchEmbed expects [B, C, H, W], got shape {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != self.img_size:
            self._check(tuple(x.shape[-2:]))
        return self.proj(x).permute(0, 2, 3, 1)

    def extra_repr(self) -> str:
        return f"img_size={self.img_size}, patch_size={self.patch_size}, stride={self.stride}, grid={self.grid_size}"
