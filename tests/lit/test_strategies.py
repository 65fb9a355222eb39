"""trainer=fsdp: FULL_SHARD with the Transformer layer classes as the wrap policy and sharded checkpoints.

FSDP itself needs GPUs (torch refuses CPU devices), so on this machine the preset is checked as far as the API
allows: it composes, builds the strategy with the promised policy, and the atomic folder swap its saves use works.
"""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

from mmattn.lit import FSDPStrategy
from mmattn.lit.strategies import resolve_layer_classes
from mmattn.nn import DecoderLayer, EncoderLayer


def test_fsdp_preset_builds_full_shard_with_the_layer_wrap_policy(compose_cfg) -> None:
    cfg = compose_cfg("train", ["trainer=fsdp"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.wrapped_layer_classes == {EncoderLayer, DecoderLayer}
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, ModuleWrapPolicy) and set(policy._module_classes) == {EncoderLayer, DecoderLayer}
    assert strategy.sharding_strategy.name == "FULL_SHARD"
    assert strategy._state_dict_type == "sharded"
    assert "activation_checkpointing_policy" not in strategy._activation_checkpointing_kwargs


def test_fsdp_activation_checkpointing_uses_the_same_classes() -> None:
    strategy = FSDPStrategy(layer_classes=["mmattn.nn.EncoderLayer"], activation_checkpointing=True)
    policy = strategy._activation_checkpointing_kwargs["auto_wrap_policy"]
    assert set(policy._module_classes) == {EncoderLayer}


def test_fsdp_layer_classes_are_checked() -> None:
    with pytest.raises(ValueError, match="'mmattn.nn.Nope' does not import"):
        resolve_layer_classes(["mmattn.nn.Nope"])
    with pytest.raises(ValueError, match="is not a torch.nn.Module subclass"):
        resolve_layer_classes(["mmattn.nn.sinusoidal_table"])
    with pytest.raises(ValueError, match="at least one layer class"):
        resolve_layer_classes([])
