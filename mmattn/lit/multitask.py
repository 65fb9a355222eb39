"""MultiTaskModule: one shared core trained on several tasks at once (images, audio, text), each task with its own
adapter, head, loss and metrics.

Every task is the single-task module its own run would train (`ClassificationModule`, `Seq2SeqModule`, ...), built
around its network in a `MultiTaskNet`, so losses, decoding, metrics and tokenizers are theirs. This module routes
each `(source, batch)` training step of a `MultiTaskDataModule` to its task, weights the loss, and evaluates each source
(a task's dataset) on its own loaders; a source's logs go under its name (`val/<task>/acc`, or
`val/<task>/<dataset>/acc` for a task of several datasets, each with its own metrics). Checkpoints are selected by
`val/score`, the mean of every source's selection metric on a 0-1 scale (`normalized`), or by any source's key.

Under DDP every rank runs the same task at a step (the mixture's sequence is seeded alike), and the parameters of the
other tasks take part with a zero gradient, so DDP needs no `find_unused_parameters`; their gradients are dropped
before the optimizer step, so AdamW neither decays nor moves a task that did not train.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import Metric

from mmattn.data.multitask import MultiTaskDataModule, check_task_entries, task_sources
from mmattn.data.predict import PredictInputs
from mmattn.lit.base import MMattnModule, plain
from mmattn.models.multitask import MultiTaskNet

__all__ = ["TASKS_KEY", "MultiTaskModule", "normalized"]

# Where a multi-task checkpoint keeps what each task's module adds to a checkpoint (its tokenizer, ...).
TASKS_KEY = "mmattn_tasks"
# Set on the multi-task module, not per task: one optimizer and schedule train every task.
_SHARED_OPTIONS = ("net", "optimizer", "scheduler", "weight_decay", "compile", "data")
_PERCENT = ("bleu", "chrf")


def normalized(metric: str, value: float, mode: str) -> float:
    """A task's metric on a 0-1 higher-is-better scale: BLEU/chrF / 100, scores as they are, exp(-loss) for losses,
    1 - rate for error rates (WER, CER)."""
    if metric in _PERCENT:
        return value / 100.0
    if mode == "max":
        return value
    if metric.endswith("loss"):
        return math.exp(-value)
    return max(0.0, 1.0 - value)


def task_key(key: str, task: str) -> str:
    """`val/acc` of task `task` as logged by the multi-task module: `val/<task>/acc`."""
    stage, _, rest = key.partition("/")
    return f"{stage}/{task}/{rest}"


def _module_class(entry: Mapping[str, Any], name: str) -> tuple[type[MMattnModule], dict[str, Any]]:
    """The single-task module class a task entry names, and its options (checked)."""
    from mmattn.build import resolve_class

    config = dict(plain(entry["module"], f"tasks.{name}.module"))
    cls = resolve_class(str(config["_target_"]), where=f"tasks.{name}.module", kinds=(MMattnModule,))
    if issubclass(cls, MultiTaskModule):
        raise ValueError(f"tasks.{name}.module is a MultiTaskModule; a task needs a single-task module")
    options = {k: v for k, v in config.items() if not k.startswith("_")}
    if shared := [k for k in _SHARED_OPTIONS if k in options]:
        raise ValueError(
            f"tasks.{name}.module.{shared[0]} is set for one task, but one optimizer, schedule and network train "
            f"every task: set module.{shared[0]} of the multi-task module instead"
        )
    return cls, options


def _known_modalities() -> dict[str, str]:
    """`{modality: adapter class}` of every input embedding class loaded so far."""
    from mmattn.modality import InputEmbedding

    found: dict[str, str] = {}
    stack = list(InputEmbedding.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        found.setdefault(str(cls.modality), cls.__name__)
    return found


class _EpochValues:
    """What the tasks logged this evaluation epoch: epoch values as given, per-step tensors as their weighted mean."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sums: dict[str, tuple[float, float]] = {}

    def add(self, name: str, value: Any, weight: float | None, per_step: bool) -> None:
        if per_step and not isinstance(value, Metric):
            total, count = self.sums.get(name, (0.0, 0.0))
            w = float(weight or 1)
            self.sums[name] = (total + float(value) * w, count + w)
        else:
            self.values[name] = value

    def get(self, name: str) -> float | None:
        value = self.values.get(name)
        if isinstance(value, Metric):
            return float(value.compute())
        if value is not None:
            return float(value)
        if name in self.sums:
            total, count = self.sums[name]
            return total / count
        return None


class MultiTaskModule(MMattnModule):
    """Several tasks on one shared core (see the module docstring).

    Args:
        net: A `MultiTaskNet` (or its config) holding every task's network around the shared core.
        tasks: The task entries (`mmattn.data.multitask`): `module` (a single-task module config: its class and
            options), `modality`, `loss_weight`, `monitor`, plus `data` and `model` (recorded for each task's export).
        optimizer: Partial optimizer over every parameter (or its config).
        scheduler: Learning-rate schedule options (`mmattn.lit.optim.build_scheduler`).
        weight_decay: Decay of the weight matrices.
        compile: torch.compile the network at setup.
        data: The data config (a `MultiTaskDataModule`'s), recorded for evaluation.
        sync_check_steps: Under DDP, check at the first this many steps of a fit that every rank runs the same task
            (one tiny all-gather a step); 0 = never.

    Raises:
        ValueError: A bad task entry, a task whose declared modality is unknown or not its network's input, tasks that
            differ from the network's, or a monitor its task never logs.
    """

    def __init__(
        self,
        net: MultiTaskNet | Mapping[str, Any],
        tasks: Any,
        *,
        optimizer: Callable[..., torch.optim.Optimizer] | Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        weight_decay: float = 0.0,
        compile: bool = False,
        data: Mapping[str, Any] | None = None,
        sync_check_steps: int = 10,
    ) -> None:
        if isinstance(optimizer, Mapping) or hasattr(optimizer, "_target_"):
            # The module config is built without recursion (its task entries hold configs, not objects).
            from hydra.utils import instantiate

            optimizer = instantiate(optimizer)
        scheduler = plain(scheduler, "module.scheduler") if scheduler is not None else None
        data = plain(data, "data") if data is not None else None
        if isinstance(net, Mapping):
            net = self._net_config(plain(net, "net"))
        super().__init__(
            net, optimizer=optimizer, scheduler=scheduler, weight_decay=weight_decay, compile=compile, data=data
        )
        if not isinstance(self.net, MultiTaskNet):
            raise ValueError(f"MultiTaskModule needs a MultiTaskNet (model=multitask), got {type(self.net).__name__}")
        entries = {name: plain(entry, f"tasks.{name}") for name, entry in check_task_entries(tasks).items()}
        if sorted(entries) != sorted(self.net.names):
            raise ValueError(
                f"module tasks {sorted(entries)} differ from the network's {sorted(self.net.names)}; build both from "
                "the same tasks config"
            )
        self._check_modalities(entries)
        self.sources = task_sources(entries)
        children: dict[str, MMattnModule] = {}
        self.loss_weights = {name: float(entry.get("loss_weight") or 1.0) for name, entry in entries.items()}
        self.monitors: dict[str, tuple[str, str]] = {}
        for source, (task, data, _) in self.sources.items():
            cls, options = _module_class(entries[task], task)
            child = cls(net=self.net.tasks[task], data=data, **options)
            child.record_configs(net=entries[task]["model"])
            # The task network is registered once, in the MultiTaskNet; the source's module only uses it.
            del child._modules["net"]
            object.__setattr__(child, "net", self.net.tasks[task])
            child._task_prefix = source
            child._log_sink = self._remember
            children[source] = child
            self.monitors[source] = self._monitor(task, entries[task], cls, options)
        # One module per source: its task's loss, and metrics of its own.
        self.source_modules = nn.ModuleDict(children)
        self.sync_check_steps = int(sync_check_steps)
        self._active: set[str] = set()
        self._idle: dict[str, list[nn.Parameter]] = {}
        self._epoch = _EpochValues()
        self._synced_steps = 0
        self.save_module_hyperparameters({"tasks": entries, "sync_check_steps": self.sync_check_steps})

    # -------------------------------------------------------------------------------------------- configuration

    @staticmethod
    def _net_config(config: Mapping[str, Any]) -> dict[str, Any]:
        """A `MultiTaskNet` config reduced to each task's network config (what a checkpoint needs to rebuild it)."""
        tasks = config.get("tasks") or {}
        models = {
            name: entry["model"] if isinstance(entry, Mapping) and "model" in entry else entry
            for name, entry in (tasks.items() if isinstance(tasks, Mapping) else [])
        }
        return {**{k: v for k, v in config.items() if k != "tasks"}, "tasks": models}

    def record_configs(self, *, net: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None) -> None:
        """Record the network's config (each task's network only) and the data's (each task's data only)."""
        if net is not None:
            net = self._net_config(net)
        if data is not None:
            tasks = data.get("tasks") or {}
            kept = ("data", "sampling_weight")
            data = {
                **{k: v for k, v in data.items() if k != "tasks"},
                "tasks": {name: {k: entry[k] for k in kept if k in entry} for name, entry in tasks.items()},
            }
        super().record_configs(net=net, data=data)

    def _check_modalities(self, entries: Mapping[str, Mapping[str, Any]]) -> None:
        known = _known_modalities()
        for name, entry in entries.items():
            declared, actual = str(entry["modality"]), self.net.modality(name)
            if declared not in known:
                listed = ", ".join(f"{m} ({c})" for m, c in sorted(known.items()))
                raise ValueError(
                    f"task {name!r} has unknown modality {declared!r}; the modalities of the loaded input embeddings "
                    f"are {listed}: set tasks.{name}.modality to its network's ({actual})"
                )
            if declared != actual:
                raise ValueError(
                    f"task {name!r} declares modality {declared!r}, but its network's input is "
                    f"{self.net.describe(name)}; fix tasks.{name}.modality or tasks.{name}.model"
                )

    @staticmethod
    def _monitor(name: str, entry: Mapping[str, Any], cls: type[MMattnModule], options: Mapping[str, Any]) -> tuple:
        """(validation key of the task's own module, its mode) that the task's share of `val/score` reads."""
        modes = cls.metric_modes(options)
        key = entry.get("monitor") or cls.default_monitor(options)
        key = key if str(key).startswith("val/") else f"val/{key}"
        if key.startswith(f"val/{name}/"):
            key = "val/" + key[len(f"val/{name}/") :]
        if key not in modes:
            raise ValueError(
                f"tasks.{name}.monitor={entry.get('monitor')} is never logged by its {cls.__name__} (it logs "
                f"{', '.join(sorted(modes))})"
            )
        return key, modes[key]

    @classmethod
    def metric_modes(cls, options: Mapping[str, Any]) -> dict[str, str]:
        """`val/score` and every task's validation keys, under its name (`val/<task>/acc`)."""
        modes = {"val/score": "max"}
        entries = check_task_entries(options["tasks"])
        for source, (task, _, _) in task_sources(entries).items():
            task_cls, task_options = _module_class(entries[task], task)
            modes |= {task_key(key, source): mode for key, mode in task_cls.metric_modes(task_options).items()}
        return modes

    @classmethod
    def default_monitor(cls, options: Mapping[str, Any]) -> str:
        """The mean of the tasks' normalised selection metrics."""
        return "val/score"

    # ---------------------------------------------------------------------------------------------- the tasks

    @property
    def names(self) -> list[str]:
        """The task names."""
        return self.net.names

    def _source(self, name: str) -> MMattnModule:
        """Source `name`'s module, attached to this module's trainer and current hook (so its logging works)."""
        child = self.source_modules[name]
        child._trainer = self._trainer
        child._current_fx_name = self._current_fx_name
        return child  # type: ignore[return-value]

    def _remember(self, name: str, value: Any) -> None:
        """A task's log (from its `log`): kept for `val/score`."""
        if name.startswith(("val/", "test/")):
            fx = self._current_fx_name or ""
            self._epoch.add(name, value, None, per_step=fx.endswith("_step"))

    def setup(self, stage: str) -> None:
        """Give each task its datamodule and this trainer, then its own setup (tokenizers, class checks)."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        for name, child in self.source_modules.items():
            child._trainer = self._trainer
            if isinstance(datamodule, MultiTaskDataModule):
                child._task_datamodule = datamodule.datamodules.get(name)
            if stage == "fit" and child._task_datamodule is None:
                raise ValueError(f"{name!r} has no datamodule in this run; train with the multi-task data config")
            child.setup(stage)
        if self.compile_net and not getattr(self, "_compiled", False):
            # The task modules call each task network, never the MultiTaskNet's own forward: compile those.
            for net in self.net.tasks.values():
                net.compile()
            self._compiled = True
        super().setup(stage)

    def on_train_start(self) -> None:
        """Restore the loader position, and print each task: its input, own parameters, sampling share, weight."""
        super().on_train_start()
        mixed = getattr(self._trainer.datamodule, "mixed", None) if self._trainer is not None else None
        core = sum(p.numel() for p in self.net.core.parameters())
        lines = [f"multi-task training: shared {self.net.shared_name} {core / 1e6:.2f}M parameters"]
        for name in self.names:
            own = sum(p.numel() for p in self.net.task_parameters(name))
            shares = [
                f"{source} p={mixed.probabilities[source]:.3f}"
                for source, (task, _, _) in self.sources.items()
                if mixed is not None and task == name and source in mixed.probabilities
            ]
            lines.append(
                f"  {name}: {self.net.describe(name)}, {own / 1e6:.2f}M own parameters, {', '.join(shares)}, "
                f"loss weight {self.loss_weights[name]:g}"
            )
        rank_zero_info("\n".join(lines))

    # ------------------------------------------------------------------------------------------------ training

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Forget the step values of the previous step: a task's step loss is not logged again at other tasks' steps.

        Lightning keeps a step-only value until the epoch ends and logs it at every step after; here a key is logged
        by some steps only, so its stale value would show up (in loggers and the progress bar) as if every step had
        trained that task.
        """
        results = getattr(self._trainer, "_results", None) if self._trainer is not None else None
        for result in (results or {}).values():
            meta = getattr(result, "meta", None)
            if meta is not None and meta.on_step and not meta.on_epoch and getattr(result, "is_tensor", False):
                result.reset()

    def training_step(self, batch: tuple[str, Any], batch_idx: int) -> Tensor:
        """The step's source trains its task on its batch; the loss is weighted by the task's `loss_weight`."""
        source, task_batch = batch
        self._check_same_task(source)
        name = self.sources[source].task
        loss = self._source(source).training_step(task_batch, batch_idx) * self.loss_weights[name]
        self._active.add(name)
        if self._trainer is not None and self.trainer.world_size > 1:
            # DDP waits for a gradient of every parameter: the other tasks' take part with zero.
            idle = self._idle_parameters(name)
            if idle:
                loss = loss + 0.0 * sum(p.reshape(-1)[0] for p in idle)
        size = self.source_modules[source].batch_size(task_batch)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=size)
        datamodule = self.trainer.datamodule
        if isinstance(datamodule, MultiTaskDataModule):
            shares = {f"train/share/{n}": v for n, v in datamodule.shares().items()}
            self.log_dict(shares, on_step=True, on_epoch=False, batch_size=size)
        return loss

    def _idle_parameters(self, name: str) -> list[nn.Parameter]:
        """The parameters of the other tasks that task `name` does not use."""
        if name not in self._idle:
            used = {id(p) for p in self.net.tasks[name].parameters()}
            idle = {id(p): p for other in self.names if other != name for p in self.net.task_parameters(other)}
            self._idle[name] = [p for key, p in idle.items() if key not in used and p.requires_grad]
        return self._idle[name]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Drop the (zero) gradients of tasks that did not train since the last step: AdamW then leaves them be."""
        if self._active:
            used = {id(p) for name in self._active for p in self.net.tasks[name].parameters()}
            for name in self.names:
                if name not in self._active:
                    for p in self.net.task_parameters(name):
                        if id(p) not in used:
                            p.grad = None
        self._active.clear()

    def _check_same_task(self, source: str) -> None:
        """Under DDP, stop with one line if the ranks run different sources at this step (the first steps of a fit)."""
        if self._trainer is None or self.trainer.world_size < 2 or self._synced_steps >= self.sync_check_steps:
            return
        self._synced_steps += 1
        names = list(self.sources)
        index = torch.tensor([names.index(source)], device=self.device)
        ranks = [names[i] for i in self.all_gather(index).reshape(-1).tolist()]
        if len(set(ranks)) > 1:
            raise RuntimeError(
                f"the ranks run different tasks at step {self.global_step} ({', '.join(ranks)} on ranks 0..): every "
                "rank must draw the same task sequence (MultiTaskDataModule's seed), or DDP would mix their gradients"
            )

    # ------------------------------------------------------------------------------------------------ evaluation

    def _eval_names(self) -> list[str]:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return datamodule.names if isinstance(datamodule, MultiTaskDataModule) else list(self.sources)

    def on_validation_epoch_start(self) -> None:
        """Forget the previous epoch's task values."""
        self._epoch = _EpochValues()

    def on_test_epoch_start(self) -> None:
        """Forget the previous epoch's task values."""
        self._epoch = _EpochValues()

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """The task of this loader validates its batch."""
        return self._source(self._eval_names()[dataloader_idx]).validation_step(batch, batch_idx)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """The task of this loader tests its batch."""
        return self._source(self._eval_names()[dataloader_idx]).test_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        """Each task's epoch end (decoded metrics), then `val/score`."""
        for name in self._eval_names():
            self._source(name).on_validation_epoch_end()
        self._log_score("val")

    def on_test_epoch_end(self) -> None:
        """Each task's epoch end, then `test/score`."""
        for name in self._eval_names():
            self._source(name).on_test_epoch_end()
        self._log_score("test")

    def _log_score(self, stage: str) -> None:
        """`<stage>/score`: the mean over the evaluated tasks of their selection metric, normalised to 0-1."""
        values = []
        for name in self._eval_names():
            key, mode = self.monitors[name]
            logged = task_key(key.replace("val/", f"{stage}/", 1), name)
            value = self._epoch.get(logged)
            if value is None:
                raise ValueError(
                    f"task {name!r} logged no {logged} in this {stage} epoch, which {stage}/score needs; choose a "
                    f"metric it logs every epoch as tasks.{name}.monitor"
                )
            values.append(normalized(key.split("/")[-1], value, mode))
        if values:
            self.log(f"{stage}/score", sum(values) / len(values), prog_bar=stage == "val", sync_dist=False)

    def batch_size(self, batch: Any) -> int:
        """Examples in a training step's `(source, batch)`."""
        name, task_batch = batch
        return self.source_modules[name].batch_size(task_batch)

    # ------------------------------------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the class, and what each task adds to a checkpoint (its tokenizer, ...)."""
        super().on_save_checkpoint(checkpoint)
        parts: dict[str, Any] = {}
        for name, child in self.source_modules.items():
            parts[name] = {}
            child.on_save_checkpoint(parts[name])
        checkpoint[TASKS_KEY] = parts

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Give each task what it stored."""
        super().on_load_checkpoint(checkpoint)
        parts = checkpoint.get(TASKS_KEY) or {}
        for name, child in self.source_modules.items():
            child.on_load_checkpoint(dict(parts.get(name) or {}))

    def task_module(self, name: str) -> MMattnModule:
        """Task `name` alone: an ordinary single-task module (shared core + its adapter and head, its options,
        tokenizer and data config), which every single-task command accepts once saved (`save_task`).

        Raises:
            ValueError: No such task.
        """
        if name not in self.names:
            raise ValueError(f"no task {name!r} in this model; its tasks are {', '.join(self.names)}")
        # The task's (first) source module: its options, data config and tokenizer are the task's.
        child = next(self.source_modules[s] for s, source in self.sources.items() if source.task == name)
        hparams = dict(child.hparams)
        single = type(child)(**{**hparams, "net": copy.deepcopy(self.net.tasks[name])})
        single.record_configs(net=hparams["net"])
        for attr in ("tokenizer", "classes"):
            if hasattr(child, attr):
                setattr(single, attr, copy.deepcopy(getattr(child, attr)))
        single.trust = self.trust
        return single.to(self.device).eval()

    def save_task(self, name: str, path: str | Path) -> Path:
        """Write task `name` alone as a single-task checkpoint (see `task_module`), atomically; return its path."""
        import lightning

        from mmattn.lit.checkpoint_io import atomic_write

        single = self.task_module(name)
        checkpoint: dict[str, Any] = {
            "state_dict": single.state_dict(),
            "hyper_parameters": plain(dict(single.hparams), "hparams"),
            "pytorch-lightning_version": lightning.__version__,
            "epoch": self.current_epoch if self._trainer is not None else 0,
            "global_step": self.global_step if self._trainer is not None else 0,
        }
        single.on_save_checkpoint(checkpoint)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as f:
            torch.save(checkpoint, f)
        return path

    # ------------------------------------------------------------------------------------------------ inference

    def predict_inputs(self) -> PredictInputs:
        """A multi-task model predicts through one task: export it first."""
        raise ValueError(self._one_task_only("predicts"))

    def configure_prediction(self, **options: Any) -> None:
        """A multi-task model predicts through one task: export it first."""
        raise ValueError(self._one_task_only("predicts"))

    def attention_figures(self, batch: Any, num_samples: int, **options: Any) -> list:
        """Pictures of a `(source, batch)` pair, or of a batch of the first evaluated source (what the
        `attention_maps` callback keeps: the first validation batch), drawn by that source's module and named
        `<source>_<picture>` (a source `<task>/<dataset>` as `<task>_<dataset>`)."""
        if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], str):
            source, batch = batch
        else:
            source = self._eval_names()[0]
        figures = self.source_modules[source].attention_figures(batch, num_samples, **options)
        prefix = source.replace("/", "_")
        return [(f"{prefix}_{name}", figure) for name, figure in figures]

    def file_attention_figures(self, paths: Any) -> list:
        """A multi-task model draws through one task: export it first."""
        raise ValueError(self._one_task_only("draws attention"))

    def _one_task_only(self, what: str) -> str:
        return (
            f"a multi-task model {what} through one task: write one with mmattn-export ckpt_path=<this> "
            f"task=<{'|'.join(self.names)}> format=ckpt out=<task>.ckpt, then use that checkpoint"
        )
