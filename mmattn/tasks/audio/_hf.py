"""Import of HF transformers `ASTForAudioClassification` instances: read their config, convert their state dict."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmattn.models.hf_import import build_strict, convert_vit_style

__all__ = ["ast_from_hf", "ast_from_hf_hub", "checkpoint_filter_fn", "hf_ast_config", "hf_patch_grid"]

_HF_PREFIX = "audio_spectrogram_transformer."


def hf_ast_config(model: nn.Module) -> dict[str, Any]:
    """The `AST(...)` keyword arguments equivalent to a transformers `ASTForAudioClassification`.

    Raises:
        ValueError: Not an AST classification model, or it uses a feature we do not implement.
    """
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "audio-spectrogram-transformer" or not hasattr(model, "classifier"):
        raise ValueError(f"from_hf expects a transformers ASTForAudioClassification, got {type(model).__name__}")
    if config.hidden_act != "gelu":
        raise ValueError(f"HF AST uses hidden_act={config.hidden_act!r}; mmattn's AST implements exact 'gelu' only")
    return {
        "num_mel_bins": config.num_mel_bins,
        "target_length": config.max_length,
        "patch_size": config.patch_size,
        "freq_stride": config.frequency_stride,
        "time_stride": config.time_stride,
        "num_classes": config.num_labels,
        "dim": config.hidden_size,
        "depth": config.num_hidden_layers,
        "num_heads": config.num_attention_heads,
        "mlp_ratio": config.intermediate_size / config.hidden_size,
        "qkv_bias": config.qkv_bias,
        "drop_rate": config.hidden_dropout_prob,
        "attn_drop_rate": config.attention_probs_dropout_prob,
        "norm_eps": config.layer_norm_eps,
    }


# transformers' AST names outside the encoder layers -> ours.
_RENAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.distillation_token": "dist_token",
    "embeddings.position_embeddings": "pos_embed.weight",
    "embeddings.patch_embeddings.projection.": "embed.patch.proj.",
    "layernorm.": "encoder.norm.",
    "classifier.layernorm.": "fc_norm.",
    "classifier.dense.": "head.",
}


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Turn an HF AST state dict into one `model` loads; ours passes through unchanged."""
    if any(k.startswith(_HF_PREFIX) for k in state_dict):
        state_dict = convert_vit_style(state_dict, prefix=_HF_PREFIX, renames=_RENAMES, family="AST")
    return state_dict


def hf_patch_grid(config: dict[str, Any]) -> tuple[int, int]:
    """The (frequency, time) patch grid of an AST config (`hf_ast_config` keys): its position table's shape."""
    p = config["patch_size"]
    return (
        (config["num_mel_bins"] - p) // config["freq_stride"] + 1,
        (config["target_length"] - p) // config["time_stride"] + 1,
    )


def ast_from_hf(cls: type, model: nn.Module, *, target_length: int | None = None) -> nn.Module:
    """Build `cls` from an HF AST and load its weights strictly; another `target_length` resamples positions."""
    config = hf_ast_config(model)
    hf_grid = hf_patch_grid(config)
    if target_length is not None:
        config["target_length"] = target_length

    def name_grid(ours: nn.Module) -> None:
        # The position table is not square, so its source grid must be named for the resampling on load.
        ours.pos_embed.checkpoint_grid_size = hf_grid

    return build_strict(cls, config, model, checkpoint_filter_fn, name_grid)


def ast_from_hf_hub(
    name_or_path: str, *, num_classes: int, target_length: int | None = None, **overrides: Any
) -> nn.Module:
    """Our AST with the weights of a transformers `ASTForAudioClassification` (a Hub id or a local folder), for
    `num_classes` classes at `target_length` frames.

    The head is new when the class count differs, the position table is resampled for another clip length, and what
    loaded, resampled or stayed new is logged. The model records its architecture (`init_config`), so a run's
    checkpoints rebuild it without fetching the weights again.

    Raises:
        ValueError: Not an AST classification model, or one that uses what mmattn's AST does not implement.
    """
    from transformers import ASTForAudioClassification

    from mmattn.models.pretrained import load_pretrained, record_init_config

    from .ast import AST

    reference = ASTForAudioClassification.from_pretrained(name_or_path)
    config = hf_ast_config(reference)
    hf_grid = hf_patch_grid(config)
    config.update(num_classes=num_classes, **({"target_length": target_length} if target_length else {}), **overrides)
    model = AST(**config)
    model.pos_embed.checkpoint_grid_size = hf_grid
    load_pretrained(model, checkpoint_filter_fn(reference.state_dict(), model), source=f"transformers {name_or_path}")
    return record_init_config(model, "mmattn.tasks.audio.AST", **config)
