"""AttentionMaps: attention pictures of a fixed small validation batch logged to TensorBoard during training."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.utilities import rank_zero_warn

__all__ = ["AttentionMaps"]


class AttentionMaps(pl.Callback):
    """Every `every_n_epochs` validations, draw the attention of the module's net on the same `num_samples` examples
    (taken from the first validation batch) and log the figures to every TensorBoard logger of the run (`attention/`
    tags: rollout and class-token maps for ViT / AST, cross-attention alignments for seq2seq models).

    The pictures come from `mmattn.viz.attention`; matplotlib is needed (`pip install 'mmattn[viz]'`). Only global
    rank 0 draws.

    Args:
        every_n_epochs: Draw after every this many validation epochs.
        num_samples: Examples drawn.

    Raises:
        ValueError: `every_n_epochs` or `num_samples` below 1.
    """

    def __init__(self, every_n_epochs: int = 1, num_samples: int = 4) -> None:
        if every_n_epochs < 1 or num_samples < 1:
            raise ValueError(f"every_n_epochs ({every_n_epochs}) and num_samples ({num_samples}) must be >= 1")
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self._batch: Any = None
        self._warned = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fail early (before any training) when matplotlib is missing."""
        from mmattn.viz import require_matplotlib

        require_matplotlib()

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Keep the first validation batch (on the CPU) for every later drawing; the module picks its examples."""
        if self._batch is None and batch_idx == 0 and trainer.is_global_zero:
            self._batch = move_data_to_device(batch, "cpu")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Draw and log, on global rank 0, every `every_n_epochs` epochs (not during the sanity check)."""
        if trainer.sanity_checking or not trainer.is_global_zero or self._batch is None:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        writers = [lg.experiment for lg in trainer.loggers if isinstance(lg, pl.loggers.TensorBoardLogger)]
        if not writers:
            if not self._warned:
                rank_zero_warn("callbacks.attention_maps logs to TensorBoard: add logger=tensorboard (or logger=many)")
                self._warned = True
            return
        from mmattn.viz.attention import attention_figures

        classes = getattr(trainer.datamodule, "classes", None) if trainer.datamodule is not None else None
        was_training = pl_module.training
        batch = move_data_to_device(self._batch, pl_module.device)
        figures = attention_figures(pl_module, batch, self.num_samples, classes)
        pl_module.train(was_training)
        import matplotlib.pyplot as plt

        for name, fig in figures:
            for writer in writers:
                writer.add_figure(f"attention/{name}", fig, global_step=trainer.global_step, close=False)
            plt.close(fig)
