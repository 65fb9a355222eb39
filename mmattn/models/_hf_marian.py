"""Import of transformers `MarianMTModel` instances into `EncoderDecoder`: read the config, convert the state dict.

What the conversion relies on (transformers >= 5 layout):

- post-norm layers (`norm(x + f(x))`) and no LayerNorm after either stack, as our `norm_first=False` stacks;
  transformers' Marian code reads no `normalize_before`, so a legacy config value is ignored here too;
- token embeddings times sqrt(d_model) when `scale_embedding`, shared by both sides and the output layer (Helsinki
  models), or a decoder embedding tied to the output only;
- fixed sinusoidal positions starting at 0, sines in the first half of the channels and cosines in the second
  (`sinusoidal_layout="halves"`); their stored tables are checked against ours and then dropped;
- `final_logits_bias`, a buffer [1, V], becomes the (learned) `output.bias`;
- separate q/k/v projections, packed into our `qkv` in that order (cross-attention slices q, then k and v).

Decoding: Marian starts from its pad id and ends with `eos_token_id`. These calls give the tokens of transformers'
`generate` (after its leading start token):

- `greedy_decode(model, src, bos_id=decoder_start_token_id, eos_id=eos, pad_id=pad, max_len_a=0, max_len_b=n)` =
  `generate(src, attention_mask=src != pad, do_sample=False, num_beams=1, max_new_tokens=n, forced_eos_token_id=eos)`;
- `beam_search(..., beam_size=k, length_penalty=lp, forced_eos_score="zero")` with the same ids and budget =
  `generate(..., num_beams=k, length_penalty=lp, early_stopping=True, max_new_tokens=n, forced_eos_token_id=eos)`:
  `early_stopping=True` stops a sentence once k hypotheses have ended, as ours does (transformers' default
  `early_stopping=False` runs on while a live beam could still win by its heuristic); `forced_eos_token_id` makes
  the last step's EOS cost 0, which `forced_eos_score="zero"` reproduces (fairseq's default keeps its
  log-probability);
- `banned_ids=(pad,)` in both = `bad_words_ids=[[pad]]`, which the Helsinki-NLP configs set.

Not reproduced: without `forced_eos_token_id`, transformers ends the k best beams at the budget with no EOS, while ours
always closes a hypothesis with EOS; a per-sentence budget (`max_len_a > 0`) has no `generate` counterpart (one
`max_new_tokens` for the batch); `bad_words_ids` longer than one token, `early_stopping=False` or `"never"`,
repetition penalties and minimum lengths have no counterpart here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmattn.nn import sinusoidal_table

from .hf_import import build_strict, hf_activation, mlp_ratio, place, unsupported

__all__ = ["checkpoint_filter_fn", "hf_marian_config", "marian_from_hf"]

_FAMILY = "Marian"
_TOP = {
    "final_logits_bias": "output.bias",
    "lm_head.weight": "output.weight",
    "model.shared.weight": "src_embed.embed.weight",
    "model.encoder.embed_tokens.weight": "src_embed.embed.weight",
    "model.decoder.embed_tokens.weight": "tgt_embed.embed.weight",
}
_POSITIONS = ("model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight")
_LAYER = {
    "encoder": {
        "self_attn.out_proj": "attn.out_proj",
        "self_attn_layer_norm": "norm1",
        "fc1": "mlp.fc1",
        "fc2": "mlp.fc2",
        "final_layer_norm": "norm2",
    },
    "decoder": {
        "self_attn.out_proj": "self_attn.out_proj",
        "self_attn_layer_norm": "norm1",
        "encoder_attn.out_proj": "cross_attn.out_proj",
        "encoder_attn_layer_norm": "norm_cross",
        "fc1": "mlp.fc1",
        "fc2": "mlp.fc2",
        "final_layer_norm": "norm2",
    },
}
_PACKED = {
    ("encoder", "self_attn"): "attn.qkv",
    ("decoder", "self_attn"): "self_attn.qkv",
    ("decoder", "encoder_attn"): "cross_attn.qkv",
}


def _share_embeddings(model: nn.Module) -> str:
    enc, dec = model.model.encoder.embed_tokens.weight, model.model.decoder.embed_tokens.weight
    tied = model.lm_head.weight is dec
    shared = getattr(model.model, "shared", None)
    if shared is not None and shared.weight is not enc:
        # transformers 5 ties nothing when tie_word_embeddings=False, even with share_encoder_decoder_embeddings.
        raise unsupported(
            _FAMILY,
            "a `model.shared` embedding that neither stack reads (share_encoder_decoder_embeddings=True with "
            "tie_word_embeddings=False)",
            "build it with tie_word_embeddings=True or share_encoder_decoder_embeddings=False",
        )
    if enc is dec:
        if not tied:
            raise unsupported(
                _FAMILY,
                "shared encoder/decoder embeddings with an untied lm_head",
                "tie the output (tie_word_embeddings=True) or share nothing",
            )
        return "all"
    return "decoder" if tied else "none"


def hf_marian_config(model: nn.Module) -> dict[str, Any]:
    """The `EncoderDecoder(...)` keyword arguments equivalent to a transformers `MarianMTModel`.

    Raises:
        ValueError: Not a Marian translation model, or it uses a feature we do not implement (encoder and decoder of
            different widths or head counts, LayerDrop, an unknown activation, an odd `d_model`, no pad id).
    """
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "marian" or not hasattr(model, "lm_head"):
        raise ValueError(f"from_hf expects a transformers MarianMTModel, got {type(model).__name__}")
    if config.encoder_attention_heads != config.decoder_attention_heads:
        raise unsupported(
            _FAMILY,
            f"encoder_attention_heads={config.encoder_attention_heads} != "
            f"decoder_attention_heads={config.decoder_attention_heads}",
            "one num_heads serves both stacks here",
        )
    if config.encoder_ffn_dim != config.decoder_ffn_dim:
        raise unsupported(
            _FAMILY,
            f"encoder_ffn_dim={config.encoder_ffn_dim} != decoder_ffn_dim={config.decoder_ffn_dim}",
            "one mlp_ratio serves both stacks here",
        )
    if config.encoder_layerdrop or config.decoder_layerdrop:
        raise unsupported(
            _FAMILY,
            f"LayerDrop (encoder_layerdrop={config.encoder_layerdrop}, decoder_layerdrop={config.decoder_layerdrop})",
            "set both to 0 before importing (LayerDrop only acts in training)",
        )
    if config.d_model % 2:
        raise unsupported(_FAMILY, f"an odd d_model ({config.d_model})", "sinusoidal positions need an even width")
    if config.pad_token_id is None:
        raise ValueError("transformers Marian config has pad_token_id=None; Marian pads and starts decoding with it")
    dim = config.d_model
    return {
        "src_vocab_size": model.model.encoder.embed_tokens.weight.shape[0],
        "tgt_vocab_size": model.lm_head.weight.shape[0],
        "dim": dim,
        "encoder_depth": config.encoder_layers,
        "decoder_depth": config.decoder_layers,
        "num_heads": config.encoder_attention_heads,
        "mlp_ratio": mlp_ratio(_FAMILY, dim, config.encoder_ffn_dim),
        "activation": hf_activation(_FAMILY, config.activation_function),
        "dropout": config.dropout,
        "attn_dropout": config.attention_dropout,
        "act_dropout": config.activation_dropout,
        "positions": "sinusoidal",
        "max_positions": config.max_position_embeddings,
        "share_embeddings": _share_embeddings(model),
        "norm_first": False,
        "norm_eps": model.model.encoder.layers[0].self_attn_layer_norm.eps,
        "pad_id": config.pad_token_id,
        "scale_embeddings": config.scale_embedding,
        "output_bias": True,
        "sinusoidal_layout": "halves",
    }


def _check_positions(key: str, table: torch.Tensor) -> None:
    ours = sinusoidal_table(table.shape[0], table.shape[1], layout="halves")
    if not torch.allclose(table.float().cpu(), ours, atol=1e-5, rtol=0):
        raise ValueError(
            f"{key} is not Marian's fixed sinusoid table; mmattn computes these positions and cannot load others"
        )


def _convert_marian(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a transformers (>= 5) Marian state dict to ours; q/k/v projections are packed into one `qkv`."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for source, value in state_dict.items():
        if source in _POSITIONS:
            _check_positions(source, value)
            continue
        if source in _TOP:
            place(out, _TOP[source], value.reshape(-1) if source == "final_logits_bias" else value, source)
            continue
        parts = source.split(".", 4)  # model, encoder|decoder, layers, index, rest
        if len(parts) == 5 and parts[0] == "model" and parts[1] in _LAYER and parts[2] == "layers":
            stack, index, rest = parts[1], parts[3], parts[4]
            name, param = rest.rsplit(".", 1)
            attn, _, proj = name.rpartition(".")
            if (stack, attn) in _PACKED and proj in ("q_proj", "k_proj", "v_proj"):
                target = f"{stack}.layers.{index}.{_PACKED[(stack, attn)]}.{param}"
                qkv.setdefault(target, {})[proj[0]] = value
                continue
            if name in _LAYER[stack]:
                place(out, f"{stack}.layers.{index}.{_LAYER[stack][name]}.{param}", value, source)
                continue
        raise ValueError(f"Marian key {source!r} has no counterpart in mmattn's EncoderDecoder (transformers >= 5)")
    for target, parts in qkv.items():
        place(out, target, torch.cat([parts["q"], parts["k"], parts["v"]]), target)
    return out


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Turn a transformers Marian state dict into one `model` loads; ours passes through unchanged."""
    if "lm_head.weight" in state_dict and any(k.startswith("model.decoder.") for k in state_dict):
        state_dict = _convert_marian(state_dict)
    return state_dict


def marian_from_hf(cls: type, model: nn.Module) -> nn.Module:
    """Build `cls` from a transformers Marian and load its weights (strict: every tensor must find its place)."""
    return build_strict(cls, hf_marian_config(model), model, checkpoint_filter_fn)
