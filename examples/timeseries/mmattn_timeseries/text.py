"""The activities in words: a few descriptions of each activity, the tokenizer trained on them, the base of the
datamodules that pair sensor windows with texts, and the contrastive one, `ActivityTextDataModule` (the fusion one,
`ActivityClaimsDataModule`, is in claims.py).

The tokenizer is mmattn's `TextTokenizer` (a lowercase BPE), trained on the descriptions and kept in the run
directory by mmattn's `TokenizerInRunDir`, so every process and every resumed run reads the same ids; a contrastive
checkpoint carries it too (`ContrastiveModule`). Texts are encoded as the built-in text datamodules encode them:
EOS-terminated ids, padded with `pad_id` to the longest text of the batch.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from mmattn.data import ClassificationDataModule
from mmattn.tasks.text import TextTokenizer, TokenizerInRunDir, encode_eos, encode_texts, pad_ids
from mmattn.tasks.text.bpe import PAD_ID

from .data import ACTIVITIES, load_windows

__all__ = [
    "ACTIVITY_TEXTS",
    "SENSOR",
    "TEXT",
    "ActivityTextBase",
    "ActivityTextDataModule",
    "DescribedWindows",
    "collate_described",
    "pad_ids",
]

log = logging.getLogger(__name__)

# How people describe each activity (in ACTIVITIES order); the first is the plain one, used as the zero-shot prompt.
# Some share words with another activity ("a person walking up the stairs" is climbing, not walking; "steps" are
# running and climbing), so a model must read more than one word.
ACTIVITY_TEXTS: dict[str, tuple[str, ...]] = {
    "cycling": ("someone cycling", "a person riding a bike", "pedalling a bicycle", "a cyclist out on the road"),
    "jumping": ("someone jumping", "a person jumping up and down", "hopping in place", "bouncing on the spot"),
    "running": ("someone running", "a person out for a jog", "running at a steady pace", "quick running steps"),
    "sitting": ("someone sitting", "a person sitting still", "resting in a chair", "seated at a desk"),
    "stairs": ("someone climbing stairs", "a person walking up the stairs", "going up a staircase", "taking the steps"),
    "walking": ("someone walking", "a person taking a stroll", "walking at an easy pace", "a walk down the street"),
}


class ActivityTextBase(TokenizerInRunDir, ClassificationDataModule):
    """The windows of `ActivityDataModule` and the descriptions of `ACTIVITY_TEXTS`, with the tokenizer that encodes
    them.

    Subclasses set `class_names` and `collate_fn`, and build each split's dataset (`dataset`); validation and test
    are read in a fixed shuffled order. After `setup()`:
    `tokenizer`, `pad_id`, `classes`, and `encode_texts` for any text (a query, a prompt).

    Args:
        root: Data directory; the windows live in `root/activities/` (shared with `ActivityDataModule`).
        per_class: Windows per class and split, {"train": n, "val": n, "test": n}.
        seed: Seed of the synthesis and of the descriptions drawn for evaluation.
        tokenizer_dir: Where the tokenizer is saved (and read from, when it is there); normally the run directory.
            None trains it in memory.
        vocab_size: Upper bound of the BPE vocabulary (the default descriptions fill all 128; the text models'
            `vocab_size` must hold the trained tokenizer's, which a contrastive run checks at setup).
        batch_size: Examples per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        **kwargs: Options of `mmattn.data.ClassificationDataModule` (pin_memory, drop_last, num_classes, ...).
    """

    tokenizer_class = TextTokenizer
    # The names of the labels of the subclass's batches.
    class_names: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        root: str | Path,
        *,
        per_class: dict[str, int] | None = None,
        seed: int = 0,
        tokenizer_dir: str | Path | None = None,
        vocab_size: int = 128,
        batch_size: int = 64,
        num_workers: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, **kwargs)
        self.root = Path(root).expanduser() / "activities"
        self.per_class, self.seed = per_class, seed
        self.tokenizer_dir = None if tokenizer_dir is None else Path(tokenizer_dir).expanduser()
        self.vocab_size = int(vocab_size)
        self.tokenizer: TextTokenizer | None = None
        self.pad_id = PAD_ID
        # Texts given to `encode_texts` that held characters outside the tokenizer (they became <unk>).
        self.unknown_texts = 0

    def prepare_data(self) -> None:
        """Write the windows once, then train and save the tokenizer once (both process-safe)."""
        load_windows(self.root, per_class=self.per_class, seed=self.seed)
        super().prepare_data()

    def build_tokenizer(self) -> TextTokenizer:
        """A lowercase BPE trained on every description (a closed set: the same ids in every run)."""
        texts = [text for texts in ACTIVITY_TEXTS.values() for text in texts]
        return TextTokenizer.train(texts, vocab_size=self.vocab_size, min_frequency=1, lowercase=True)

    @abstractmethod
    def dataset(
        self, windows: Tensor, labels: Tensor, descriptions: list[list[list[int]]], rng: np.random.Generator | None
    ) -> Dataset:
        """One split's dataset of `windows` [N, 3, 128] with activity `labels` [N] and the ids of each activity's
        descriptions; `rng` draws the texts it fixes (validation, test), None for training (drawn at each read)."""

    def _load(self) -> tuple[Dataset, Dataset, Dataset, list[str]]:
        self.setup_tokenizer()
        descriptions = [self._ids(list(texts)) for texts in ACTIVITY_TEXTS.values()]
        splits = load_windows(self.root, per_class=self.per_class, seed=self.seed)
        sets: dict[str, Dataset] = {}
        for k, (split, (x, y)) in enumerate(splits.items()):
            if split == "train":
                sets[split] = self.dataset(x, y, descriptions, None)
                continue
            rng = np.random.default_rng([self.seed, k])
            fixed = self.dataset(x, y, descriptions, rng)
            # The files hold the windows by activity; a fixed shuffle puts every activity into the first batch, the
            # one mmattn-viz draws (retrieval and accuracy do not depend on the order).
            sets[split] = Subset(fixed, rng.permutation(len(fixed)).tolist())
        return sets["train"], sets["val"], sets["test"], list(self.class_names)

    def _ids(self, texts: list[str]) -> list[list[int]]:
        if self.tokenizer is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before texts are encoded")
        return encode_eos(self.tokenizer, texts, where="descriptions")[0]

    def encode_texts(self, texts: Sequence[str]) -> Tensor:
        """Texts as the model reads descriptions: long [B, L], EOS-terminated ids padded with `pad_id`.

        Characters outside the tokenizer become `<unk>`; such texts are counted in `unknown_texts` and a warning,
        not refused (a query in other words still gets an answer).

        Raises:
            RuntimeError: Before `setup()` (or before a loaded model hands over its tokenizer).
            ValueError: `texts` is not a non-empty list of strings (one string would be read as its characters).
        """
        ids, unknown = encode_texts(self.tokenizer, texts)
        self.unknown_texts += unknown
        return ids


# The batch keys of the two inputs: the tower names of configs/model/sensor_clip.yaml and the member names of
# configs/model/sensor_fusion.yaml.
SENSOR, TEXT = "sensor", "text"


class DescribedWindows(Dataset):
    """Windows with a description of their activity: item i = (window [3, 128], description ids, activity).

    Args:
        windows: [N, 3, 128].
        labels: [N] activity indices.
        descriptions: Per activity, the ids of each of its descriptions.
        choice: Per window, which description of its activity it gets (evaluation: fixed); None draws one each time
            a window is read (training: torch's RNG, which Lightning seeds per process and worker).
    """

    def __init__(
        self,
        windows: Tensor,
        labels: Tensor,
        descriptions: Sequence[Sequence[list[int]]],
        choice: Sequence[int] | None = None,
    ) -> None:
        self.windows, self.labels = windows, labels.tolist()
        self.descriptions, self.choice = descriptions, choice

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, list[int], int]:
        options = self.descriptions[self.labels[i]]
        j = int(torch.randint(len(options), ())) if self.choice is None else self.choice[i]
        return self.windows[i], options[j], self.labels[i]


def collate_described(batch: Sequence[tuple[Tensor, list[int], int]]) -> dict[str, Tensor]:
    """{"sensor": [B, 3, 128], "text": [B, L] padded ids, "match": [B] activity, "label": [B] activity}."""
    activity = torch.tensor([b[2] for b in batch], dtype=torch.long)
    return {
        SENSOR: torch.stack([b[0] for b in batch]),
        TEXT: pad_ids([b[1] for b in batch]),
        "match": activity,
        "label": activity,
    }


class ActivityTextDataModule(ActivityTextBase):
    """Sensor windows with descriptions of their activity, for a contrastive dual encoder (`ContrastiveModule`).

    Batches are dicts: `"sensor"` windows [B, 3, 128] (standardised), `"text"` [B, L] a description's ids
    (EOS-terminated, padded with `pad_id`), `"match"` [B] the activity (a description fits every window of its
    activity, so any of them retrieved counts as right) and `"label"` [B] the activity again, for zero-shot
    classification from `prompts` (the plain description of each activity) or `prompt_sets` (all of them).
    Training draws a description per window each time it is read; validation and test fix one per window (drawn
    from `seed`). Training batches have a fixed size: a short last batch, with fewer negatives, is dropped.

    Args:
        root: Data directory; the windows live in `root/activities/`.
        drop_last: Drop the last incomplete training batch.
        **kwargs: Options of `ActivityTextBase` (per_class, seed, tokenizer_dir, vocab_size, batch_size, ...).
    """

    collate_fn = staticmethod(collate_described)
    class_names = ACTIVITIES

    def __init__(self, root: str | Path, *, drop_last: bool = True, **kwargs) -> None:
        super().__init__(root, drop_last=drop_last, **kwargs)

    @property
    def prompts(self) -> list[str]:
        """One zero-shot prompt per activity, in `classes` order: its plain description ("someone cycling", ...)."""
        return [texts[0] for texts in ACTIVITY_TEXTS.values()]

    @property
    def prompt_sets(self) -> list[list[str]]:
        """Per activity, all its descriptions (CLIP's prompt ensembling)."""
        return [list(texts) for texts in ACTIVITY_TEXTS.values()]

    def dataset(
        self, windows: Tensor, labels: Tensor, descriptions: list[list[list[int]]], rng: np.random.Generator | None
    ) -> DescribedWindows:
        """The windows with a description each (fixed from `rng`, or drawn at each read)."""
        choice = None if rng is None else [int(rng.integers(len(descriptions[y]))) for y in labels.tolist()]
        return DescribedWindows(windows, labels, descriptions, choice)
