"""Attention masks: one helper shared by the fused (SDPA) and the explicit attention paths.

Mask convention (the one `F.scaled_dot_product_attention` uses): a bool mask is True where a query may attend,
a float mask is added to the scores. `key_padding_mask` follows torch.nn instead: True marks padding.
"""

import torch
from torch import Tensor

__all__ = ["causal_mask", "merge_masks"]


def causal_mask(num_queries: int, num_keys: int, *, offset: int = 0, device: torch.device | None = None) -> Tensor:
    """Bool [num_queries, num_keys] mask, True where key j <= offset + query i (bottom-right aligned with a cache)."""
    q_pos = torch.arange(num_queries, device=device)[:, None] + offset
    k_pos = torch.arange(num_keys, device=device)[None, :]
    return k_pos <= q_pos


def _check_mask(name: str, mask: Tensor, shape: tuple[int, ...]) -> None:
    """Raise a ValueError naming `name` when `mask` does not broadcast to `shape`."""
    try:
        torch.broadcast_shapes(mask.shape, shape)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(mask.shape)} does not broadcast to the score shape {shape} [B, H, N, M]"
        ) from None


def merge_masks(
    batch: int,
    num_heads: int,
    num_queries: int,
    num_keys: int,
    *,
    key_padding_mask: Tensor | None = None,
    attn_mask: Tensor | None = None,
    causal: bool = False,
    offset: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> tuple[Tensor | None, Tensor | None]:
    """Combine padding, causal and explicit masks into one SDPA-style mask.

    Returns `(mask, dead_rows)`. `mask` is None (attend everywhere), bool (True = attend) or a float bias in `dtype`,
    broadcastable to [B, H, N, M]. `dead_rows` is None or a bool tensor broadcastable to [B, H, N, 1] marking query
    rows whose keys are all masked: those rows were opened up in `mask` so softmax stays finite (no NaN in the forward
    or the backward pass), and the caller must zero their output.
    """
    shape = (batch, num_heads, num_queries, num_keys)
    mask = None
    if attn_mask is not None:
        _check_mask("attn_mask", attn_mask, shape)
        if attn_mask.dtype == torch.bool:
            mask = attn_mask
        elif attn_mask.is_floating_point():
            mask = attn_mask.to(dtype)
        else:
            raise ValueError(f"attn_mask must be bool (True = attend) or floating point (added), got {attn_mask.dtype}")
    if causal:
        keep = causal_mask(num_queries, num_keys, offset=offset, device=device)
        mask = keep if mask is None else _restrict(mask, keep)
    if key_padding_mask is not None:
        if key_padding_mask.shape != (batch, num_keys):
            raise ValueError(
                f"key_padding_mask has shape {tuple(key_padding_mask.shape)}, expected [B, M] = {(batch, num_keys)}"
            )
        if key_padding_mask.dtype != torch.bool:
            raise ValueError(f"key_padding_mask must be bool with True marking padding, got {key_padding_mask.dtype}")
        keep = ~key_padding_mask[:, None, None, :]
        mask = keep if mask is None else _restrict(mask, keep)
    if mask is None:
        return None, None
    if mask.dtype == torch.bool:
        dead = ~mask.any(dim=-1, keepdim=True)
        return mask | dead, dead
    dead = torch.isneginf(mask).all(dim=-1, keepdim=True)
    return mask.masked_fill(dead, 0.0), dead


def _restrict(mask: Tensor, keep: Tensor) -> Tensor:
    """Apply a bool keep-mask to a bool or float mask."""
    if mask.dtype == torch.bool:
        return mask & keep
    return mask.masked_fill(~keep, float("-inf"))
