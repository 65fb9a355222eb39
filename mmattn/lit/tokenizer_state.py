"""How a text module gets its tokenizer and carries it: from the datamodule in training, inside every checkpoint.

Shared by `Seq2SeqModule` and `LanguageModelModule`. A tokenizer needs `to_dict()` (plain strings, so checkpoints load
with `weights_only=True`) and a `from_dict` classmethod; the checkpoint also records its class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mmattn.build import resolve_class

__all__ = [
    "TOKENIZER_KEY",
    "CarriesTokenizer",
    "adopt_tokenizer",
    "store_tokenizer",
    "tokenizer_from_checkpoint",
    "vocab_size_limit",
    "vocab_size_problem",
]

# Where the tokenizer travels inside a checkpoint: evaluation, translation and generation need nothing else.
TOKENIZER_KEY = "mmattn_tokenizer"

# How far a net's vocabulary may outgrow its tokenizer's: to the next multiple of 64 (nanoGPT pads GPT-2's 50,257 ids
# to 50,304 for faster matmuls; it also lets the LM demo's 128 rows hold the 77 ids its SCAN BPE ends up with) or by a
# quarter (a BPE trained on a modest corpus falls a little short of the size asked for, which should not stop a run).
# Past both, the extra output rows are dead weight no target ever trains: with the 260-id byte tokenizer, an 8000-row
# output layer made training 3.5x slower.
VOCAB_MULTIPLE = 64
VOCAB_SLACK = 1.25


def vocab_size_limit(tokenizer_size: int) -> int:
    """The most rows a net's vocabulary may have for a tokenizer of `tokenizer_size` ids (see VOCAB_SLACK)."""
    padded = -(-tokenizer_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    return max(padded, int(tokenizer_size * VOCAB_SLACK))


def vocab_size_problem(
    tokenizer: str, tokenizer_size: int, key: str, net_size: int, *, fitting: bool = True
) -> str | None:
    """Why a net vocabulary of `net_size` rows (config `key`) does not fit `tokenizer`'s ids, ending in the override
    that fixes it; None when it fits: at least `tokenizer_size` rows and, when `fitting`, at most
    `vocab_size_limit(tokenizer_size)` (unused rows only cost training; a trained checkpoint still evaluates)."""
    if net_size < tokenizer_size:
        return (
            f"{tokenizer} has {tokenizer_size} ids but {key} is {net_size}, too few rows to embed them; "
            f"set {key}={tokenizer_size}"
        )
    limit = vocab_size_limit(tokenizer_size)
    if fitting and net_size > limit:
        return (
            f"{tokenizer} has {tokenizer_size} ids but {key} is {net_size}, more than {limit} (the tokenizer's size "
            f"padded to a multiple of {VOCAB_MULTIPLE}, or +{VOCAB_SLACK - 1:.0%}): {net_size - tokenizer_size} output "
            f"rows would never be trained; set {key}={tokenizer_size}"
        )
    return None


def adopt_tokenizer(current: Any, datamodule: Any, module_name: str) -> Any:
    """The tokenizer a module should use: the datamodule's (None: none), checked against the one it already holds.

    Raises:
        ValueError: The datamodule's tokenizer differs from the checkpoint's, or there is none at all.
    """
    tokenizer = getattr(datamodule, "tokenizer", None)
    if tokenizer is not None:
        if current is not None and current.to_dict() != tokenizer.to_dict():
            # The data was encoded with the datamodule's tokenizer: ids would mean other words to this model.
            raise ValueError(
                "the datamodule's tokenizer differs from the one stored with this model (checkpoint); point "
                "data.tokenizer_dir at the training run's tokenizer/ folder"
            )
        return tokenizer
    if current is None:
        raise ValueError(
            f"{module_name} has no tokenizer: the datamodule provides none and the checkpoint carried none; "
            "train with a text datamodule or load a checkpoint written by mmattn-train"
        )
    return current


def store_tokenizer(checkpoint: dict[str, Any], tokenizer: Any) -> None:
    """Put `tokenizer` (its class and `to_dict()`) into a checkpoint dict."""
    if tokenizer is not None:
        cls = type(tokenizer)
        checkpoint[TOKENIZER_KEY] = {"class": f"{cls.__module__}.{cls.__qualname__}", **tokenizer.to_dict()}


def tokenizer_from_checkpoint(checkpoint: Mapping[str, Any]) -> Any:
    """The tokenizer stored in `checkpoint` by `store_tokenizer`.

    The stored class is built only from mmattn itself or a package the user trusts (`mmattn.build`).

    Raises:
        ValueError: The checkpoint carries no tokenizer, or names a class that is not trusted.
    """
    stored = checkpoint.get(TOKENIZER_KEY)
    if stored is None:
        raise ValueError(
            "this checkpoint carries no tokenizer (it was not written by a text module run of mmattn-train); "
            "use a checkpoint from mmattn-train"
        )
    stored = dict(stored)
    cls = resolve_class(str(stored.pop("class")), where=f"{TOKENIZER_KEY}.class", kinds=(object,), first_party=True)
    return cls.from_dict(stored)


class CarriesTokenizer:
    """LightningModule mixin: every checkpoint carries `self.tokenizer`, and loading one restores it.

    A module whose tokenizer is optional (`tokenizer_optional`: a family that may pair inputs without text) saves
    none when it has none, and loads a checkpoint without one.
    """

    tokenizer: Any
    tokenizer_optional: ClassVar[bool] = False

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the tokenizer (plain strings, so the checkpoint loads with weights_only=True)."""
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        store_tokenizer(checkpoint, self.tokenizer)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rebuild the tokenizer stored by `on_save_checkpoint`."""
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        if self.tokenizer_optional and checkpoint.get(TOKENIZER_KEY) is None:
            self.tokenizer = None
            return
        self.tokenizer = tokenizer_from_checkpoint(checkpoint)

    def require_tokenizer(self) -> Any:
        """The tokenizer, or one line saying where one comes from: what inference with texts needs first."""
        if self.tokenizer is None:
            raise ValueError("no tokenizer: load a checkpoint written by mmattn-train (it carries the tokenizer)")
        return self.tokenizer
