"""Length-bucketed batches under a token budget, sharded across data-parallel ranks.

Variable-length examples (sentences in tokens, clips in frames) are batched by padded size rather than by count:
examples of similar length go together and a batch holds as many as fit `max_tokens` once padded to its longest
member, so short examples make big batches, long ones small batches, and little compute is spent on padding.

Using it with Lightning (checked against lightning 2.6):

- Pass it as `DataLoader(dataset, batch_sampler=sampler, collate_fn=...)`.
- Under DDP/FSDP set `Trainer(use_distributed_sampler=False)`. Otherwise Lightning tries to inject a
  `DistributedSampler` into the DataLoader, which for a batch sampler that is not a `torch.utils.data.BatchSampler`
  fails with a TypeError (`lightning/pytorch/utilities/data.py`, `_dataloader_init_kwargs_resolve_sampler`); a
  `BatchSampler` subclass would instead be re-created around the injected per-example sampler, losing the bucketing.
  This sampler shards by itself: build it after the process group exists (in the datamodule's `*_dataloader`
  hooks) or pass `num_replicas=trainer.world_size, rank=trainer.global_rank`. The flag is trainer-wide, so any other
  DataLoader of that run must then shard itself too, or every rank reads all of it.
- Lightning calls `set_epoch` on `dataloader.sampler` and `dataloader.batch_sampler.sampler` only, never on the
  batch sampler itself (`lightning/fabric/utilities/data.py`, `_set_sampler_epoch`), so `sampler` returns this
  object to receive that call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from mmattn.data.resumable import ResumableDataLoader, order_seed

__all__ = [
    "FixedOrderTokenBudgetBatchSampler",
    "TokenBudgetBatchSampler",
    "TokenBudgetLoaders",
    "token_budget_loader",
    "token_budget_shard",
]


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Yield batches of dataset indices whose padded size `max(length) * batch_size` stays within `max_tokens`.

    Each epoch the indices are sorted by length (ties broken at random when shuffling, so batches of equal-length
    examples are regrouped every epoch) and cut greedily into batches. The number of batches depends only on the
    multiset of lengths, so it is the same every epoch.

    With several replicas every rank computes the same batch list, then takes its own share: batches are dealt out
    in groups of `num_replicas` neighbours in length order, one batch of a group per rank, so that the ranks of one
    step work on similar lengths and none waits long for the others. When the batch count is not a multiple of
    `num_replicas`, batches are repeated to fill the last group (like `DistributedSampler`; random ones when
    shuffling, else the shortest), or with `drop_last` the remainder is dropped (random ones when shuffling, else the
    longest). Every rank thus gets the same number of batches, disjoint except for the repeats. Shuffling then
    permutes the order of the groups; all randomness comes from a generator seeded with `(seed, epoch)`, so every
    rank draws the same. As with `DistributedSampler`, evaluating on several ranks counts the repeated batches twice;
    pass `num_replicas=1, rank=0` to have every rank evaluate everything instead.

    Args:
        lengths: Size of each example in the unit of `max_tokens`, e.g. `max(source tokens, target tokens)` with
            special tokens for translation, or frames for audio. Each must be >= 1.
        max_tokens: Budget of a batch, counted with padding: `max(lengths in batch) * len(batch) <= max_tokens`.
        shuffle: Shuffle the grouping of equal-length examples and the batch order each epoch; False gives batches
            in increasing length, the same every epoch (for evaluation).
        seed: Seed of the shuffling; must be the same on every rank.
        num_replicas: Number of data-parallel ranks; default: the world size of the initialised process group, else 1.
        rank: This process's rank; default: the rank in the initialised process group, else 0.
        drop_last: Drop the batches left over after dealing equal numbers to all ranks, instead of repeating some.
        max_sentences: Largest number of examples in a batch, on top of the budget; None for no limit.

    Raises:
        ValueError: A length is < 1 or above `max_tokens` (that example could not fit any batch; filter it out, e.g.
            with a `max_len`, or raise `max_tokens`), or an option is out of range.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_tokens: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        max_sentences: int | None = None,
    ) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(
                f"rank {rank} is out of range for num_replicas={num_replicas}; use 0 <= rank < {num_replicas}"
            )
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if max_sentences is not None and max_sentences < 1:
            raise ValueError(f"max_sentences must be >= 1 or None, got {max_sentences}")
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if len(self.lengths) == 0:
            raise ValueError("lengths is empty; the dataset has no examples to batch")
        if (bad := np.flatnonzero(self.lengths < 1)).size:
            i = int(bad[0])
            raise ValueError(f"example {i} has length {self.lengths[i]}; every length must be >= 1")
        if (bad := np.flatnonzero(self.lengths > max_tokens)).size:
            i = int(bad[0])
            raise ValueError(
                f"example {i} has length {self.lengths[i]} > max_tokens={max_tokens} ({bad.size} examples are too "
                f"long, the longest {self.lengths.max()}); drop them before batching (e.g. a max_len filter) or raise "
                f"max_tokens to at least {self.lengths.max()}"
            )
        self.max_tokens = int(max_tokens)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.drop_last = drop_last
        self.max_sentences = max_sentences
        self.epoch = 0
        self._num_batches = len(self._cut(np.argsort(self.lengths, kind="stable")))
        if drop_last and self._num_batches < self.num_replicas:
            raise ValueError(
                f"the {len(self.lengths)} examples make only {self._num_batches} batches under max_tokens="
                f"{max_tokens}, fewer than num_replicas={self.num_replicas}, so with drop_last=True no rank would get "
                "a batch; lower max_tokens or set drop_last=False"
            )

    @property
    def sampler(self) -> TokenBudgetBatchSampler:
        """This object: Lightning's `_set_sampler_epoch` looks for `set_epoch` on `batch_sampler.sampler` only."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffling of `epoch`; call it before iterating, with the same value on every rank."""
        self.epoch = int(epoch)

    def _cut(self, order: np.ndarray) -> list[np.ndarray]:
        """Cut indices sorted by increasing length into batches, each filled greedily up to the budget."""
        max_sentences = self.max_sentences or len(order)
        batches: list[np.ndarray] = []
        start = 0
        for i, length in enumerate(self.lengths[order].tolist()):
            # In increasing order the newest member is the longest, so it sets the padded size.
            size = i - start + 1
            if length * size > self.max_tokens or size > max_sentences:
                batches.append(order[start:i])
                start = i
        batches.append(order[start:])
        return batches

    def _batches_per_rank(self) -> int:
        """Number of batches each rank yields per epoch."""
        if self.drop_last:
            return self._num_batches // self.num_replicas
        return -(-self._num_batches // self.num_replicas)

    def __len__(self) -> int:
        """Number of batches this rank yields per epoch (the same on every rank)."""
        return self._batches_per_rank()

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this rank's batches of the current epoch, each a list of dataset indices."""
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.shuffle:
            # A random permutation followed by a stable sort breaks length ties at random.
            perm = rng.permutation(len(self.lengths))
            order = perm[np.argsort(self.lengths[perm], kind="stable")]
        else:
            order = np.argsort(self.lengths, kind="stable")
        batches = self._cut(order)

        # Batch ids in increasing length; pad or trim them to a multiple of num_replicas.
        num_groups = self._batches_per_rank()
        ids = np.arange(len(batches))
        pick = rng.permutation(len(batches)) if self.shuffle else ids
        extra = num_groups * self.num_replicas - len(batches)
        if extra > 0:
            # Cycles when there are fewer batches than missing slots, so every slot is filled.
            ids = np.sort(np.concatenate([ids, np.resize(pick, extra)]), kind="stable")
        elif extra < 0:
            ids = np.setdiff1d(ids, pick[extra:] if self.shuffle else ids[extra:])
        groups = ids.reshape(num_groups, self.num_replicas)
        if self.shuffle:
            groups = groups[rng.permutation(num_groups)]
        for batch_id in groups[:, self.rank]:
            yield batches[batch_id].tolist()


class FixedOrderTokenBudgetBatchSampler(TokenBudgetBatchSampler):
    """Token-budget batches in one seeded random order, kept every epoch (for validation).

    Validation that decodes only its first few batches would, in length order, see only the shortest examples, and in
    a per-epoch order a different subset each time. A fixed random order makes them a fair sample, the same every epoch.
    """

    def set_epoch(self, epoch: int) -> None:
        """Ignored: the order never changes."""


def token_budget_shard(trainer: Any) -> tuple[int, int]:
    """`(num_replicas, rank)` for a token-budget sampler under `trainer` (`(1, 0)` without one).

    Raises:
        ValueError: Several processes with `use_distributed_sampler` on (Lightning would try to put a
            `DistributedSampler` under the batch sampler and fail with a bare TypeError).
    """
    if trainer is None:
        return 1, 0
    connector = getattr(trainer, "_accelerator_connector", None)
    if trainer.world_size > 1 and getattr(connector, "use_distributed_sampler", False):
        raise ValueError(
            "token-budget batches shard themselves across ranks: set trainer.use_distributed_sampler=false "
            f"(running {trainer.world_size} processes)"
        )
    return trainer.world_size, trainer.global_rank


def token_budget_loader(
    dataset: Dataset,
    lengths: Sequence[int],
    max_tokens: int,
    *,
    train: bool,
    trainer: Any = None,
    seed: int = 0,
    max_sentences: int | None = None,
    collate_fn: Any = None,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of token-budget batches, sharded for `trainer`'s ranks: reshuffled every epoch in training, in
    one fixed random order for evaluation, whose budget stretches to its longest example (evaluation keeps all)."""
    num_replicas, rank = token_budget_shard(trainer)
    sampler = (TokenBudgetBatchSampler if train else FixedOrderTokenBudgetBatchSampler)(
        lengths,
        max_tokens if train else max(max_tokens, max(lengths)),
        shuffle=True,
        seed=seed,
        num_replicas=num_replicas,
        rank=rank,
        max_sentences=max_sentences,
    )
    return ResumableDataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=collate_fn,
        persistent_workers=num_workers > 0,
        seed=order_seed() if train else None,
    )


class TokenBudgetLoaders(ABC):
    """LightningDataModule mixin: train/val/test loaders of token-budget batches over `self.datasets[split]`.

    The datamodule provides `datasets` (split -> dataset with a `lengths()` method), `seed`, `num_workers`,
    `pin_memory`, and `loader_options()` -> (max_tokens, max_sentences, collate_fn).
    """

    datasets: dict[str, Any]
    seed: int
    num_workers: int
    pin_memory: bool

    @abstractmethod
    def loader_options(self) -> tuple[int, int | None, Any]:
        """(budget per batch, cap on examples per batch or None, collate function)."""

    def _loader(self, split: str, train: bool) -> DataLoader:
        if not self.datasets:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders are requested")
        dataset = self.datasets[split]
        max_tokens, max_sentences, collate_fn = self.loader_options()
        return token_budget_loader(
            dataset,
            dataset.lengths(),
            max_tokens,
            train=train,
            trainer=getattr(self, "trainer", None),
            seed=self.seed,
            max_sentences=max_sentences,
            collate_fn=collate_fn,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        """Budget-filling batches of length-bucketed examples in a new random order every epoch."""
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed random order (a decoded subset is the same fair sample every epoch)."""
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches."""
        return self._loader("test", train=False)
