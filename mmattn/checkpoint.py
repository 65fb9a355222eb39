"""Reading checkpoints written by mmattn-train: weights-only loading, errors that name the file, the stored config."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_KEY", "load_run_config", "read_checkpoint"]

# Where mmattn-train stores the resolved run config inside every checkpoint (`mmattn.lit.ConfigInCheckpoint`).
CONFIG_KEY = "mmattn_config"


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


def load_run_config(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The training config that mmattn-train stored in `checkpoint` (read from `path`).

    Raises:
        ValueError: The checkpoint holds no mmattn config (it was not written by mmattn-train).
    """
    config = checkpoint.get(CONFIG_KEY)
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) or "module" not in config:
        raise ValueError(
            f"{path} holds no '{CONFIG_KEY}' entry with the model and module configs, so the model cannot be "
            "rebuilt; use a checkpoint written by mmattn-train"
        )
    return config


def load_module(
    path: str | Path,
    *,
    device: str = "cpu",
    trust: tuple[str, ...] = (),
    kinds: tuple[type, ...] | None = None,
    hint: str = "",
) -> Any:
    """The LightningModule of a checkpoint from mmattn-train, rebuilt from its stored config, in eval mode.

    The module's `run_config` attribute holds that config (plain containers: data, model, module, ...). Only classes
    that pass `mmattn.build`'s allowlist are built, and nothing is built before all of them passed.

    Args:
        path: A checkpoint file.
        device: Where to put the weights.
        trust: Packages to trust besides mmattn's own and the wrapped libraries (e.g. a modality package).
        kinds: LightningModule classes the caller accepts (None = any); another one stops with the class named.
        hint: What the error says after that, e.g. "; mmattn-generate needs a language-model run".

    Raises:
        ValueError: The file is no mmattn checkpoint, names an untrusted target, or holds another kind of module.
    """
    from lightning.pytorch import LightningModule

    from mmattn.build import check_config, resolve_class, safe_instantiate, trusting

    checkpoint = read_checkpoint(path)
    stored = load_run_config(checkpoint, path)
    module_target = str(stored["module"].get("_target_", ""))
    module_cls = resolve_class(module_target, where=f"{path}: module", trust=trust, kinds=(LightningModule,))
    check_config(stored["model"], where=f"{path}: model", trust=trust)
    if kinds is not None and not issubclass(module_cls, kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"{path} holds a {module_cls.__name__}, not a {wanted}{hint}")
    net = safe_instantiate(stored["model"], where=f"{path}: model", trust=trust)
    hparams = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if k != "net"}
    with trusting(trust):
        module = module_cls(net=net, **hparams)
        module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"], strict=True)
    module.run_config = stored
    return module.to(device).eval()
