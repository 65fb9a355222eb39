"""`TokenizerInRunDir`: the datamodule mixin that trains a tokenizer once per run and keeps it in `tokenizer_dir`.

Every text-producing datamodule (language-model text, parallel text, speech transcripts) trains its tokenizer on its
own training split. The tokenizer must be the same in every process and across restarts, or ids would mean other
words: so `prepare_data` (rank 0 of each node) trains it and saves it to `tokenizer_dir` (normally the run
directory), and `setup` loads it from there in every process. A run resumed in the same directory loads the saved
tokenizer instead of training a new one; without a `tokenizer_dir` it is trained in memory at `setup`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol

__all__ = ["SavableTokenizer", "TokenizerInRunDir"]


class SavableTokenizer(Protocol):
    """What the mixin asks of a tokenizer class: save to a folder, know whether one is saved there, load it."""

    def save(self, directory: str | Path) -> None:
        """Write the tokenizer's files into `directory`."""
        ...

    @classmethod
    def is_saved(cls, directory: str | Path) -> bool:
        """Whether `directory` holds every file `load` needs."""
        ...

    @classmethod
    def load(cls, directory: str | Path) -> Any:
        """Read a tokenizer written by `save`."""
        ...


class TokenizerInRunDir(ABC):
    """LightningDataModule mixin: a tokenizer trained on the training split, saved in and loaded from `tokenizer_dir`.

    A subclass sets `tokenizer_class` and `self.tokenizer_dir` (a `Path` or None), implements `build_tokenizer`, and
    calls `setup_tokenizer()` in its `setup` before it encodes anything. Put the mixin before
    `LightningDataModule` in the bases: its `prepare_data` trains and saves the tokenizer.
    """

    tokenizer_class: ClassVar[type[SavableTokenizer]]
    tokenizer_dir: Path | None
    tokenizer: Any

    @abstractmethod
    def build_tokenizer(self) -> Any:
        """A new tokenizer, trained on the training split (read here: prepare_data runs before setup)."""

    def has_saved_tokenizer(self) -> bool:
        """Whether `tokenizer_dir` already holds a complete tokenizer (a resumed run, or another rank saved it)."""
        return self.tokenizer_dir is not None and self.tokenizer_class.is_saved(self.tokenizer_dir)

    def prepare_data(self) -> None:
        """Train and save the tokenizer once (rank 0 of each node), so every process loads the same one."""
        super().prepare_data()  # type: ignore[misc]
        if self.tokenizer_dir is not None and not self.has_saved_tokenizer():
            self.build_tokenizer().save(self.tokenizer_dir)

    def setup_tokenizer(self) -> Any:
        """Set and return `self.tokenizer`: the saved one when there is one, else a new one (saved when it can be)."""
        if self.has_saved_tokenizer():
            self.tokenizer = self.tokenizer_class.load(self.tokenizer_dir)
        else:
            self.tokenizer = self.build_tokenizer()
            if self.tokenizer_dir is not None:
                self.tokenizer.save(self.tokenizer_dir)
        return self.tokenizer
