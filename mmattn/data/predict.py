"""Inputs for batch prediction: files, folders and manifests (or text files) turned into items, read in a loader.

The module being run says what an item is (a file it reads, or a line of text) and how to read and batch items
(`PredictInputs`); `expand_inputs` lists the items in a stable order, and `PredictDataset` reads item `i` as
`(i, sample)`, or `(i, BadFile)` when the file cannot be read and unreadable files are to be skipped. Every batch
carries its items' indices, so predictions can be written in input order whatever the sampler did (DDP pads its
shards with repeated items).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import Dataset

from mmattn.data.skipping import BadFile

__all__ = [
    "MANIFEST_KEYS",
    "PredictDataset",
    "PredictInputs",
    "collate_predict",
    "expand_inputs",
    "unreadable_message",
]

# Keys of a JSON-lines manifest that hold an item (first match wins): a file (a reader adds its own names first,
# `PredictInputs.manifest_keys`), or a text.
MANIFEST_KEYS = {"files": ("path", "file"), "text": ("text", "src", "prompt")}


@dataclass(frozen=True)
class PredictInputs:
    """What a module predicts on: items of `kind` ("files" or "text"), how one is read and how samples are batched.

    `read` raises an error naming the file for an unreadable one (that error is what `skip_bad_files` skips);
    `extensions` (lower case, with the dot) select the files of a folder, None = every file; `manifest_keys` are the
    reader's own names of the file in a JSON-lines manifest, tried before the generic `path` and `file`.
    """

    kind: Literal["files", "text"]
    read: Callable[[str], Any]
    collate: Callable[[list[Any]], Any]
    extensions: tuple[str, ...] | None = None
    manifest_keys: tuple[str, ...] = ()


def _manifest_items(path: Path, kind: str, own_keys: tuple[str, ...] = ()) -> list[str]:
    keys = (*own_keys, *MANIFEST_KEYS[kind])
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key = next(k for k in keys if k in record)
        except (json.JSONDecodeError, StopIteration, TypeError):
            raise ValueError(f"{path}, line {n}: not a JSON object with one of the keys {list(keys)}") from None
        value = str(record[key])
        items.append(value if kind == "text" or Path(value).is_absolute() else str(path.parent / value))
    return items


def expand_inputs(inputs: str | Path | Sequence[str | Path], spec: PredictInputs) -> list[str]:
    """The items of `inputs`, in order: each entry is a file, a folder (its files sorted, recursively, with
    `spec.extensions`) or a `.jsonl` manifest; for text items, a file gives its lines.

    Raises:
        FileNotFoundError: An entry does not exist.
        ValueError: No items at all, a folder given for text, or a manifest line without a known key.
    """
    entries = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    items: list[str] = []
    for entry in entries:
        path = Path(entry).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"input {path} does not exist; give files, folders or .jsonl manifests")
        if path.suffix == ".jsonl":
            items += _manifest_items(path, spec.kind, spec.manifest_keys)
        elif spec.kind == "text":
            if path.is_dir():
                raise ValueError(f"input {path} is a folder; this model reads text: give files of one item a line")
            items += path.read_text(encoding="utf-8").splitlines()
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            items += [str(p) for p in found if spec.extensions is None or p.suffix.lower() in spec.extensions]
        else:
            items.append(str(path))
    if not items:
        raise ValueError(f"no input items in {[str(e) for e in entries]}")
    return items


class PredictDataset(Dataset):
    """Item `i` read as `(i, sample)`; with `skip_bad_files`, `(i, BadFile)` for a file `read` cannot read."""

    def __init__(self, items: Sequence[str], read: Callable[[str], Any], skip_bad_files: bool = False) -> None:
        self.items = list(items)
        self.read = read
        self.skip_bad_files = skip_bad_files

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, Any]:
        try:
            return i, self.read(self.items[i])
        except (OSError, ValueError) as e:
            if not self.skip_bad_files:
                raise ValueError(unreadable_message(self.items[i], str(e))) from e
            return i, BadFile(self.items[i], str(e))


def unreadable_message(item: str, error: str) -> str:
    """What stops a prediction at an unreadable input: the input, the reader's reason, the option that goes on."""
    reason = error.split("; ")[0]  # the reader's own advice (a training option) does not apply here
    what = reason if item in reason else f"input {item} cannot be read ({reason})"
    return f"{what}; pass skip_bad_files=true to list unreadable inputs and go on"


def collate_predict(samples: Sequence[tuple[int, Any]], collate: Callable[[list[Any]], Any]) -> dict[str, Any]:
    """`{"indices": [...], "inputs": collate(good samples) or None, "bad": [(index, error), ...]}`."""
    good = [(i, s) for i, s in samples if not isinstance(s, BadFile)]
    return {
        "indices": [i for i, _ in good],
        "inputs": collate([s for _, s in good]) if good else None,
        "bad": [(i, s.error) for i, s in samples if isinstance(s, BadFile)],
    }
