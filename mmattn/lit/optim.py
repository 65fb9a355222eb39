"""Weight-decay parameter groups and the warmup + cosine learning-rate schedule, built from config values."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from lightning.pytorch.utilities import rank_zero_warn
from timm.optim import param_groups_weight_decay
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

# Keys accepted in `module.scheduler`; anything else is a typo we would otherwise ignore silently.
SCHEDULER_KEYS = ("name", "warmup_steps", "warmup_epochs", "warmup_fraction", "min_lr", "interval")
SCHEDULER_NAMES = ("cosine", "constant", "inverse_sqrt")


def weight_decay_groups(
    net: nn.Module, weight_decay: float, no_weight_decay: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Split the trainable parameters of `net` into a decayed group and a group without weight decay.

    Biases, norm weights and every other 1-D parameter get no decay, nor do the names (fnmatch patterns, relative
    to `net`) in `no_weight_decay` and those returned by `net.no_weight_decay()` when the net defines it (timm's
    convention, e.g. `pos_embed`, `cls_token`).

    Args:
        net: The network whose parameters are grouped.
        weight_decay: Decay applied to the decayed group.
        no_weight_decay: Extra parameter names or patterns to exclude from decay.

    Returns:
        Optimizer parameter groups, each with its own `weight_decay`.

    Raises:
        ValueError: `weight_decay` is negative.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}; set module.weight_decay to 0 or more")
    skip = set(no_weight_decay)
    if callable(getattr(net, "no_weight_decay", None)):
        skip |= set(net.no_weight_decay())
    return param_groups_weight_decay(net, weight_decay=weight_decay, no_weight_decay_list=skip)


LR_SCALING_RULES = ("linear", "sqrt")


def scale_lr(lr: float, rule: str, batch: int, base_batch: int | None) -> float:
    """The learning rate for an effective batch of `batch`, given `lr` tuned at `base_batch`.

    `linear` multiplies by batch / base_batch (Goyal et al., 2017, for SGD on large batches); `sqrt` by its square
    root (the usual choice for Adam-type optimizers).

    Raises:
        ValueError: An unknown rule, or a base batch size that is not positive.
    """
    if rule not in LR_SCALING_RULES:
        raise ValueError(f"lr_scaling.rule={rule!r} is not one of {list(LR_SCALING_RULES)} (or null for no scaling)")
    if base_batch is None or int(base_batch) < 1:
        raise ValueError(
            f"lr_scaling.base_batch_size must be the positive batch size lr was tuned at, got {base_batch}"
        )
    ratio = batch / int(base_batch)
    return lr * (ratio if rule == "linear" else math.sqrt(ratio))


def resolve_warmup_steps(options: Mapping[str, Any], *, total_steps: int, steps_per_epoch: int | float) -> int:
    """Turn the one warmup option that is set (steps, epochs or a fraction of training) into optimizer steps."""
    given = {k: options.get(k) for k in ("warmup_steps", "warmup_epochs", "warmup_fraction") if options.get(k)}
    if len(given) > 1:
        raise ValueError(
            f"module.scheduler sets several warmup lengths {given}; keep one of warmup_steps, warmup_epochs, "
            "warmup_fraction and set the others to 0 or null"
        )
    if not given:
        return 0
    key, value = next(iter(given.items()))
    if value < 0:
        raise ValueError(f"module.scheduler.{key} must be >= 0, got {value}")
    if key == "warmup_steps":
        steps = int(value)
    elif key == "warmup_epochs":
        steps = round(value * steps_per_epoch)
    else:
        if value >= 1:
            raise ValueError(f"module.scheduler.warmup_fraction must be in [0, 1), got {value}")
        steps = round(value * total_steps)
    if steps >= total_steps:
        # Short debugging runs (limit_train_batches, max_steps) hit this; warn rather than refuse to run.
        rank_zero_warn(
            f"warmup of {steps} steps (module.scheduler.{key}={value}) does not fit in the {total_steps} training "
            f"steps; warming up for {total_steps - 1} steps instead. Shorten the warmup or train longer"
        )
        steps = max(0, total_steps - 1)
    return steps


def inverse_sqrt_factor(step: int, *, warmup_steps: int) -> float:
    """Multiplier at optimizer step `step` (0-based) of "Attention is all you need": linear warmup to the base rate,
    then decay with 1 / sqrt(step), i.e. d^-0.5 * min(s^-0.5, s * warmup^-1.5) rescaled to peak at the base rate."""
    s = step + 1
    if warmup_steps < 1:
        return s**-0.5
    return min(s / warmup_steps, (warmup_steps / s) ** 0.5)


def warmup_cosine_factor(step: int, *, warmup_steps: int, total_steps: int, min_factor: float, cosine: bool) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based).

    Linear warmup from base/warmup_steps to base over `warmup_steps` steps, then a half-cosine from base down to
    `min_factor * base` at `total_steps` (or a constant base when `cosine` is False).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if not cosine:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: Optimizer, options: Mapping[str, Any], *, total_steps: int, steps_per_epoch: int | float
) -> dict[str, Any]:
    """Build the Lightning `lr_scheduler` config (a LambdaLR stepped per step or per epoch) from `options`.

    Args:
        optimizer: Optimizer whose groups' current `lr` is the peak learning rate.
        options: `module.scheduler`: `name` (cosine | constant | inverse_sqrt), one of `warmup_steps` /
            `warmup_epochs` / `warmup_fraction`, `min_lr` (absolute, reached at the end) and `interval` (step | epoch).
        total_steps: Optimizer steps of the whole run (`trainer.estimated_stepping_batches`).
        steps_per_epoch: Optimizer steps in one epoch.

    Returns:
        `{"scheduler": LambdaLR, "interval": ..., "frequency": 1}`.

    Raises:
        ValueError: Unknown keys or names, warmup longer than training, negative `min_lr`.
    """
    unknown = sorted(set(options) - set(SCHEDULER_KEYS))
    if unknown:
        raise ValueError(f"unknown module.scheduler keys {unknown}; allowed keys are {list(SCHEDULER_KEYS)}")
    name = options.get("name", "cosine")
    if name not in SCHEDULER_NAMES:
        raise ValueError(f"module.scheduler.name={name!r} is not one of {list(SCHEDULER_NAMES)}")
    interval = options.get("interval", "step")
    if interval not in ("step", "epoch"):
        raise ValueError(f"module.scheduler.interval={interval!r} must be 'step' or 'epoch'")
    min_lr = float(options.get("min_lr") or 0.0)
    if min_lr < 0:
        raise ValueError(f"module.scheduler.min_lr must be >= 0, got {min_lr}")

    warmup = resolve_warmup_steps(options, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    total = total_steps
    if interval == "epoch":
        # The schedule then advances once per epoch, so express both lengths in epochs.
        if options.get("warmup_steps"):
            raise ValueError("module.scheduler.warmup_steps needs interval=step; use warmup_epochs with interval=epoch")
        total = max(1, math.ceil(total_steps / steps_per_epoch))
        warmup = min(total - 1, round(warmup / steps_per_epoch))

    lambdas: list[Callable[[int], float]] = []
    if name == "inverse_sqrt":
        if interval != "step":
            raise ValueError("module.scheduler.name=inverse_sqrt is defined per optimizer step; set interval=step")
        lambdas = [partial(inverse_sqrt_factor, warmup_steps=warmup)] * len(optimizer.param_groups)
        return {"scheduler": LambdaLR(optimizer, lambdas), "interval": interval, "frequency": 1}
    for group in optimizer.param_groups:
        base = float(group["lr"])
        min_factor = min_lr / base if base > 0 else 0.0
        lambdas.append(
            partial(
                warmup_cosine_factor,
                warmup_steps=warmup,
                total_steps=total,
                min_factor=min_factor,
                cosine=name == "cosine",
            )
        )
    return {"scheduler": LambdaLR(optimizer, lambdas), "interval": interval, "frequency": 1}


def configure_optimization(
    module: Any,
    net: nn.Module,
    optimizer_factory: Callable[..., Optimizer] | None,
    weight_decay: float,
    scheduler_options: Mapping[str, Any] | None,
) -> Any:
    """What `LightningModule.configure_optimizers` returns: the optimizer over weight-decay groups of `net`, plus the
    per-step schedule of `scheduler_options` sized from the trainer's run length."""
    if optimizer_factory is None:
        raise ValueError(
            f"{type(module).__name__} has no optimizer; set module.optimizer, e.g. "
            "{_target_: torch.optim.AdamW, _partial_: true, lr: 1e-3}"
        )
    optimizer = optimizer_factory(weight_decay_groups(net, weight_decay))
    if not scheduler_options:
        return optimizer
    trainer = module.trainer
    total_steps = trainer.estimated_stepping_batches
    if not math.isfinite(total_steps):
        raise ValueError(
            "the learning-rate schedule needs a finite run length; set trainer.max_epochs or trainer.max_steps "
            "(or module.scheduler=null for a constant learning rate)"
        )
    # estimated_stepping_batches loaded the train loader, so num_training_batches is known (per process).
    batches = trainer.num_training_batches
    steps_per_epoch = math.ceil(batches / trainer.accumulate_grad_batches) if math.isfinite(batches) else total_steps
    scheduler = build_scheduler(
        optimizer, scheduler_options, total_steps=int(total_steps), steps_per_epoch=max(1, steps_per_epoch)
    )
    return {"optimizer": optimizer, "lr_scheduler": scheduler}
