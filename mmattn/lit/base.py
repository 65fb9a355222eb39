"""MMattnModule: what every mmattn LightningModule shares, and what makes a trained one usable outside the CLIs.

- Optimisation: a partial optimizer over weight-decay groups, the configured per-step schedule, `torch.compile`.
- What it is made of: the network, given built or as a config (built by `mmattn.build`'s allowlist), and the data
  config it was trained on. Both configs ride in the hyperparameters, so `XModule.load_from_checkpoint(path)` needs
  no other argument and a saved folder rebuilds the model alone.
- Checkpoint selection: each module declares the validation keys it logs and the one it is selected by.
- Saved folders in the ecosystem's format through huggingface_hub's `ModelHubMixin`: `save_pretrained(dir)` writes
  `config.json` (the module's class and hyperparameters, the network's config among them), `model.safetensors`, the
  tokenizer's files and a model card; `from_pretrained(dir_or_repo_id)` reads them back; `push_to_hub` uploads.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelHubMixin
from lightning.pytorch import LightningModule
from torch import nn

from mmattn.data.predict import PredictInputs
from mmattn.lit.optim import configure_optimization
from mmattn.modality import FileReader, require_reader

__all__ = ["CONFIG_FILE", "DataFileReader", "MMattnModule", "WEIGHTS_FILE"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_MODEL_CARD = """---
{{ card_data }}
---

# {{ model_name | default("An mmattn model", true) }}

A model trained with mmattn, a multi-modal Transformer framework on PyTorch Lightning. `config.json` holds the
module's class and hyperparameters (the network's architecture config among them), `model.safetensors` its weights.

```python
import mmattn

model = mmattn.load("{{ repo_id | default("path/to/this/folder", true) }}")
```
"""


def plain(value: Any, where: str) -> Any:
    """`value` as plain dicts, lists and primitives (OmegaConf containers converted); raise naming `where` otherwise."""
    from omegaconf import OmegaConf

    from mmattn.lit.callbacks import _check_plain

    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    _check_plain(value, where)
    return value


class MMattnModule(
    LightningModule, ModelHubMixin, library_name="mmattn", tags=["mmattn"], model_card_template=_MODEL_CARD
):
    """Base of mmattn's LightningModules (see the module docstring).

    Args:
        net: The network, or its config (a mapping with `_target_`), which is then built and recorded.
        optimizer: Partially applied optimizer class (Hydra `_partial_: true`), completed with parameter groups.
        scheduler: `mmattn.lit.optim.build_scheduler` options; None = constant learning rate.
        weight_decay: Decay of the weight matrices; biases, norms, embeddings and `net.no_weight_decay()` get none.
        compile: `torch.compile` the network in place at setup (parameter names and checkpoints stay the same).
        data: The config of the data the module is trained on (plain, with `_target_`), recorded for inference.

    Raises:
        ValueError: `weight_decay` given to the optimizer (it is set per parameter group), or configs that are not
            plain data.
    """

    def __init__(
        self,
        net: nn.Module | Mapping[str, Any],
        *,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        weight_decay: float = 0.0,
        compile: bool = False,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        optimizer_wd = getattr(optimizer, "keywords", {}).get("weight_decay")
        if optimizer_wd is not None:
            raise ValueError(
                f"module.optimizer.weight_decay={optimizer_wd} would be ignored: weight decay is set per parameter "
                "group; remove it from module.optimizer and set module.weight_decay instead"
            )
        self._configs: dict[str, Any] = {}
        if isinstance(net, Mapping):
            from mmattn.build import safe_instantiate

            self._configs["net"] = plain(dict(net), "net")
            net = safe_instantiate(net, where="net")
        if data is not None:
            self._configs["data"] = plain(dict(data), "data")
        self.net = net
        # Packages the user trusted when this module was loaded; files are read through the data config with them.
        self.trust: tuple[str, ...] = ()
        self._reader: Any = None
        self.optimizer_factory = optimizer
        self.scheduler_options = dict(scheduler) if scheduler else None
        self.weight_decay = float(weight_decay)
        self.compile_net = bool(compile)
        # Set by a multi-task module on its per-task modules: their datamodule, and where their logs go.
        self._task_datamodule: Any = None
        self._task_prefix: str | None = None
        self._log_sink: Callable[[str, Any], None] | None = None

    def save_module_hyperparameters(self, options: Mapping[str, Any]) -> None:
        """Save `options` (plain values) and the recorded net/data configs as the checkpoint's hyperparameters."""
        common = {"scheduler": self.scheduler_options, "weight_decay": self.weight_decay, "compile": self.compile_net}
        self.save_hyperparameters({**common, **options, **self._configs})

    def record_configs(self, *, net: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None) -> None:
        """Record the network's and the data's config (e.g. Hydra's) for checkpoints and saved folders."""
        for key, value in (("net", net), ("data", data)):
            if value is not None:
                self._configs[key] = self.hparams[key] = plain(value, key)

    # ----------------------------------------------------------------------------------------------- training

    def run_datamodule(self) -> Any:
        """The datamodule this module trains or tests on: its task's in a multi-task run, else the trainer's."""
        if self._task_datamodule is not None:
            return self._task_datamodule
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        """Lightning's `log`; inside a multi-task module, under the task's name (`val/acc` -> `val/<task>/acc`)."""
        if self._task_prefix is not None:
            stage, _, rest = name.partition("/")
            name = f"{stage}/{self._task_prefix}/{rest}" if rest else f"{self._task_prefix}/{stage}"
            # Each task evaluates on its own loader; its name, not the loader's index, tells them apart.
            kwargs["add_dataloader_idx"] = False
            if self._log_sink is not None:
                self._log_sink(name, value)
        super().log(name, value, *args, **kwargs)

    def setup(self, stage: str) -> None:
        """Compile the network once if asked."""
        if self.compile_net and not getattr(self, "_compiled", False):
            self.net.compile()
            self._compiled = True

    def configure_optimizers(self) -> Any:
        """Optimizer over weight-decay groups, plus the configured per-step schedule."""
        return configure_optimization(self, self.net, self.optimizer_factory, self.weight_decay, self.scheduler_options)

    def on_train_start(self) -> None:
        """Give a resumed fit's train loader its saved position (see `restore_loader_states`)."""
        restore_loader_states(self.trainer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record this module's class, so `mmattn.load(path)` knows what to rebuild."""
        from mmattn.checkpoint import MODULE_KEY

        checkpoint[MODULE_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"

    @abstractmethod
    def predict_inputs(self) -> PredictInputs:
        """What `mmattn-predict` feeds this module: file or text items, how to read and batch them."""

    @abstractmethod
    def configure_prediction(self, **options: Any) -> None:
        """Set the options of `predict_step` (by family: top_k, decoding, sampling); unknown ones raise."""

    @abstractmethod
    def batch_size(self, batch: Any) -> int:
        """Examples in one of this module's batches (the profile's samples/s count them)."""

    def attention_figures(
        self, batch: Any, num_samples: int, *, classes: Sequence[str] | None = None, titles: Sequence[str] | None = None
    ) -> list:
        """Attention pictures of the first `num_samples` examples of a batch, as `(name, figure)` pairs.

        Raises:
            ValueError: This module draws none (the default).
        """
        raise ValueError(f"{type(self).__name__} draws no attention pictures")

    def file_attention_figures(self, paths: Sequence[str]) -> list:
        """Attention pictures of the module on files of the user's (read as its evaluation data is).

        Raises:
            ValueError: This module draws none (the default).
        """
        raise ValueError(f"{type(self).__name__} draws no attention pictures of files")

    @classmethod
    @abstractmethod
    def metric_modes(cls, options: Mapping[str, Any]) -> dict[str, str]:
        """The validation keys a module built with `options` (its config) logs, each with "min" or "max"."""

    @classmethod
    @abstractmethod
    def default_monitor(cls, options: Mapping[str, Any]) -> str:
        """The key checkpoints select by unless the config names one."""

    # ------------------------------------------------------------------------------------------------ inference

    def read_files(self, paths: Sequence[str | Path]) -> Any:
        """Files as a batch for the network, read as its evaluation data is (through the recorded data config).

        Raises:
            ValueError: No data config was recorded, or its datamodule cannot read files.
        """
        return self.data_reader().load_inputs(list(paths))

    def data_reader(self) -> Any:
        """The datamodule of the recorded data config, built once (its `load_inputs` reads files)."""
        reader = self.recorded_datamodule("read files")
        if not callable(getattr(reader, "load_inputs", None)):
            raise ValueError(f"{type(reader).__name__} cannot read input files (it has no load_inputs)")
        return reader

    def input_reader(self, embed: Any, what: str) -> FileReader:
        """The file reader of an input: its embedding's own (speech reads audio at its rate), else the recorded data
        config's (`load_inputs`: images through the evaluation transform).

        Raises:
            ValueError: Neither the modality nor the data reads files (the message names `what` and the modality).
        """
        reader = embed.reader()
        if reader is not None:
            return reader
        if self.hparams.get("data") and callable(getattr(self.recorded_datamodule(), "load_inputs", None)):
            return DataFileReader(self)
        return require_reader(embed, what)

    def recorded_datamodule(self, purpose: str = "read files") -> Any:
        """The datamodule of the recorded data config, built once and not set up (no data is read or generated).

        Raises:
            ValueError: No data config was recorded (the message says it was needed to `purpose`).
        """
        if self._reader is None:
            data = self.hparams.get("data")
            if not data:
                raise ValueError(
                    f"this {type(self).__name__} records no data config, so it cannot {purpose}; pass a batch of "
                    "tensors, or use a model trained by mmattn-train (it records its data config)"
                )
            from mmattn.build import safe_instantiate

            self._reader = safe_instantiate(data, where="data", trust=self.trust)
        return self._reader

    # ------------------------------------------------------------------------------------------------ loading

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path,
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        *,
        trust: Sequence[str] = (),
        **kwargs: Any,
    ) -> Any:
        """The module of a checkpoint, rebuilt from the network config in its hyperparameters (nothing else needed).

        With `net=...` (or an `hparams_file`) this is Lightning's own `load_from_checkpoint`. Otherwise only classes
        that `mmattn.build` allows are built (`trust` adds packages), and the checkpoint must hold this class.
        """
        if "net" in kwargs or hparams_file is not None:
            return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, strict, **kwargs)
        from mmattn.checkpoint import load_module

        device = map_location if isinstance(map_location, (str, torch.device)) else "cpu"
        return load_module(checkpoint_path, device=device, trust=tuple(trust), kinds=(cls,))

    def _save_pretrained(self, save_directory: Path) -> None:
        """Write config.json, model.safetensors and the tokenizer's files into `save_directory`."""
        from safetensors.torch import save_model

        from mmattn import __version__

        tokenizer = getattr(self, "tokenizer", None)
        config = {
            "mmattn_version": __version__,
            "module": f"{type(self).__module__}.{type(self).__qualname__}",
            "hparams": plain(dict(self.hparams), "hparams"),
            "tokenizer": None if tokenizer is None else f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}",
        }
        if "net" not in config["hparams"]:
            raise ValueError(
                f"this {type(self).__name__} does not record its network's config, so a saved folder could not rebuild "
                "it: build the module with net=<config with _target_>, or call record_configs(net=...) first"
            )
        (save_directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        # save_model drops the duplicates of tied weights (safetensors stores no shared tensors) and restores them.
        save_model(self, str(save_directory / WEIGHTS_FILE))
        if tokenizer is not None:
            tokenizer.save(save_directory)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: dict[str, Any] | None = None,
        trust: Sequence[str] = (),
        map_location: str = "cpu",
        **kwargs: Any,
    ) -> Any:
        from mmattn.checkpoint import load_folder, pretrained_folder

        folder = pretrained_folder(
            model_id,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
        )
        return load_folder(folder, device=map_location, trust=tuple(trust), kinds=(cls,))


def restore_loader_states(trainer: Any) -> None:
    """Load the checkpoint's train-loader states (`mmattn.data.ResumableDataLoader` positions) into the loaders.

    Lightning loads them when it creates the train loader during a resumed fit. `configure_optimizers` asks for
    `trainer.estimated_stepping_batches` (for the schedule's length), which creates the loader before the checkpoint's
    loop state is restored, so Lightning then keeps the states unused; this finishes its job before the first batch.
    """
    fit_loop = trainer.fit_loop
    if fit_loop.restarting and getattr(fit_loop, "_combined_loader_states_to_load", None):
        fit_loop._load_combined_loader_states()


class DataFileReader:
    """A module's recorded datamodule (`load_inputs`) as a `FileReader` of one file at a time."""

    extensions: tuple[str, ...] | None
    manifest_keys: tuple[str, ...]

    def __init__(self, module: MMattnModule) -> None:
        self.module = module
        self.extensions = getattr(module.data_reader(), "extensions", None)
        self.manifest_keys = getattr(module.data_reader(), "manifest_keys", ())

    def read_file(self, path: str | Path) -> Any:
        """One file as the evaluation data is read."""
        return self.module.read_files([path])[0]

    def collate(self, items: Sequence[torch.Tensor]) -> torch.Tensor:
        """Stacked into one batch."""
        return torch.stack(list(items))
