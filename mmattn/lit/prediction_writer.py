"""JSONLinesWriter: batch predictions of every rank into one JSON-lines file, one line per input, in input order.

Each rank appends `(index, record)` lines of its batches to a part file beside the output as they come (so memory
does not grow with the inputs); when prediction ends, the ranks meet and rank 0 merges the parts by index. An index
seen twice (a DistributedSampler pads its shards with repeated items) is written once; an input that could not be
read gets `{"input": ..., "error": ...}`. The output appears atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from mmattn.lit.checkpoint_io import atomic_write

__all__ = ["JSONLinesWriter"]


class JSONLinesWriter(BasePredictionWriter):
    """Write `predict_step` results to `output` as JSON lines `{"input": item, **record}`, in the order of `items`.

    `predict_step` returns one record (a dict) per readable input of the batch, in the order of `batch["indices"]`;
    `batch["bad"]` lists `(index, error)` of the inputs that could not be read.

    Args:
        output: The JSON-lines file to write.
        items: The inputs, in order (what each line's "input" is).
        stop_on_bad: Raise, naming the first unreadable input, instead of writing the output (under DDP the ranks
            read with skipping and decide together at the end, so that none is left waiting for another).

    Example::

        trainer = Trainer(callbacks=[JSONLinesWriter("preds.jsonl", items)])
        trainer.predict(module, dataloaders=loader, return_predictions=False)
    """

    def __init__(self, output: str | Path, items: Sequence[str], stop_on_bad: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output = Path(output)
        self.items = list(items)
        self.stop_on_bad = stop_on_bad
        self.written = 0
        self.failed: list[tuple[str, str]] = []
        self._local_bad = False

    def _part(self, rank: int) -> Path:
        return self.output.with_name(f".{self.output.name}.rank{rank}.part")

    @override
    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._part(trainer.global_rank).write_text("")

    @override
    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        records = list(prediction or [])
        if len(records) != len(batch["indices"]):
            raise ValueError(
                f"{type(pl_module).__name__}.predict_step returned {len(records)} records for a batch of "
                f"{len(batch['indices'])} readable inputs; return one per input"
            )
        lines = [[int(i), record] for i, record in zip(batch["indices"], records)]
        lines += [[int(i), {"error": error}] for i, error in batch["bad"]]
        self._local_bad |= bool(batch["bad"])
        with open(self._part(trainer.global_rank), "a", encoding="utf-8") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)

    @override
    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Every rank takes part in this decision, so all of them stop, or none.
        stop = self.stop_on_bad and trainer.strategy.reduce_boolean_decision(self._local_bad, all=False)
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            records = self._merge(trainer.world_size)
            self.failed = [(self.items[i], r["error"]) for i, r in sorted(records.items()) if "error" in r]
            if not stop:
                self._write(records)
        if stop:
            from mmattn.data.predict import unreadable_message

            if self.failed:
                raise ValueError(unreadable_message(*self.failed[0]))
            raise ValueError("another process met an unreadable input (rank 0 names it); pass skip_bad_files=true")
        trainer.strategy.barrier()

    def _merge(self, world_size: int) -> dict[int, dict[str, Any]]:
        """Every rank's lines by index (the first of repeated ones); the part files are removed."""
        records: dict[int, dict[str, Any]] = {}
        for rank in range(world_size):
            part = self._part(rank)
            for line in part.read_text(encoding="utf-8").splitlines():
                index, record = json.loads(line)
                records.setdefault(index, record)
            part.unlink()
        missing = [self.items[i] for i in range(len(self.items)) if i not in records]
        if missing:
            raise RuntimeError(f"no prediction for {len(missing)} input(s), e.g. {missing[0]}")
        return records

    def _write(self, records: dict[int, dict[str, Any]]) -> None:
        with atomic_write(self.output, "w") as f:
            for i, item in enumerate(self.items):
                f.write(json.dumps({"input": item, **records[i]}, ensure_ascii=False) + "\n")
        self.written = len(self.items)
        if self.failed:
            shown = "; ".join(f"{path}: {error}" for path, error in self.failed[:5])
            rank_zero_warn(f"{len(self.failed)} input(s) could not be read and were skipped: {shown}")
        rank_zero_info(f"{self.written} predictions written to {self.output}")
