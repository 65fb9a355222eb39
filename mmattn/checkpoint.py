"""Loading trained models: checkpoints (weights-only, errors that name the file), saved folders and Hub repos, each
rebuilt by `mmattn.build`'s allowlist. `load` (also `mmattn.load`) takes any of them."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_KEY", "MODULE_KEY", "init_weights_from", "load", "load_folder", "load_module", "read_checkpoint"]

# Where mmattn-train stores the resolved run config inside every checkpoint (`mmattn.lit.ConfigInCheckpoint`).
CONFIG_KEY = "mmattn_config"
# Where an mmattn module records its class in every checkpoint it saves.
MODULE_KEY = "mmattn_module"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """`torch.load(path, weights_only=True)` on the CPU, with a one-line error for anything that is not a checkpoint.

    Weights-only loading unpickles tensors and plain data only, so reading a checkpoint runs no code from it.

    Raises:
        FileNotFoundError: No such file.
        ValueError: A folder (a sharded FSDP checkpoint), a file torch cannot read (truncated, garbage, another
            format), a file holding pickled Python objects, or one that is no Lightning checkpoint.
    """
    import torch

    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder, not a checkpoint file; a sharded (FSDP) checkpoint is merged into one file with: "
            f"python -m lightning.pytorch.utilities.consolidate_checkpoint {path} --output_file {path}.consolidated"
        )
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; give the path of a .ckpt file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:
            raise ValueError(
                f"{path} holds pickled Python objects ({found.group(1)}), not only tensors and plain data; mmattn "
                "reads checkpoints weights-only because unpickling objects runs code. Checkpoints from mmattn-train "
                "hold none: use one of those"
            ) from None
        raise ValueError(
            f"{path} is not a checkpoint: torch cannot read it (is it truncated, or another file?)"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as e:
        detail = str(e).split(". ")[0].strip() or type(e).__name__
        raise ValueError(
            f"{path} is not a readable checkpoint ({detail}); it may be truncated or another file"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is a torch file but not a Lightning checkpoint (it has no state_dict)")
    return checkpoint


def load(
    source: str | Path,
    *,
    trust: tuple[str, ...] | list[str] = (),
    device: str = "cpu",
    kinds: tuple[type, ...] | None = None,
    hint: str = "",
) -> Any:
    """The trained module in `source`: a checkpoint file, a folder written by `save_pretrained`, or a Hub repo id.

    Only classes that `mmattn.build` allows are built (`trust` adds packages), nothing before all passed.

    Args:
        source: A `.ckpt` file, a saved folder (`config.json` + `model.safetensors`), or `user/name` on the Hub.
        trust: Packages to trust besides mmattn's own and the wrapped libraries (e.g. a modality package).
        device: Where to put the weights.
        kinds: Module classes the caller accepts (None = any); another one stops with the class named.
        hint: What that error adds, e.g. "; mmattn-generate needs a language-model run".

    Raises:
        FileNotFoundError: `source` is neither a file, a folder nor a repo id.
        ValueError: It holds no mmattn model, names an untrusted target, or holds another kind of module.
    """
    path = Path(source).expanduser()
    options = dict(device=device, trust=tuple(trust), kinds=kinds, hint=hint)
    if path.is_file():
        return load_module(path, **options)
    return load_folder(pretrained_folder(str(source)), **options)


def _looks_like_repo_id(text: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", text) is not None


def load_module(
    path: str | Path,
    *,
    device: str = "cpu",
    trust: tuple[str, ...] = (),
    kinds: tuple[type, ...] | None = None,
    hint: str = "",
) -> Any:
    """The module of a checkpoint file (see `load`), rebuilt from the configs in its hyperparameters, in eval mode.

    Checkpoints of mmattn-train record the network and data configs in the hyperparameters; those of earlier
    versions only in the run config (`mmattn_config`), which is used then.
    """
    checkpoint = read_checkpoint(path)
    stored = checkpoint.get(CONFIG_KEY) if isinstance(checkpoint.get(CONFIG_KEY), dict) else {}
    target = checkpoint.get(MODULE_KEY) or (stored.get("module") or {}).get("_target_")
    if not target:
        if kinds is None or len(kinds) != 1:
            raise ValueError(
                f"{path} records no module class (it was not written by an mmattn module); load it with "
                "<ModuleClass>.load_from_checkpoint(path)"
            )
        target = f"{kinds[0].__module__}.{kinds[0].__qualname__}"
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    for key, run_key in (("net", "model"), ("data", "data")):
        if key not in hparams and isinstance(stored.get(run_key), dict):
            hparams[key] = stored[run_key]

    def restore(module: Any) -> None:
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"], strict=True)

    return _rebuild(
        str(target), hparams, where=str(path), restore=restore, device=device, trust=trust, kinds=kinds, hint=hint
    )


def load_folder(
    folder: str | Path,
    *,
    device: str = "cpu",
    trust: tuple[str, ...] = (),
    kinds: tuple[type, ...] | None = None,
    hint: str = "",
) -> Any:
    """The module of a folder written by `save_pretrained` (see `load`), in eval mode.

    Raises:
        ValueError: No or unreadable `config.json`, or weights that do not fit the model it describes (the names
            of the missing, unexpected or mis-shaped tensors are listed).
    """
    from mmattn.lit.base import CONFIG_FILE, WEIGHTS_FILE

    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        if (folder / "meta.pt").is_file() or (folder / ".metadata").is_file():
            read_checkpoint(folder)  # a sharded FSDP checkpoint: its error says how to merge it
        raise ValueError(
            f"{folder} holds no {CONFIG_FILE}, so it is no saved mmattn model; write one with "
            "module.save_pretrained(folder), or give the path of a .ckpt file"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        target, hparams = str(config["module"]), dict(config["hparams"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{config_path} is not an mmattn model config ({type(e).__name__}: {e})") from None

    def restore(module: Any) -> None:
        from safetensors.torch import load_model

        from mmattn.build import resolve_class

        if config.get("tokenizer"):
            cls = resolve_class(
                config["tokenizer"], where=f"{config_path}: tokenizer", kinds=(object,), first_party=True
            )
            module.tokenizer = cls.load(folder)
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise ValueError(f"{folder} holds {CONFIG_FILE} but no {WEIGHTS_FILE}")
        try:
            load_model(module, str(weights), strict=True)
        except RuntimeError as e:
            raise ValueError(f"{weights} does not fit the model of {config_path}: {' '.join(str(e).split())}") from None

    return _rebuild(
        target, hparams, where=str(folder), restore=restore, device=device, trust=trust, kinds=kinds, hint=hint
    )


def pretrained_folder(model_id: str, **hub_options: Any) -> Path:
    """A local folder holding the saved model `model_id`: the folder itself, or a download of the Hub repo.

    Raises:
        FileNotFoundError: `model_id` is no folder and no repo id (nothing is downloaded then).
    """
    path = Path(model_id).expanduser()
    if path.is_dir():
        return path
    if not _looks_like_repo_id(model_id):
        raise FileNotFoundError(
            f"{model_id} is no checkpoint file, no saved model folder and no Hub repo id (user/name)"
        )
    from huggingface_hub import snapshot_download

    options = {k: v for k, v in hub_options.items() if v is not None}
    return Path(snapshot_download(repo_id=model_id, **options))


def _rebuild(
    target: str,
    hparams: dict[str, Any],
    *,
    where: str,
    restore: Any,
    device: str,
    trust: tuple[str, ...],
    kinds: tuple[type, ...] | None,
    hint: str,
) -> Any:
    """Build the module class `target` from `hparams` (its network from the net config), then `restore(module)`."""
    from lightning.pytorch import LightningModule

    from mmattn.build import check_config, resolve_class, trusting

    module_cls = resolve_class(target, where=f"{where}: module", trust=trust, kinds=(LightningModule,))
    if kinds is not None and not issubclass(module_cls, kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"{where} holds a {module_cls.__name__}, not a {wanted}{hint}")
    if not isinstance(hparams.get("net"), dict):
        raise ValueError(
            f"{where} records no network config, so the network cannot be rebuilt; load it with "
            f"{module_cls.__name__}.load_from_checkpoint(path, net=<the network>)"
        )
    check_config(hparams["net"], where=f"{where}: net", trust=trust)
    with trusting(trust):
        module = module_cls(**hparams)
        restore(module)
    module.trust = tuple(trust)
    return module.to(device).eval()


def init_weights_from(net: Any, path: str | Path, *, task: str | None = None) -> Any:
    """Start `net` from the weights of a trained checkpoint that fit it (`mmattn.models.pretrained.load_pretrained`:
    loaded, resampled, skipped for their shape, re-initialised, unused: all reported); return the `LoadReport`.

    A multi-task checkpoint offers each task's network (the shared core with that task's adapter and head): `task`
    names one, else the task whose tensors fit `net` best is taken (named in the report).

    Raises:
        ValueError: No such task, or not one tensor of the checkpoint fits `net`.
    """
    from mmattn.models.pretrained import load_pretrained

    checkpoint = read_checkpoint(path)
    state = {k[len("net.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    source = str(path)
    tasks = sorted({k.split(".")[1] for k in state if k.startswith("tasks.")})
    if tasks and str(checkpoint.get(MODULE_KEY, "")).endswith("MultiTaskModule"):
        own = net.state_dict()

        def fitting(name: str) -> int:
            """How many of task `name`'s tensors `net` holds with the same name and shape."""
            prefix = f"tasks.{name}."
            parts = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            return sum(1 for k, v in parts.items() if k in own and own[k].shape == v.shape)

        if task is None:
            task = max(tasks, key=fitting)
        elif task not in tasks:
            raise ValueError(f"init_from_task={task}: {path} holds the tasks {', '.join(tasks)}")
        prefix = f"tasks.{task}."
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        source = f"{path} (task {task})"
    elif task is not None:
        raise ValueError(f"init_from_task={task} is for multi-task checkpoints; {path} holds one model")
    report = load_pretrained(net, state, source=source)
    if not report.loaded and not report.resampled:
        raise ValueError(
            f"init_from={path}: not one of its {len(state)} tensors fits this model by name and shape; start from a "
            "checkpoint of the same family (e.g. its encoder)"
        )
    return report
