"""Unreadable files in a dataset: stop naming the file, or (with `skip_bad_files`) skip it and report each pass.

A dataset built with `skip_bad_files` returns a `BadFile` in place of an item it cannot read; `collate_skipping`
drops those from the batch and `SkippingDataLoader` warns once per pass over the data with the count and the first
paths. The loader takes DataLoader's arguments (and `ResumableDataLoader`'s `seed`), so Lightning can re-create it
with a DistributedSampler.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.data import default_collate

from mmattn.data.resumable import ResumableDataLoader

__all__ = ["BadFile", "SkippingDataLoader", "collate_skipping"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BadFile:
    """What a dataset returns in place of an item whose file it cannot read (with `skip_bad_files`)."""

    path: str
    error: str


def collate_skipping(batch: Sequence[Any]) -> tuple[Any, list[str]]:
    """`default_collate` of the readable items and the paths of the `BadFile`s (the batch is None if all were bad)."""
    good = [item for item in batch if not isinstance(item, BadFile)]
    skipped = [item.path for item in batch if isinstance(item, BadFile)]
    return (default_collate(good) if good else None), skipped


class SkippingDataLoader(ResumableDataLoader):
    """DataLoader over `collate_skipping` batches: yields the batches, and warns at the end of each pass (also one
    cut short) how many files were skipped, naming the first few. Batches emptied by skipping are not yielded.

    Pass `collate_fn=collate_skipping`. `kind` names the files in the warning ("audio", "image").
    """

    kind = ""
    max_reported_paths = 5

    def __iter__(self) -> Iterator[Any]:
        """One pass over the data, warning once at its end if files were skipped."""
        skipped: list[str] = []
        try:
            for item in super().__iter__():
                if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], list)):
                    raise TypeError(
                        f"{type(self).__name__} expects (batch, skipped paths) items; pass collate_fn=collate_skipping"
                    )
                batch, bad = item
                skipped += bad
                if batch is not None:
                    yield batch
        finally:
            if skipped:
                self._report(skipped)

    def _report(self, skipped: list[str]) -> None:
        shown = ", ".join(skipped[: self.max_reported_paths])
        more = f" and {len(skipped) - self.max_reported_paths} more" if len(skipped) > self.max_reported_paths else ""
        kind = f"{self.kind} " if self.kind else ""
        message = f"skipped {len(skipped)} {kind}file(s) that could not be read in this pass: {shown}{more}"
        log.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
