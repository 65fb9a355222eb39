"""Several training loaders mixed into one stream of `(task, batch)` steps, with weights and an exact resume.

An epoch of the mixture is `steps_per_epoch` steps. Which task trains at each step is drawn before the epoch from a
generator seeded with `(seed, epoch)`, so every rank draws the same sequence (under DDP all ranks run the same task at
a step, and no task-only parameter is left without a gradient on one rank only) and a resumed run draws it again.
Each task's batches come from its own loader (a `ResumableDataLoader`, sharded per rank like any training loader),
which runs through its own epochs as the mixture asks for its batches: when one is used up, its next epoch starts.

Schedules (`schedule`), with `n_i` the number of batches of task i in one of its epochs:

- `proportional`: p_i ~ n_i, every batch of every task is as likely (concatenating the datasets);
- `temperature`: p_i ~ n_i^(1/T), T > 1 lifts small tasks toward uniform (multilingual MT's sampling);
- `weights`: p_i ~ the configured weight of task i;
- `round_robin`: the tasks in turn, in the configured order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["SCHEDULES", "MixedLoader", "task_probabilities"]

SCHEDULES = ("proportional", "temperature", "weights", "round_robin")


def task_probabilities(
    sizes: Mapping[str, int],
    schedule: str,
    *,
    temperature: float = 1.0,
    weights: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The probability of each task at a step under `schedule` (round robin: each task's share of the turns).

    Raises:
        ValueError: An unknown schedule, a task with no batch, a temperature <= 0, or a weight that is missing, <= 0
            or given for a task that does not exist; the message names it.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if not sizes:
        raise ValueError("no task to mix; give at least one")
    for name, size in sizes.items():
        if size < 1:
            raise ValueError(f"task {name!r} has {size} batches per epoch; its data is empty or smaller than a batch")
    if schedule == "round_robin":
        return {name: 1 / len(sizes) for name in sizes}
    if schedule == "weights":
        weights = dict(weights or {})
        if unknown := sorted(set(weights) - set(sizes)):
            raise ValueError(f"weights for unknown task(s) {unknown}; the tasks are {sorted(sizes)}")
        if missing := sorted(set(sizes) - set(weights)):
            raise ValueError(f"schedule 'weights' needs a weight for every task; missing for {missing}")
        raw = {name: float(weights[name]) for name in sizes}
    elif schedule == "temperature":
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        raw = {name: float(size) ** (1.0 / temperature) for name, size in sizes.items()}
    else:
        raw = {name: float(size) for name, size in sizes.items()}
    for name, weight in raw.items():
        if not weight > 0:
            raise ValueError(f"task {name!r} has weight {weight}; every weight must be > 0 (drop the task instead)")
    total = sum(raw.values())
    return {name: weight / total for name, weight in raw.items()}


class MixedLoader:
    """`(task name, batch)` for `steps_per_epoch` steps an epoch, the task of each step drawn by the schedule.

    Args:
        loaders: Task name -> its training loader (sized; a `ResumableDataLoader` keeps its own position).
        steps_per_epoch: Steps of one epoch of the mixture (an epoch defined by a step count).
        schedule: One of `SCHEDULES`.
        seed: Seed of the task sequence; the same on every rank.
        temperature: T of the `temperature` schedule.
        weights: Task name -> weight, for the `weights` schedule.

    Raises:
        ValueError: See `task_probabilities`; also `steps_per_epoch` < 1.
    """

    def __init__(
        self,
        loaders: Mapping[str, Any],
        steps_per_epoch: int,
        *,
        schedule: str = "proportional",
        seed: int = 0,
        temperature: float = 1.0,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.loaders = dict(loaders)
        self.names = list(self.loaders)
        sizes = {name: len(loader) for name, loader in self.loaders.items()}
        self.probabilities = task_probabilities(sizes, schedule, temperature=temperature, weights=weights)
        self.schedule = schedule
        self.steps_per_epoch = int(steps_per_epoch)
        self.seed = int(seed)
        self.epoch = 0
        # Per task: its loader's epoch and the batches taken from it in that epoch (what a resume restores).
        self.task_position = {name: [0, 0] for name in self.names}
        self.steps_done = 0
        self._resume: tuple[int, int] | None = None  # (epoch, steps done) from a checkpoint
        self.counts = dict.fromkeys(self.names, 0)
        self._iterators: dict[str, Iterator[Any]] = {}

    def __len__(self) -> int:
        """Steps per epoch."""
        return self.steps_per_epoch

    @property
    def sampler(self) -> MixedLoader:
        """This object: Lightning calls `set_epoch` on a training loader's `sampler` at the start of every epoch."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Select the task sequence of `epoch` (the same value on every rank)."""
        self.epoch = int(epoch)

    def sequence(self, epoch: int) -> list[str]:
        """The task of every step of `epoch`."""
        if self.schedule == "round_robin":
            return [self.names[step % len(self.names)] for step in range(self.steps_per_epoch)]
        rng = np.random.default_rng([self.seed, epoch])
        p = np.array([self.probabilities[name] for name in self.names])
        return [self.names[i] for i in rng.choice(len(self.names), size=self.steps_per_epoch, p=p)]

    def shares(self) -> dict[str, float]:
        """Each task's share of the steps trained so far (all epochs)."""
        total = sum(self.counts.values())
        return {name: count / total if total else 0.0 for name, count in self.counts.items()}

    def _next_batch(self, name: str) -> Any:
        """The next batch of task `name`, starting the task loader's next epoch when one is used up."""
        position = self.task_position[name]
        while True:
            if name not in self._iterators:
                loader = self.loaders[name]
                _set_epoch(loader, position[0])
                self._iterators[name] = iter(loader)
            try:
                batch = next(self._iterators[name])
            except StopIteration:
                del self._iterators[name]
                position[0], position[1] = position[0] + 1, 0
                continue
            position[1] += 1
            return batch

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        """This epoch's steps, from the first (or, resumed, from the step after the checkpoint's)."""
        # Read when the first step is asked for, after `set_epoch` (a caller that knows the length, like Lightning,
        # stops asking after the last step, so nothing may depend on the loop running to its end).
        epoch = self.epoch
        start = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        self._resume = None
        self.steps_done = start
        tasks = self.sequence(epoch)
        for step in range(start, self.steps_per_epoch):
            name = tasks[step]
            batch = self._next_batch(name)
            self.steps_done = step + 1
            self.counts[name] += 1
            yield name, batch

    def state_dict(self) -> dict[str, Any]:
        """The mixture's position (epoch, steps done, counts) and each task loader's (its epoch, batches taken)."""
        return {
            "epoch": self.epoch,
            "steps_done": self.steps_done,
            "counts": dict(self.counts),
            "tasks": {name: list(position) for name, position in self.task_position.items()},
            "schedule": self.schedule,
            "probabilities": dict(self.probabilities),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state`: the same task sequence from the next step, each task loader from its next batch.

        Raises:
            ValueError: The checkpoint's tasks or schedule differ from this mixture's (the sequence would differ).
        """
        if sorted(state["tasks"]) != sorted(self.names):
            raise ValueError(
                f"the checkpoint mixes tasks {sorted(state['tasks'])}, this run {sorted(self.names)}; resume with the "
                "same tasks"
            )
        if state["schedule"] != self.schedule or state["probabilities"] != self.probabilities:
            raise ValueError(
                f"the checkpoint's task sampling ({state['schedule']}, {state['probabilities']}) differs from this "
                f"run's ({self.schedule}, {self.probabilities}); resume with the same schedule, weights and data"
            )
        self.epoch, self.steps_done = int(state["epoch"]), int(state["steps_done"])
        self._resume = (self.epoch, self.steps_done)
        self.counts = {name: int(state["counts"][name]) for name in self.names}
        self._iterators = {}
        for name in self.names:
            task_epoch, taken = (int(v) for v in state["tasks"][name])
            self.task_position[name] = [task_epoch, taken]
            loader = self.loaders[name]
            if taken and hasattr(loader, "load_state_dict"):
                # The task loader's own resume: its epoch `task_epoch` continues after `taken` batches.
                loader.load_state_dict({**loader.state_dict(), "epoch": task_epoch, "batches": taken})


def _set_epoch(loader: Any, epoch: int) -> None:
    """Set the epoch of a loader's order sampler, as Lightning does for a plain training loader."""
    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
