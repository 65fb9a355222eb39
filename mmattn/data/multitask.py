"""Tasks as config entries, and the datamodule that mixes their data: one `MixedLoader` for training, each source's
own validation and test loaders.

A task entry (`tasks.<name>` of the config) names its datamodule (`data`), its network (`model`), its single-task
LightningModule (`module`: loss and metrics), the `modality` of its input, and optionally `loss_weight`,
`sampling_weight` (for `schedule: weights`) and `monitor` (the validation key its checkpoint selection reads). Adding a
task is adding an entry; `check_task_entries` stops a bad one with one line naming it.

A task may train on several datasets: `data` is then a mapping of dataset name -> datamodule config (two image
folders for one classifier, say). Each dataset is a *source* of the mixture, named `<task>/<dataset>`, with its own
sampling weight (`sampling_weight`: one number for each, or a mapping per dataset) and its own validation metrics
(`val/<task>/<dataset>/acc`); a task of one dataset is the source `<task>`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import lightning.pytorch as pl
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from mmattn.data.mixing import MixedLoader
from mmattn.data.resumable import ResumableDataLoader, eval_sampler

__all__ = ["ENTRY_KEYS", "MultiTaskDataModule", "Source", "check_task_entries", "task_sources"]

ENTRY_KEYS = ("data", "model", "module", "modality", "loss_weight", "sampling_weight", "monitor")
_REQUIRED = ("data", "model", "module", "modality")
# Names become metric keys (val/<task>/acc) and folder names.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_WHAT = {
    "data": "its datamodule (a data config with _target_, e.g. an option of configs/data)",
    "model": "its network (a model config with _target_)",
    "module": "its single-task module (e.g. _target_: mmattn.lit.ClassificationModule and its options)",
    "modality": "the modality of its input (its network's input embedding's `modality`)",
}


def _plain(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def check_task_entries(tasks: Any, required: Sequence[str] = _REQUIRED) -> dict[str, dict[str, Any]]:
    """The task entries as `{name: entry}` after checking each (a mapping of entries, or a list with `name` keys);
    `required` are the keys every entry must have (the datamodule needs only `data`).

    Raises:
        ValueError: No task, a name used twice or unfit for metric keys, an entry with a missing or unknown key, a
            `data`/`model`/`module` without `_target_`, or a weight <= 0; the message names the task and the key.
    """
    tasks = _plain(tasks)
    if isinstance(tasks, Mapping):
        items = [(str(name), entry) for name, entry in tasks.items()]
    elif isinstance(tasks, Sequence) and not isinstance(tasks, str):
        items = []
        for i, entry in enumerate(tasks):
            if not isinstance(entry, Mapping) or not entry.get("name"):
                raise ValueError(f"tasks[{i}] has no name; give every task of a list a `name`")
            items.append((str(entry["name"]), {k: v for k, v in entry.items() if k != "name"}))
    else:
        raise ValueError(f"tasks must be a mapping of task name -> entry, got {type(tasks).__name__}")
    if not items:
        raise ValueError("no task to train: add at least one entry under tasks")
    checked: dict[str, dict[str, Any]] = {}
    for name, entry in items:
        if name in checked or name.lower() in {n.lower() for n in checked}:
            raise ValueError(f"task name {name!r} is used twice; give every task its own name")
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"task name {name!r} cannot name metrics (val/{name}/...): use letters, digits and _, starting with "
                "a letter"
            )
        if not isinstance(entry, Mapping):
            raise ValueError(f"tasks.{name} must be a mapping with {', '.join(_REQUIRED)}, got {type(entry).__name__}")
        if unknown := sorted(set(entry) - set(ENTRY_KEYS)):
            raise ValueError(f"tasks.{name} has unknown key(s) {unknown}; a task entry takes {', '.join(ENTRY_KEYS)}")
        for key in required:
            if entry.get(key) in (None, "", {}):
                raise ValueError(f"task {name!r} has no {key}: set tasks.{name}.{key} to {_WHAT[key]}")
        for key in ("model", "module"):
            if key in entry and (not isinstance(entry[key], Mapping) or "_target_" not in entry[key]):
                raise ValueError(f"tasks.{name}.{key} must be {_WHAT[key]}; it has no _target_")
        datasets = _datasets(name, entry["data"]) if "data" in entry else {}
        _check_weight(f"tasks.{name}.loss_weight", entry.get("loss_weight"))
        weight = entry.get("sampling_weight")
        if isinstance(weight, Mapping):
            if unknown := sorted(set(weight) - set(datasets)):
                raise ValueError(
                    f"tasks.{name}.sampling_weight names {unknown}, not datasets of the task {sorted(datasets)}"
                )
            for dataset, value in weight.items():
                _check_weight(f"tasks.{name}.sampling_weight.{dataset}", value)
        else:
            _check_weight(f"tasks.{name}.sampling_weight", weight)
        checked[name] = dict(entry)
    return checked


def _check_weight(key: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{key}={value} must be a number > 0 (drop the task or dataset instead of 0)")


def _datasets(name: str, data: Any) -> dict[str, dict[str, Any]]:
    """`{dataset: datamodule config}` of a task's `data`: one config (dataset "") or a mapping of named ones."""
    if not isinstance(data, Mapping):
        raise ValueError(f"tasks.{name}.data must be {_WHAT['data']}, got {type(data).__name__}")
    if "_target_" in data:
        return {"": dict(data)}
    for dataset, config in data.items():
        if not _NAME.fullmatch(str(dataset)):
            raise ValueError(
                f"dataset name {dataset!r} of task {name!r} cannot name metrics (val/{name}/{dataset}/...): use "
                "letters, digits and _, starting with a letter"
            )
        if not isinstance(config, Mapping) or "_target_" not in config:
            raise ValueError(
                f"tasks.{name}.data.{dataset} must be a datamodule config with _target_ (tasks.{name}.data is one such "
                "config, or a mapping of dataset name -> config)"
            )
    return {str(dataset): dict(config) for dataset, config in data.items()}


class Source(NamedTuple):
    """One dataset of one task: what the mixture draws steps from."""

    task: str
    data: dict[str, Any]
    sampling_weight: float | None


def task_sources(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Source]:
    """`{source name: Source}` of checked task entries: `<task>` for a task of one dataset, else `<task>/<dataset>`."""
    sources: dict[str, Source] = {}
    for name, entry in entries.items():
        weight = entry.get("sampling_weight")
        for dataset, config in _datasets(name, entry["data"]).items():
            own = weight.get(dataset) if isinstance(weight, Mapping) else weight
            sources[f"{name}/{dataset}" if dataset else name] = Source(name, config, own)
    return sources


class MultiTaskDataModule(pl.LightningDataModule):
    """Every task's datamodules: training batches mixed by a schedule, validation and test loaders per source.

    Args:
        tasks: The task entries (see the module docstring); only `data` and `sampling_weight` are used here.
        steps_per_epoch: Training steps of one epoch of the mixture.
        schedule: How the task of each step is drawn: proportional, temperature, weights or round_robin
            (`mmattn.data.mixing`).
        temperature: T of the temperature schedule (p_i ~ n_i^(1/T)).
        seed: Seed of the task sequence; None = the run's seed (`seed_everything`), else 0.
        only: Evaluate (and train) only these tasks, e.g. `mmattn-eval task=<name>`; None = all.

    Raises:
        ValueError: A bad task entry (`check_task_entries`), an unknown name in `only`, or `schedule: weights` with a
            source that has no `sampling_weight`.
    """

    def __init__(
        self,
        tasks: Any,
        *,
        steps_per_epoch: int,
        schedule: str = "proportional",
        temperature: float = 1.0,
        seed: int | None = None,
        only: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        # Built from the user's config, or from a checkpoint's whose every target `mmattn.build` checked first.
        from hydra.utils import instantiate

        entries = check_task_entries(tasks, required=("data",))
        if only is not None:
            if unknown := sorted(set(only) - set(entries)):
                raise ValueError(f"task(s) {unknown} are not among this model's tasks {list(entries)}")
            entries = {name: entry for name, entry in entries.items() if name in only}
        self.sources = task_sources(entries)
        if schedule == "weights":
            if missing := [name for name, source in self.sources.items() if source.sampling_weight is None]:
                raise ValueError(f"schedule=weights needs a sampling_weight of every task; missing for {missing}")
        # One datamodule per source (a task's dataset), in task order.
        self.datamodules = {name: instantiate(source.data, _convert_="all") for name, source in self.sources.items()}
        self.steps_per_epoch = int(steps_per_epoch)
        self.schedule = schedule
        self.temperature = float(temperature)
        self.seed = seed
        self.mixed: MixedLoader | None = None

    @property
    def names(self) -> list[str]:
        """The source names (`<task>` or `<task>/<dataset>`), in the order of the validation and test loaders."""
        return list(self.datamodules)

    def prepare_data(self) -> None:
        """Each task's (generate demo data, train tokenizers: once per node)."""
        for datamodule in self.datamodules.values():
            datamodule.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        """Each task's, attached to this run's trainer (its loaders shard by it)."""
        for datamodule in self.datamodules.values():
            datamodule.trainer = self.trainer
            datamodule.setup(stage)

    def train_dataloader(self) -> MixedLoader:
        """`(source, batch)` steps drawn by the schedule from every source's own training loader."""
        from mmattn.data.resumable import order_seed

        weights = {n: s.sampling_weight for n, s in self.sources.items() if s.sampling_weight is not None}
        seed = self.seed if self.seed is not None else order_seed()
        self.mixed = MixedLoader(
            {name: datamodule.train_dataloader() for name, datamodule in self.datamodules.items()},
            self.steps_per_epoch,
            schedule=self.schedule,
            seed=0 if seed is None else int(seed),
            temperature=self.temperature,
            weights=weights if self.schedule == "weights" else None,
        )
        return self.mixed

    def val_dataloader(self) -> dict[str, Any]:
        """Each source's validation loader (sharded per rank), in source order."""
        return {name: self._sharded(dm.val_dataloader()) for name, dm in self.datamodules.items()}

    def test_dataloader(self) -> dict[str, Any]:
        """Each source's test loader (sharded per rank), in source order."""
        return {name: self._sharded(dm.test_dataloader()) for name, dm in self.datamodules.items()}

    def shares(self) -> dict[str, float]:
        """Each source's share of the training steps so far (zeros before training)."""
        return self.mixed.shares() if self.mixed is not None else dict.fromkeys(self.datamodules, 0.0)

    def _sharded(self, loader: Any) -> Any:
        """An evaluation loader that reads every example on every rank, split per rank under data parallelism.

        Multi-task runs turn Lightning's sampler injection off (token-budget loaders shard themselves and would break
        under it), so plain sequential loaders are given a `DistributedSampler` here, as Lightning would.
        """
        batches = getattr(loader, "batch_sampler", None)
        if not isinstance(loader, DataLoader) or type(batches) is not BatchSampler:
            return loader
        if not isinstance(batches.sampler, SequentialSampler):
            return loader
        if type(loader) is not DataLoader and not isinstance(loader, ResumableDataLoader):
            return loader  # a loader class of unknown arguments: rebuilt, it could lose what it adds
        sampler = eval_sampler(loader.dataset, self.trainer)
        if sampler is None:
            return loader
        # Its own class: the skipping loaders of files unpack their collate's (batch, skipped files) pairs.
        return type(loader)(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=sampler,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            drop_last=loader.drop_last,
            persistent_workers=loader.persistent_workers,
        )
