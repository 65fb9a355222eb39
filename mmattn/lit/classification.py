"""ClassificationModule: trains any encoder adapter that maps inputs to class logits (images, spectrograms, ...)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from mmattn.data.predict import PredictInputs
from mmattn.lit.base import MMattnModule

Batch = Sequence[torch.Tensor]


def _read_one(reader: Any, path: str) -> torch.Tensor:
    """One file as the evaluation data is read (the datamodule's `load_inputs`), without its per-file notices."""
    import warnings

    # Resizing or resampling is what prediction on arbitrary files does; a warning per file would bury the log.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return reader.load_inputs([path])[0]


def top_classes(logits: torch.Tensor, k: int, classes: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """`{"labels", "probs", "ids"}` of the k most likely classes of each row of logits [B, C], most likely first
    (labels are the class names, or the ids as strings without them)."""
    probs = torch.softmax(logits.float(), dim=-1)
    values, ids = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [
        {"labels": [classes[i] if classes else str(i) for i in row_i], "probs": row_p, "ids": row_i}
        for row_p, row_i in zip(values.tolist(), ids.tolist())
    ]


def _accuracy_names(top_k: Sequence[int], num_classes: int) -> dict[str, int]:
    """`{metric name: k}` of the top-k accuracies reported on val/test: acc (k=1), acc_top{k} for k < num_classes."""
    names = {("acc" if k == 1 else f"acc_top{k}"): k for k in sorted({int(k) for k in top_k})}
    return {name: k for name, k in names.items() if k == 1 or k < num_classes}


class ClassificationModule(MMattnModule):
    """Supervised classification of `(inputs, labels)` batches with a network `net` that returns logits.

    Nothing here depends on the modality: `net` maps a batch of inputs to `[B, num_classes]` logits.

    Args:
        net: The network, called as `net(inputs)`, or its config (see `MMattnModule`).
        num_classes: Number of classes; checked against `net.num_classes` and the datamodule's `num_classes`.
        optimizer: Partially applied optimizer class (Hydra `_partial_: true`), completed with parameter groups.
            Only needed for training.
        scheduler: Learning-rate schedule options for `mmattn.lit.optim.build_scheduler`; None = constant lr.
        weight_decay: Decay for weights; biases, norms, 1-D params and `net.no_weight_decay()` get none.
        label_smoothing: Label smoothing of the training cross-entropy (validation and test use none).
        mixup: Callable `(inputs, labels) -> (inputs, soft_targets)` applied to training batches, e.g. a
            `timm.data.Mixup`; the loss then uses soft targets and `train/acc` is not logged.
        compile: `torch.compile` the network in place (parameter names and checkpoints stay the same).
        top_k: Accuracies to report on validation and test; k=1 is `acc`, others `acc_top{k}` (only if k < classes).
        data: The data config (see `MMattnModule`); `mmattn.classify` reads files with it.
        classes: Class names in label order (taken from the datamodule when training; `mmattn.classify` reports
            them).

    Raises:
        ValueError: Inconsistent class counts or out-of-range options.
    """

    def __init__(
        self,
        net: nn.Module | Mapping[str, Any],
        num_classes: int,
        *,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        weight_decay: float = 0.0,
        label_smoothing: float = 0.0,
        mixup: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
        compile: bool = False,
        top_k: Sequence[int] = (1, 5),
        data: Mapping[str, Any] | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        super().__init__(
            net, optimizer=optimizer, scheduler=scheduler, weight_decay=weight_decay, compile=compile, data=data
        )
        net = self.net
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}; set data.num_classes")
        net_classes = getattr(net, "num_classes", None)
        if isinstance(net_classes, int) and net_classes != num_classes:
            raise ValueError(
                f"the network has {net_classes} outputs but num_classes={num_classes}; set model.num_classes and "
                "module.num_classes to the same value (both default to ${data.num_classes})"
            )
        mixup_classes = getattr(mixup, "num_classes", None)
        if isinstance(mixup_classes, int) and mixup_classes != num_classes:
            raise ValueError(
                f"mixup.num_classes={mixup_classes} but num_classes={num_classes}; set module.mixup.num_classes to "
                "${data.num_classes}"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}; fix module.label_smoothing")
        if not top_k or any(int(k) < 1 for k in top_k):
            raise ValueError(f"top_k must be a non-empty list of positive ints, got {list(top_k)}; fix module.top_k")
        if classes is not None and len(classes) != int(num_classes):
            raise ValueError(f"{len(classes)} class names for num_classes={num_classes}; give one name per class")

        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.mixup = mixup
        self.classes = None if classes is None else [str(c) for c in classes]
        self._warned_odd_batch = False
        # Plain values only: checkpoints must load with weights_only=True, and `optimizer` and `mixup` are rebuilt
        # from the config rather than pickled.
        self.save_module_hyperparameters(
            {
                "num_classes": self.num_classes,
                "label_smoothing": self.label_smoothing,
                "top_k": [int(k) for k in top_k],
                "classes": self.classes,
            }
        )

        self.train_metrics = MetricCollection({"acc": self._accuracy(1)}, prefix="train/")
        val_test = _accuracy_names(top_k, self.num_classes)
        self.val_metrics = MetricCollection({n: self._accuracy(k) for n, k in val_test.items()}, prefix="val/")
        self.test_metrics = MetricCollection({n: self._accuracy(k) for n, k in val_test.items()}, prefix="test/")

    @classmethod
    def metric_modes(cls, options: Mapping[str, Any]) -> dict[str, str]:
        """The validation keys a module built with `options` (its config) logs, each with "min" or "max"."""
        names = _accuracy_names(options.get("top_k", (1, 5)), int(options["num_classes"]))
        return {"val/loss": "min", **{f"val/{name}": "max" for name in names}}

    @classmethod
    def default_monitor(cls, options: Mapping[str, Any]) -> str:
        """The key checkpoints select by unless the config names one: top-1 accuracy."""
        return "val/acc"

    def _accuracy(self, k: int) -> MulticlassAccuracy:
        """Micro-averaged (plain) top-k accuracy."""
        return MulticlassAccuracy(num_classes=self.num_classes, top_k=k, average="micro")

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Return the logits `[B, num_classes]` of `inputs`."""
        return self.net(inputs)

    def setup(self, stage: str) -> None:
        """Check the datamodule's class count, take its class names, compile the net once if asked."""
        datamodule = self.run_datamodule()
        data_classes = getattr(datamodule, "num_classes", None)
        if data_classes is not None and int(data_classes) != self.num_classes:
            raise ValueError(
                f"the datamodule has {data_classes} classes but the module was built for num_classes="
                f"{self.num_classes}; set data.num_classes={data_classes} (model.num_classes and module.num_classes "
                "follow it through ${data.num_classes}) or point the data config at the right dataset"
            )
        names = getattr(datamodule, "classes", None)
        if names is not None and len(names) == self.num_classes:
            self.classes = self.hparams["classes"] = [str(c) for c in names]
        super().setup(stage)

    def _split(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Unpack an `(inputs, labels)` batch."""
        if not isinstance(batch, (list, tuple)) or len(batch) != 2:
            raise ValueError(
                f"ClassificationModule expects (inputs, labels) batches, got {type(batch).__name__}"
                f"{f' of length {len(batch)}' if isinstance(batch, (list, tuple)) else ''}"
            )
        return batch[0], batch[1]

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Cross-entropy on hard labels, or on mixed soft targets when `mixup` is set."""
        inputs, labels = self._split(batch)
        if self.mixup is not None and inputs.shape[0] >= 2:
            if inputs.shape[0] % 2:
                # timm's Mixup pairs samples, so it needs an even batch: drop one sample of this batch.
                if not self._warned_odd_batch:
                    rank_zero_warn(
                        f"mixup needs even batches; dropping one sample from a batch of {inputs.shape[0]} "
                        "(set an even data.batch_size and drop_last for the train loader to avoid it)"
                    )
                    self._warned_odd_batch = True
                inputs, labels = inputs[:-1], labels[:-1]
            inputs, targets = self.mixup(inputs, labels)
            loss = F.cross_entropy(self(inputs), targets)
        else:
            logits = self(inputs)
            loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
            if self.mixup is None:
                self.train_metrics.update(logits.detach(), labels)
                self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=labels.shape[0])
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=labels.shape[0])
        return loss

    def _eval_step(self, batch: Batch, metrics: MetricCollection, stage: str) -> torch.Tensor:
        """Shared validation/test step: plain cross-entropy and top-k accuracies."""
        inputs, labels = self._split(batch)
        logits = self(inputs)
        loss = F.cross_entropy(logits, labels)
        metrics.update(logits, labels)
        batch_size = labels.shape[0]
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch_size)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=batch_size)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Log `val/loss`, `val/acc` and `val/acc_top{k}`."""
        return self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Log `test/loss`, `test/acc` and `test/acc_top{k}`."""
        return self._eval_step(batch, self.test_metrics, "test")

    def batch_size(self, batch: Batch) -> int:
        """The number of labels of an `(inputs, labels)` batch."""
        return int(batch[1].shape[0])

    def attention_figures(
        self,
        batch: Batch,
        num_samples: int,
        *,
        classes: Sequence[str] | None = None,
        titles: Sequence[str] | None = None,
    ) -> list:
        """Class-token attention (rollout, last layer, per head) over the inputs, drawn by their modality's renderer.

        Raises:
            ValueError: The net is no family whose attention this draws, or its input has no renderer.
        """
        from mmattn.viz.attention import net_figures

        x, y = batch[0], batch[1][:num_samples]
        names = classes or self.classes
        if titles is None:
            titles = [names[int(c)] if names else f"class {int(c)}" for c in y]
        return net_figures(self.net, x, num_samples, titles=titles)

    def file_attention_figures(self, paths: Sequence[str]) -> list:
        """Attention pictures of files, read as the evaluation data is, titled by file name."""
        x = self.read_files(list(paths))
        return self.attention_figures(
            (x, torch.zeros(len(paths), dtype=torch.long)), len(paths), titles=[Path(p).name for p in paths]
        )

    def predict_inputs(self) -> PredictInputs:
        """Files, read as the evaluation data is (through the recorded data config), batched by stacking."""
        reader = self.data_reader()
        read = functools.partial(_read_one, reader)
        return PredictInputs(
            "files",
            read=read,
            collate=torch.stack,
            extensions=getattr(reader, "extensions", None),
            manifest_keys=getattr(reader, "manifest_keys", ()),
        )

    def configure_prediction(self, *, top_k: int = 5) -> None:
        """Options of `predict_step`: how many classes each prediction lists."""
        if int(top_k) < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.predict_top_k = int(top_k)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """The top-k classes and probabilities of each readable input of a `mmattn.data.predict` batch."""
        if batch["inputs"] is None:
            return []
        return top_classes(self(batch["inputs"]), getattr(self, "predict_top_k", 5), self.classes)
