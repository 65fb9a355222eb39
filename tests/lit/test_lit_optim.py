"""Weight-decay groups and the warmup + cosine schedule of mmattn.lit.optim."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmattn.lit import build_scheduler, resolve_warmup_steps, warmup_cosine_factor, weight_decay_groups


class _Net(nn.Module):
    """Linear + LayerNorm + a 2-D position table that the net excludes from decay itself (timm convention)."""

    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)
        self.frozen = nn.Parameter(torch.zeros(8, 8), requires_grad=False)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}


def _names(net: nn.Module, params: list[nn.Parameter]) -> set[str]:
    ids = {id(p) for p in params}
    return {name for name, p in net.named_parameters() if id(p) in ids}


def test_weight_decay_groups_exclude_biases_norms_and_no_weight_decay_names() -> None:
    net = _Net()
    groups = weight_decay_groups(net, 0.05)
    by_decay = {g["weight_decay"]: _names(net, g["params"]) for g in groups}
    assert by_decay[0.05] == {"proj.weight", "head.weight"}
    assert by_decay[0.0] == {"pos_embed", "proj.bias", "norm.weight", "norm.bias", "head.bias"}
    # Frozen parameters are left out of the optimizer entirely.
    assert all("frozen" not in names for names in by_decay.values())


def test_weight_decay_groups_extra_patterns_and_negative_decay() -> None:
    net = _Net()
    groups = weight_decay_groups(net, 0.1, no_weight_decay=["head.*"])
    decayed = next(_names(net, g["params"]) for g in groups if g["weight_decay"] == 0.1)
    assert decayed == {"proj.weight"}
    with pytest.raises(ValueError, match="weight_decay must be >= 0, got -1"):
        weight_decay_groups(net, -1)


def _lrs(options: dict, total: int, steps_per_epoch: int = 10, base_lr: float = 1.0) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = build_scheduler(optimizer, options, total_steps=total, steps_per_epoch=steps_per_epoch)["scheduler"]
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_then_cosine_to_min_lr() -> None:
    lrs = _lrs({"warmup_steps": 4, "min_lr": 0.1}, total=24, base_lr=2.0)
    assert lrs[:4] == pytest.approx([0.5, 1.0, 1.5, 2.0])  # linear, reaching the peak on the last warmup step
    assert lrs[4] == pytest.approx(2.0)  # cosine starts at the peak
    # Halfway through the decay the lr is the mean of peak and floor.
    assert lrs[4 + 10] == pytest.approx(0.1 + (2.0 - 0.1) * 0.5)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[-1] == pytest.approx(0.1 + 1.9 * 0.5 * (1 + math.cos(math.pi * 19 / 20)))
    assert warmup_cosine_factor(24, warmup_steps=4, total_steps=24, min_factor=0.05, cosine=True) == pytest.approx(0.05)


def test_warmup_as_fraction_or_epochs_and_constant_schedule() -> None:
    assert resolve_warmup_steps({"warmup_fraction": 0.1}, total_steps=200, steps_per_epoch=50) == 20
    assert resolve_warmup_steps({"warmup_epochs": 1.5}, total_steps=200, steps_per_epoch=50) == 75
    assert resolve_warmup_steps({"warmup_epochs": 0, "warmup_steps": None}, total_steps=200, steps_per_epoch=50) == 0
    lrs = _lrs({"name": "constant", "warmup_fraction": 0.25}, total=8)
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])


def test_epoch_interval_counts_in_epochs() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    config = build_scheduler(optimizer, {"interval": "epoch", "warmup_epochs": 2}, total_steps=100, steps_per_epoch=10)
    assert config["interval"] == "epoch"
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)  # epoch 0 of a 2-epoch warmup


def test_schedule_option_errors_name_the_key() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="unknown module.scheduler keys \\['warmup'\\]"):
        build_scheduler(optimizer, {"warmup": 3}, total_steps=10, steps_per_epoch=5)
    with pytest.raises(ValueError, match="several warmup lengths"):
        resolve_warmup_steps({"warmup_steps": 3, "warmup_epochs": 1}, total_steps=10, steps_per_epoch=5)
    with pytest.raises(ValueError, match="name='linear' is not one of"):
        build_scheduler(optimizer, {"name": "linear"}, total_steps=10, steps_per_epoch=5)
    with pytest.raises(ValueError, match="warmup_fraction must be in \\[0, 1\\)"):
        resolve_warmup_steps({"warmup_fraction": 1.5}, total_steps=10, steps_per_epoch=5)


def test_warmup_longer_than_training_is_clamped_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="does not fit in the 10 training steps"):
        assert resolve_warmup_steps({"warmup_steps": 50}, total_steps=10, steps_per_epoch=5) == 9


def test_inverse_sqrt_is_the_papers_schedule() -> None:
    d, warmup = 512, 4000
    peak = d**-0.5 * warmup**-0.5
    lrs = _lrs({"name": "inverse_sqrt", "warmup_steps": warmup}, total=10000, base_lr=peak)
    for step in (0, 1, 999, 3999, 4000, 9999):
        s = step + 1  # the paper counts steps from 1
        assert lrs[step] == pytest.approx(d**-0.5 * min(s**-0.5, s * warmup**-1.5), rel=1e-9)
    with pytest.raises(ValueError, match="inverse_sqrt is defined per optimizer step"):
        _lrs({"name": "inverse_sqrt", "warmup_epochs": 1, "interval": "epoch"}, total=100, base_lr=1.0)


def test_scale_lr_linear_and_sqrt_rules() -> None:
    from mmattn.lit import scale_lr

    assert scale_lr(1e-3, "linear", 1024, 256) == pytest.approx(4e-3)
    assert scale_lr(1e-3, "sqrt", 1024, 256) == pytest.approx(2e-3)
    assert scale_lr(1e-3, "linear", 64, 256) == pytest.approx(2.5e-4)
    with pytest.raises(ValueError, match="lr_scaling.rule='cubic' is not one of"):
        scale_lr(1e-3, "cubic", 1024, 256)
    with pytest.raises(ValueError, match="base_batch_size must be the positive batch size"):
        scale_lr(1e-3, "linear", 1024, 0)
