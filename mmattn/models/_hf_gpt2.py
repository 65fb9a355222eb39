"""Import of transformers `GPT2LMHeadModel` instances into `DecoderOnly`: read the config, convert the state dict.

What the conversion relies on (transformers >= 5 layout):

- GPT-2's `Conv1D` stores its weight as [in, out], the transpose of `nn.Linear`'s [out, in];
- `attn.c_attn` packs queries, keys and values along its output in that order, heads contiguous, as our `qkv` does;
- `wpe` is a learned table of `n_positions` rows, `ln_f` the final LayerNorm of the pre-norm stack;
- `wte` and `lm_head` share one tensor unless the model was built with `tie_word_embeddings=False`;
- "gelu_new" is GELU's tanh approximation, our "gelu_tanh".

GPT-2 has no padding token: `wte` has no `padding_idx`, and id 0 is a real token ("!"). The imported model is built
with `pad_id=None`, so no row of its embedding is frozen at zero; pad batches with any id and mask the loss instead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .hf_import import build_strict, hf_activation, mlp_ratio, place, unsupported

__all__ = ["checkpoint_filter_fn", "gpt2_from_hf", "hf_gpt2_config"]

_FAMILY = "GPT-2"
_TOP = {
    "wte.weight": "embed.embed.weight",
    "wpe.weight": "embed.positions.weight",
    "ln_f.weight": "decoder.norm.weight",
    "ln_f.bias": "decoder.norm.bias",
}
_LAYER = {
    "ln_1": "norm1",
    "attn.c_attn": "self_attn.qkv",
    "attn.c_proj": "self_attn.out_proj",
    "ln_2": "norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
_CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def hf_gpt2_config(model: nn.Module) -> dict[str, Any]:
    """The `DecoderOnly(...)` keyword arguments equivalent to a transformers `GPT2LMHeadModel`.

    `reorder_and_upcast_attn` is accepted: it changes how fp16 scores are computed, not what they are.

    Raises:
        ValueError: Not a GPT-2 language model, or it uses a feature we do not implement (cross-attention, scores
            scaled by the layer index or not by sqrt(head_dim), an unknown activation, embedding dropout differing
            from residual dropout).
    """
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "gpt2" or not hasattr(model, "lm_head"):
        raise ValueError(f"from_hf expects a transformers GPT2LMHeadModel, got {type(model).__name__}")
    if config.add_cross_attention:
        raise unsupported(_FAMILY, "add_cross_attention=True", "import a model without cross-attention layers")
    if config.scale_attn_by_inverse_layer_idx:
        raise unsupported(
            _FAMILY,
            "scale_attn_by_inverse_layer_idx=True (scores divided by the layer index)",
            "import a model trained with scale_attn_by_inverse_layer_idx=False",
        )
    if not config.scale_attn_weights:
        raise unsupported(
            _FAMILY, "scale_attn_weights=False (unscaled scores)", "import a model with scale_attn_weights=True"
        )
    if config.embd_pdrop != config.resid_pdrop:
        raise unsupported(
            _FAMILY,
            f"embd_pdrop={config.embd_pdrop} != resid_pdrop={config.resid_pdrop} (one dropout covers both here)",
            "set config.embd_pdrop = config.resid_pdrop before importing (dropout only acts in training)",
        )
    dim = config.n_embd
    width = config.n_inner if config.n_inner is not None else 4 * dim
    tied = model.lm_head.weight is model.transformer.wte.weight
    return {
        "vocab_size": model.transformer.wte.weight.shape[0],
        "dim": dim,
        "depth": config.n_layer,
        "num_heads": config.n_head,
        "context_length": config.n_positions,
        "mlp_ratio": mlp_ratio(_FAMILY, dim, width),
        "activation": hf_activation(_FAMILY, config.activation_function),
        "dropout": config.resid_pdrop,
        "attn_dropout": config.attn_pdrop,
        "positions": "learned",
        "tie_embeddings": tied,
        "scale_embeddings": False,
        "norm_first": True,
        "norm_eps": config.layer_norm_epsilon,
        "pad_id": None,
    }


def _convert_gpt2(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a transformers (>= 5) GPT-2 state dict to ours; Conv1D weights are transposed to Linear's layout."""
    out: dict[str, torch.Tensor] = {}
    for source, value in state_dict.items():
        if source == "lm_head.weight":
            place(out, "output.weight", value, source)
            continue
        key = source.removeprefix("transformer.")
        if key in _TOP:
            place(out, _TOP[key], value, source)
            continue
        if key.startswith("h."):
            _, index, rest = key.split(".", 2)
            name, param = rest.rsplit(".", 1)
            if name in _LAYER:
                if name in _CONV1D and param == "weight":
                    value = value.t()  # Conv1D [in, out] -> Linear [out, in]
                place(out, f"decoder.layers.{index}.{_LAYER[name]}.{param}", value, source)
                continue
        raise ValueError(f"GPT-2 key {source!r} has no counterpart in mmattn's DecoderOnly (transformers >= 5 layout)")
    return out


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Turn a transformers GPT-2 state dict into one `model` loads; ours passes through unchanged."""
    if "transformer.wte.weight" in state_dict:
        state_dict = _convert_gpt2(state_dict)
    return state_dict


def gpt2_from_hf(cls: type, model: nn.Module) -> nn.Module:
    """Build `cls` from a transformers GPT-2 and load its weights (strict: every tensor must find its place)."""
    return build_strict(cls, hf_gpt2_config(model), model, checkpoint_filter_fn)
