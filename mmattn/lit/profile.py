"""RunProfile: the model and speed part of the final report: parameters per block, training FLOPs per sample,
and the throughput of the last training epoch."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["RunProfile", "parameters_per_block"]


def parameters_per_block(net: torch.nn.Module) -> dict[str, int]:
    """Parameters of each top-level block of `net` (shared tensors counted once, where they first appear)."""
    seen: set[int] = set()
    counts: dict[str, int] = {}
    for name, child in net.named_children():
        n = 0
        for p in child.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        counts[name] = n
    direct = sum(p.numel() for p in net.parameters(recurse=False) if id(p) not in seen)
    if direct:
        counts["(own parameters)"] = direct
    return counts


class RunProfile(pl.Callback):
    """Measure the run and put it in the final report.

    Logs `profile/params` (trainable and frozen), `profile/train_gflops_per_sample` (forward + backward of the
    first training step, counted by `torch.utils.flop_counter.FlopCounterMode`, divided by its examples) and
    `profile/samples_per_s` (examples of the last training epoch over its wall time, all ranks together); they reach
    `metrics.json` and the summary table, which `mmattn-train` precedes with `blocks_table()`, the parameters per
    block of `module.net`.

    Args:
        count_flops: Count the FLOPs of the first training step (a slower step; off for compiled nets, whose
            kernels the counter cannot see).
    """

    def __init__(self, count_flops: bool = True) -> None:
        self.count_flops = count_flops
        self._counter: FlopCounterMode | None = None
        self._flops_batch = 0
        self._epoch_start = 0.0
        self._samples = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        """Start the FLOP counter on the first step of the run; count the examples of the epoch."""
        self._samples += pl_module.batch_size(batch)
        compiled = getattr(pl_module, "compile_net", False)
        if self.count_flops and not compiled and trainer.global_step == 0 and batch_idx == 0 and not self._flops_batch:
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
            self._flops_batch = pl_module.batch_size(batch)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int):
        """Stop the FLOP counter after the step that it watched (its backward included)."""
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            flops = self._counter.get_total_flops()
            self._counter = None
            if flops:
                pl_module.log("profile/train_gflops_per_sample", flops / self._flops_batch / 1e9, rank_zero_only=True)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the epoch's clock."""
        self._epoch_start = time.perf_counter()
        self._samples = 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the parameter count and the examples per second of this epoch, all ranks together."""
        pl_module.log("profile/params", float(sum(self._blocks.values())), rank_zero_only=True)
        seconds = time.perf_counter() - self._epoch_start
        if self._samples and seconds > 0:
            rate = self._samples / seconds * trainer.world_size
            pl_module.log("profile/samples_per_s", rate, rank_zero_only=True)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Count the parameters per block."""
        net = getattr(pl_module, "net", pl_module)
        self._blocks = parameters_per_block(net)
        if not self._blocks:
            rank_zero_warn(f"{type(net).__name__} has no sub-modules to report parameters of")

    def blocks_table(self):
        """The parameters per block as a rich Table (None before fit started)."""
        blocks = getattr(self, "_blocks", None)
        if not blocks:
            return None
        from rich.table import Table

        table = Table(title="parameters per block")
        table.add_column("block")
        table.add_column("parameters", justify="right")
        for name, n in blocks.items():
            if n:  # dropout, activations and tied layers own nothing
                table.add_row(name, f"{n:,}")
        table.add_row("total", f"{sum(blocks.values()):,}")
        return table
