"""Process-wide switches of the attention core."""

import os

__all__ = ["use_fused_attn"]


def use_fused_attn() -> bool:
    """Whether attention runs on `F.scaled_dot_product_attention` (default) or the explicit softmax path.

    `MMATTN_FUSED_ATTN=0` in the environment selects the explicit path everywhere, e.g. to compare numerics.
    """
    return os.environ.get("MMATTN_FUSED_ATTN", "1").strip().lower() not in ("0", "false", "no", "off")
