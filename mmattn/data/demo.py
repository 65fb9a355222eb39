"""Write-once, process-safe creation of the built-in demo datasets.

A demo dataset is generated into a temporary sibling folder, stamped with a marker file, then renamed into place in
one atomic step, so a reader sees either nothing or a complete tree. A lock file next to the target makes concurrent
callers (DDP ranks, parallel test processes, several nodes on a shared file system) wait for the one that generates.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

MARKER_NAME = ".complete"


def _read_marker(root: Path) -> dict[str, str] | None:
    """Return the marker of a finished dataset at `root`, or None when `root` holds no marker."""
    marker = root / MARKER_NAME
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_existing(root: Path, name: str, version: str) -> bool:
    """Return True if `root` holds the requested dataset, False if it does not exist; raise on anything else."""
    if not root.exists():
        return False
    marker = _read_marker(root)
    if marker is None:
        raise ValueError(
            f"{root} exists but is not a finished '{name}' demo dataset (no {MARKER_NAME} marker); "
            f"delete it (rm -r {root}) or choose another data directory"
        )
    found = (marker.get("name"), marker.get("version"))
    if found != (name, version):
        raise ValueError(
            f"{root} holds demo dataset '{found[0]}' version {found[1]!r}, but '{name}' version {version!r} was "
            f"requested; delete it (rm -r {root}) to regenerate it, or choose another data directory"
        )
    return True


def ensure_dataset(root: Path | str, generate: Callable[[Path], None], *, name: str, version: str) -> Path:
    """Generate a demo dataset at `root` exactly once and return `root`.

    `generate(tmp_dir)` writes the whole tree into an empty temporary folder next to `root`; that folder gets a
    `.complete` marker holding `name` and `version` and is then renamed to `root`. Concurrent callers serialise on
    a lock file beside `root` (`filelock`, which works on every OS): one generates, the others wait and reuse its
    result.

    Args:
        root: Folder that will hold the dataset, e.g. `data/shapes`.
        generate: Callable that writes the dataset into the folder it is given.
        name: Dataset name, recorded in the marker.
        version: Anything that changes the generated content (generator version, sizes, seed); recorded in the
            marker so that a stale tree is detected instead of silently reused.

    Returns:
        The dataset folder `root`.

    Raises:
        ValueError: `root` exists with another name/version, or without a marker.
    """
    root = Path(root).expanduser().absolute()
    # Fast path without the lock: a finished tree only ever appears through the atomic rename.
    if _check_existing(root, name, version):
        return root

    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(root.parent / f".{root.name}.lock"):
        # Another process may have finished while we waited for the lock.
        if _check_existing(root, name, version):
            return root
        # Holding the lock means nobody else is generating, so leftovers are from a crashed run.
        for stale in root.parent.glob(f".{root.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            generate(tmp)
            (tmp / MARKER_NAME).write_text(json.dumps({"name": name, "version": version}) + "\n")
            os.rename(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return root


class GeneratedData(ABC):
    """LightningDataModule mixin for data a generator writes once: `ensure_data()` runs before `prepare_data` and
    `setup` of the datamodule it precedes in the bases (prepare_data runs on one process per node only, so setup
    checks again)."""

    @abstractmethod
    def ensure_data(self) -> None:
        """Write the data when missing, or raise naming the folder and the option that generates it."""

    def prepare_data(self) -> None:
        """Generate the data (write-once, process-safe), then the datamodule's own preparation."""
        self.ensure_data()
        super().prepare_data()  # type: ignore[misc]

    def setup(self, stage: str | None = None) -> None:
        """Make sure the data exists, then the datamodule's own setup."""
        self.ensure_data()
        super().setup(stage)  # type: ignore[misc]
