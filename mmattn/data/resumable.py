"""Training order as a function of (seed, epoch), resumed mid-epoch where it was interrupted.

A resumed run is the run that was interrupted only if three things continue exactly:

- **Which samples come next.** The training sampler is a `DistributedSampler` (also on one process), whose order is
  a function of its seed and the epoch; `TokenBudgetBatchSampler` likewise. `ResumableDataLoader` counts the batches
  it hands out, saves `(epoch, batches)` with the checkpoint (Lightning calls `state_dict` of a train loader that has
  one, and `load_state_dict` before the first batch of a resumed fit) and, resumed, skips that many batches of the
  epoch's order before loading anything.
- **Random augmentation.** Each training item is fetched with the global RNGs (torch, numpy, random) seeded from
  `(seed, epoch, index)`, in whichever worker process loads it, so an item's crop, noise or SpecAugment mask does
  not depend on the worker count, on which items that worker loaded before, or on a restart.
- **Randomness of the step** (dropout, Mixup, device-side augmentation in `on_after_batch_transfer`). Before
  handing out a training batch the loader seeds the main process's RNGs from `(seed, epoch, batch, rank)`, so what a
  step draws does not depend on what ran before it (validation, a restart).

Lightning fetches batches of a loader with a length one at a time (no prefetch), so when a checkpoint is written
after a training batch the count of batches handed out is the count trained on.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = [
    "DataOrderError",
    "ResumableDataLoader",
    "SeededItems",
    "mix_seed",
    "order_seed",
    "item_seed",
    "seed_rngs",
    "seed_step",
    "train_loader",
    "train_sampler",
]

log = logging.getLogger(__name__)

_MASK = (1 << 64) - 1


class DataOrderError(ValueError):
    """A mid-epoch checkpoint's data order cannot be continued by this run's data configuration."""


def mix_seed(*values: int) -> int:
    """A well-mixed 32-bit seed from integers (splitmix64 over the values), cheap enough for every item."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state + (int(value) & _MASK) + 0x9E3779B97F4A7C15) & _MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        state = z ^ (z >> 31)
    return state & 0xFFFFFFFF


def seed_rngs(seed: int) -> None:
    """Seed this process's torch, numpy and python RNGs (what augmentation, dropout and Mixup draw from)."""
    # Not torch.manual_seed: it also queues the lazy seeding of every accelerator, recording a stack trace each time
    # (85 us a call, more than decoding a small PNG). A GPU generator in use is initialised and seeded directly.
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)
    np.random.seed(seed)
    random.seed(seed)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of training item `index` in `epoch` (what its augmentation draws from)."""
    return mix_seed(seed, epoch, index)


def seed_step(seed: int, epoch: int, position: int, rank: int) -> None:
    """Seed the RNGs of the training step at `position` of `epoch` on `rank` (dropout, Mixup, device augmentation)."""
    # The trailing 1 keeps step seeds apart from item seeds of the same numbers.
    seed_rngs(mix_seed(seed, epoch, position, rank, 1))


def order_seed() -> int:
    """The run's seed (`seed` of the train config, which Lightning's `seed_everything` exports), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class SeededItems(Dataset):
    """A map-style dataset read with keys `(index, seed)`: the RNGs are seeded with `seed`, then `dataset[index]`."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        """Length of the wrapped dataset."""
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        """The item at `key[0]`, read after seeding the RNGs with `key[1]`."""
        index, seed = key
        seed_rngs(seed)
        return self.dataset[index]

    def __getattr__(self, name: str) -> Any:
        # Datasets are asked for their attributes (`lengths()`, `classes`); unpickling looks before `dataset` is set.
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def _order_sampler(batch_sampler: Any) -> Any:
    """The object carrying the epoch and seed of a loader's order (a token-budget sampler, or a batch sampler's
    per-sample sampler)."""
    if hasattr(batch_sampler, "epoch"):
        return batch_sampler
    return getattr(batch_sampler, "sampler", None)


class _Skip:
    """How many batches the next pass skips: shared by a loader and its index sampler."""

    def __init__(self) -> None:
        self.batches = 0


class _ResumedIndices(Sized):
    """The loader's batch sampler, minus the batches of a resumed epoch already trained, with item seeds added.

    It holds what it needs, not the loader: a loader <-> iterator cycle would leave the iterator to the cyclic garbage
    collector, which may finalize the worker queues first, so that shutting the workers down waits out their timeouts
    (10 s for 2 workers, measured).
    """

    def __init__(self, inner: Any, seed: int | None, skip: _Skip) -> None:
        self.inner = inner
        self.seed = seed
        self.skip = skip

    def __len__(self) -> int:
        """Batches of a whole epoch (Lightning counts the skipped ones as done)."""
        return len(self.inner)

    def __iter__(self) -> Iterator[Any]:
        """This epoch's batches of keys `(index, item seed)`, from the resume position on."""
        epoch = int(getattr(_order_sampler(self.inner), "epoch", 0))
        skip, seed = self.skip.batches, self.seed
        for number, batch in enumerate(self.inner):
            if number < skip:
                continue
            if seed is None:
                yield batch
            else:
                yield [(index, item_seed(seed, epoch, index)) for index in batch]


class ResumableDataLoader(DataLoader):
    """A DataLoader that resumes its training order mid-epoch and makes every random draw a function of the seed.

    Give it `seed` (the run's: `order_seed()`) for training: the dataset is then read through `SeededItems`, the
    batches come from a sampler with an epoch (a `DistributedSampler`, made by `train_sampler`, or a
    `TokenBudgetBatchSampler`), and the loader saves and restores its position through `state_dict` /
    `load_state_dict`, which Lightning calls with the checkpoint. Without `seed` it is a plain DataLoader (evaluation).

    Args:
        dataset: A map-style dataset.
        *args: DataLoader's arguments.
        seed: Seed of the item and step RNGs; None = an ordinary, non-resumable loader.
        **kwargs: DataLoader's keyword arguments.
    """

    def __init__(self, dataset: Dataset, *args: Any, seed: int | None = None, **kwargs: Any) -> None:
        if seed is not None and not isinstance(dataset, SeededItems):
            dataset = SeededItems(dataset)
        super().__init__(dataset, *args, **kwargs)
        self.seed = seed
        self._skip = _Skip()
        self._resume: tuple[int, int] | None = None
        self._position: tuple[int, int] | None = None

    @property
    def _index_sampler(self) -> Any:
        inner = super()._index_sampler
        if self.seed is None or not self._auto_collation:
            return inner
        return _ResumedIndices(inner, self.seed, self._skip)

    def _epoch(self) -> int:
        """The epoch the order sampler was last set to."""
        return int(getattr(_order_sampler(self.batch_sampler), "epoch", 0))

    def __iter__(self) -> Iterator[Any]:
        """Batches of the current epoch; a resumed epoch starts after its trained batches."""
        if self.seed is None:
            yield from super().__iter__()
            return
        # Iterated lazily, so the epoch is read after Lightning's `set_epoch` (it creates the iterator before it).
        epoch = self._epoch()
        self._skip.batches = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        self._resume = None
        number = self._skip.batches
        self._position = (epoch, number)
        rank = int(getattr(_order_sampler(self.batch_sampler), "rank", 0))
        for batch in super().__iter__():
            number += 1
            self._position = (epoch, number)
            seed_step(self.seed, epoch, number, rank)
            yield batch

    # ------------------------------------------------------------------------------------------- checkpoint state

    def _describe(self) -> dict[str, Any]:
        """What the order depends on, to compare a checkpoint's order with this run's."""
        sampler = _order_sampler(self.batch_sampler)
        return {
            "samples": len(self.dataset),  # type: ignore[arg-type]
            "batch_size": self.batch_size if self.batch_size is not None else getattr(sampler, "max_tokens", None),
            "num_replicas": int(getattr(sampler, "num_replicas", 1)),
            "order_seed": getattr(sampler, "seed", None),
            "item_seed": self.seed,
            "batches_per_epoch": len(self),
        }

    def state_dict(self) -> dict[str, Any]:
        """The position in the training order: `(epoch, batches handed out)` and what the order depends on."""
        if self.seed is None:
            # Not ours to resume; a loader class mixed in after this one (litdata's) may keep its own state.
            parent = getattr(super(), "state_dict", None)
            return parent() if parent is not None else {}
        epoch, batches = self._position if self._position is not None else (self._epoch(), 0)
        return {"epoch": epoch, "batches": batches, **self._describe()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's position: the next iteration of its epoch skips the batches already trained.

        Raises:
            DataOrderError: The checkpoint stopped mid-epoch and the order this run would produce differs (dataset
                size, batch size or budget, number of processes, seed); the message names what differs.
        """
        if self.seed is None:
            parent = getattr(super(), "load_state_dict", None)
            if parent is not None:
                parent(state)
            return
        if not state:
            return
        epoch, batches = int(state["epoch"]), int(state["batches"])
        now = self._describe()
        differs = [
            f"{key} {state.get(key)} in the checkpoint, {now[key]} now"
            for key in ("samples", "batch_size", "num_replicas", "order_seed", "item_seed")
            if state.get(key) != now[key]
        ]
        mid_epoch = 0 < batches < int(state.get("batches_per_epoch", batches))
        if differs and mid_epoch:
            raise DataOrderError(
                f"cannot continue the training order of epoch {epoch} after batch {batches}: "
                + "; ".join(differs)
                + ". Resume with the checkpoint's data, batch size, process count (trainer.devices x "
                "trainer.num_nodes) and seed, or from a checkpoint written at the end of an epoch"
            )
        if differs:
            log.warning(
                "training data order differs from the checkpoint's (%s): the next epoch follows the seed and epoch "
                "with this configuration (with another process count each rank reads another share of the same "
                "permutation)",
                "; ".join(differs),
            )
        self._resume = (epoch, batches)
        if mid_epoch:
            log.info("resuming epoch %d of the training data after batch %d of %d", epoch, batches, len(self))


def train_sampler(
    dataset: Sized, trainer: Any, *, seed: int | None = None, drop_last: bool = False
) -> DistributedSampler:
    """The training sampler of a map-style dataset: this rank's share of a permutation fixed by `(seed, epoch)`.

    A `DistributedSampler` also on one process, so the order is the seed's (not the global RNG's) and Lightning,
    which leaves a `DistributedSampler` in place, never swaps it. `seed` defaults to `order_seed()`.
    """
    world = 1 if trainer is None else int(trainer.world_size)
    rank = 0 if trainer is None else int(trainer.global_rank)
    return DistributedSampler(
        dataset,  # type: ignore[arg-type]
        num_replicas=world,
        rank=rank,
        shuffle=True,
        seed=order_seed() if seed is None else seed,
        drop_last=drop_last,
    )


def eval_sampler(dataset: Sized, trainer: Any) -> DistributedSampler | None:
    """An evaluation loader's sampler under data parallelism: this rank's share of the examples, in order (None on
    one process), as Lightning's sampler injection makes it; for loaders that shard while that injection is off."""
    world = 1 if trainer is None else int(trainer.world_size)
    if world < 2:
        return None
    return DistributedSampler(
        dataset,  # type: ignore[arg-type]
        num_replicas=world,
        rank=int(trainer.global_rank),
        shuffle=False,
        drop_last=False,
    )


def train_loader(
    dataset: Dataset,
    trainer: Any,
    *,
    batch_size: int,
    drop_last: bool,
    loader_class: type[ResumableDataLoader] | None = None,
    **kwargs: Any,
) -> ResumableDataLoader:
    """A resumable training loader of `batch_size` items from `train_sampler` (keyword arguments go to DataLoader).

    `drop_last` drops the last incomplete batch of each rank (kept when a rank's share is smaller than one batch,
    which would otherwise yield nothing).
    """
    sampler = train_sampler(dataset, trainer)  # type: ignore[arg-type]
    # Passed as `sampler` (not inside a batch sampler): Lightning leaves a DataLoader's DistributedSampler alone.
    return (loader_class or ResumableDataLoader)(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last and sampler.num_samples >= batch_size,
        seed=order_seed(),
        **kwargs,
    )
