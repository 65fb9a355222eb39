"""The fusion demo's data: a shape image and a DTMF key tone per example, labelled (shape + key) mod n.

The images and tones are the vision and audio demos' own generated sets (`ShapesDataModule`, `DTMFDataModule`),
written under `root/shape_tone/` with the settings given here, read and transformed by those datamodules. The pairing
is an on-disk list per split (`root/shape_tone/pairs/pairs_<split>.csv`, see `mmattn.tasks.audiovisual.pairs`).

Batches are `(inputs, labels)`:

- `inputs["image"]`: [B, 3, H, W] float, the shapes train/eval transforms;
- `inputs["audio"]`: [B, frames, mel_bins] float, the DTMF demo's AST features;
- `inputs["present"]`: `{"image": [B] bool, "audio": [B] bool}`; an absent input's tensor is all zeros;
- `labels`: [B] long.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmattn.data import ClassificationDataModule
from mmattn.tasks.audio import DTMFDataModule
from mmattn.tasks.vision import ShapesDataModule
from mmattn.tasks.vision.shapes import SHAPE_CLASSES

from .pairs import SPLITS, Pair, check_pair_counts, make_pairs, read_pairs

__all__ = ["MODALITIES", "ShapeToneDataModule", "ShapeToneDataset"]

MODALITIES = ("image", "audio")
DEFAULT_PAIRS = {"train": 16000, "val": 2000, "test": 2000}
# Keys 0-9 of the keypad: key index k is the DTMF class named str(k).
MAX_CLASSES = min(len(SHAPE_CLASSES), 10)
# Options this module sets on the two inner datamodules itself.
# DTMFDataModule options that draw at random per read (training augmentation of the waveform or the features).
_RANDOM_AUDIO = ("freq_mask", "time_mask", "gain_db", "time_shift", "noise_prob")
_OWN_OPTIONS = ("root", "generate", "num_classes", "batch_size", "num_workers", "pin_memory", "persistent_workers")
_FIXED = {
    "image": (*_OWN_OPTIONS, "drop_last", "skip_bad_files"),
    "audio": (*_OWN_OPTIONS, "drop_last", "skip_bad_files", "features_on"),
}


class ShapeToneDataset(Dataset):
    """Pairs of an image dataset's and a tone dataset's items: item i = ({"image", "audio", "present"}, label).

    Args:
        images: Yields (image tensor, shape class) by index.
        tones: Yields (features tensor, key class) by index.
        pairs: (image index, tone index, label) per example.
        drop_modality: Probability per example that one of the two inputs, either with equal chance, is absent.
        only: Mark the other input absent in every example ("image" or "audio"), or None.
        cache_audio: Keep each tone's features after its first read (a tone recurs in many pairs, and its features,
            without random augmentation, never change: computing them dominates the loading time).
    """

    def __init__(
        self,
        images: Dataset,
        tones: Dataset,
        pairs: Sequence[tuple[int, int, int]],
        *,
        drop_modality: float = 0.0,
        only: str | None = None,
        cache_audio: bool = False,
    ) -> None:
        self.images, self.tones = images, tones
        self._audio_cache: dict[int, Tensor] | None = {} if cache_audio else None
        self.pairs = list(pairs)
        self.labels = [label for _, _, label in self.pairs]
        self.drop_modality = drop_modality
        self.only = only
        # Read once, so an absent input is zeros of exactly the shape the transforms give.
        self.zeros = {"image": torch.zeros_like(images[0][0]), "audio": torch.zeros_like(tones[0][0])}

    def __len__(self) -> int:
        return len(self.pairs)

    def _tone(self, i: int) -> Tensor:
        if self._audio_cache is None:
            return self.tones[i][0]
        if i not in self._audio_cache:
            self._audio_cache[i] = self.tones[i][0]
        return self._audio_cache[i].clone()

    def __getitem__(self, i: int) -> tuple[dict[str, Any], int]:
        image_idx, tone_idx, label = self.pairs[i]
        present = {"image": self.only != "audio", "audio": self.only != "image"}
        # torch's global RNG, which Lightning seeds per worker (as the audio datasets' random crops do).
        if self.drop_modality > 0 and torch.rand(()).item() < self.drop_modality:
            present[MODALITIES[int(torch.rand(()).item() < 0.5)]] = False
        image = self.images[image_idx][0] if present["image"] else self.zeros["image"].clone()
        audio = self._tone(tone_idx) if present["audio"] else self.zeros["audio"].clone()
        flags = {name: torch.tensor(value) for name, value in present.items()}
        return {"image": image, "audio": audio, "present": flags}, label


def _inner_options(modality: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    options = dict(options or {})
    fixed = sorted(set(options) & set(_FIXED[modality]))
    if fixed:
        raise ValueError(f"data.{modality} may not set {fixed}: ShapeToneDataModule sets them itself")
    return options


class ShapeToneDataModule(ClassificationDataModule):
    """Pairs (shape image, DTMF key tone) labelled (shape index + key index) mod `num_classes`, for fusion models.

    Shapes are the first `num_classes` of `SHAPE_CLASSES`, keys the digits 0 to `num_classes - 1`. Images and tones
    are generated once under `root/shape_tone/{shapes,dtmf}` (apart from the vision and audio demos' sets, so their
    settings never clash), the pair lists under `root/shape_tone/pairs`. Train pairs hold training files only,
    validation pairs validation files, test pairs test files. `classes` are "0" ... "n-1".

    Args:
        root: Data directory.
        num_classes: n, 2 to 10: shapes, keys and labels alike.
        pairs: Pairs per split, {"train": k, "val": k, "test": k}, each a multiple of n**2 (every (shape, key) cell
            holds the same number, which keeps either input alone at chance).
        pair_seed: Seed of the pairing.
        drop_modality: Training only: probability per example that one input (either, with equal chance) is absent,
            its tensor zeros and its `present` flag False, to train robustness to a missing input.
        only: "image" or "audio": the other input is absent in every split (single-modality baselines); None: both.
        generate: Generate images, tones and pairs when missing; if False, missing files are an error.
        image: Options of `ShapesDataModule` (img_size, *_per_class, seed, size_range, noise, transforms).
        audio: Options of `DTMFDataModule` (*_per_class, data_seed, gen_snr_db, features, num_mel_bins,
            target_length, mean, std, augmentation).
        cache_audio: Keep each tone's features in memory after its first read (a tone recurs in many pairs);
            refused together with random audio augmentation, whose draws it would freeze.
        batch_size: Pairs per batch (per process under DDP).
        num_workers: Loader worker processes.
        pin_memory: Pin host memory.
        persistent_workers: Keep workers alive between epochs (only when `num_workers > 0`).
        drop_last: Drop the last incomplete training batch.

    Raises:
        ValueError: `num_classes` out of range, pair counts that do not fill the cells equally, `drop_modality`
            outside [0, 1] or together with `only`, an unknown `only`, or inner options this module sets itself.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        num_classes: int = 10,
        pairs: Mapping[str, int] | None = None,
        pair_seed: int = 0,
        drop_modality: float = 0.0,
        only: str | None = None,
        generate: bool = True,
        image: Mapping[str, Any] | None = None,
        audio: Mapping[str, Any] | None = None,
        cache_audio: bool = True,
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        drop_last: bool = True,
    ) -> None:
        if not 2 <= num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be 2 to {MAX_CLASSES} (shapes and digit keys), got {num_classes}")
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers,
            drop_last=drop_last,
            num_classes=num_classes,
        )
        pairs = dict(DEFAULT_PAIRS if pairs is None else pairs)
        if sorted(pairs) != sorted(SPLITS):
            raise ValueError(f"pairs must give each of {list(SPLITS)} a count, got {pairs}")
        self.pair_counts = check_pair_counts({f"pairs.{s}": pairs[s] for s in SPLITS}, num_classes)
        if only not in (None, *MODALITIES):
            raise ValueError(f"only must be null, 'image' or 'audio', got {only!r}")
        if not 0 <= drop_modality <= 1:
            raise ValueError(f"drop_modality must lie in [0, 1], got {drop_modality}")
        if only is not None and drop_modality > 0:
            raise ValueError(
                f"drop_modality={drop_modality} drops one of two inputs, but only={only!r} keeps one; "
                "set data.drop_modality=0 for a single-modality run"
            )
        random = {k: v for k, v in (audio or {}).items() if k in _RANDOM_AUDIO and v not in (None, 0, 0.0)}
        if cache_audio and random:
            raise ValueError(
                f"data.cache_audio=true would freeze the random audio augmentation {sorted(random)}; "
                "set data.cache_audio=false"
            )
        self.cache_audio = cache_audio
        self.pair_seed = pair_seed
        self.drop_modality = float(drop_modality)
        self.only = only
        self.generate = generate
        self.base = Path(root).expanduser() / "shape_tone"
        inner = dict(generate=generate, batch_size=1, num_workers=0)
        self.shapes = ShapesDataModule(self.base, **inner, **_inner_options("image", image))
        self.tones = DTMFDataModule(self.base, features_on="loader", **inner, **_inner_options("audio", audio))
        self.shape_names = list(SHAPE_CLASSES[:num_classes])
        self.key_names = [str(k) for k in range(num_classes)]
        self.pair_dir = self.base / "pairs"
        self.save_hyperparameters(logger=False)

    def _files(self, split: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """(path relative to `base`, class) of every image and every tone of `split`, in the inner datasets' order."""
        for dm in (self.shapes, self.tones):
            dm.setup()
        images, tones = getattr(self.shapes, f"{split}_set"), getattr(self.tones, f"{split}_set")
        if split == "test" and (images is self.shapes.val_set or tones is self.tones.val_set):
            raise ValueError("the fusion demo needs test images and tones: set image and audio test_per_class >= 1")
        base = self.base.resolve()

        def rel(path: str | Path) -> str:
            return Path(path).resolve().relative_to(base).as_posix()

        image_files = [(rel(path), target) for path, target in (images.dataset.samples[i] for i in images.indices)]
        return image_files, [(rel(clip.path), clip.label) for clip in tones.clips]

    @staticmethod
    def _by_class(files: list[tuple[str, int]], classes: Sequence[str], wanted: Sequence[str]) -> list[list[str]]:
        """The files of each class in `wanted` (files carry indices into `classes`); other classes are left out."""
        pools: list[list[str]] = [[] for _ in wanted]
        for path, label in files:
            if classes[label] in wanted:
                pools[wanted.index(classes[label])].append(path)
        return pools

    def _pools(self) -> dict[str, tuple[list[list[str]], list[list[str]]]]:
        """Per split: the image files of each shape and the tone files of each key."""
        pools = {}
        for split in SPLITS:
            image_files, tone_files = self._files(split)
            pools[split] = (
                self._by_class(image_files, self.shapes.classes, self.shape_names),
                self._by_class(tone_files, self.tones.classes, self.key_names),
            )
        return pools

    def _ensure_pairs(self) -> None:
        if self.generate:
            source = f"shapes={sorted(self.shapes.gen_kwargs.items())} dtmf={sorted(self.tones.gen_kwargs.items())}"
            make_pairs(
                self.pair_dir,
                self._pools(),
                counts={split: self.pair_counts[f"pairs.{split}"] for split in SPLITS},
                seed=self.pair_seed,
                shape_names=self.shape_names,
                key_names=self.key_names,
                source=source,
            )
        elif not self.pair_dir.is_dir():
            raise FileNotFoundError(f"fusion demo pairs not found at {self.pair_dir}; pass data.generate=true")

    def prepare_data(self) -> None:
        """Generate images, tones and pair lists when missing (write-once, process-safe)."""
        self._ensure_pairs()

    def _dataset(self, split: str, pairs: list[Pair]) -> ShapeToneDataset:
        image_files, tone_files = self._files(split)
        image_index = {path: i for i, (path, _) in enumerate(image_files)}
        tone_index = {path: i for i, (path, _) in enumerate(tone_files)}
        rows = []
        for pair in pairs:
            if pair.image not in image_index or pair.audio not in tone_index:
                missing = pair.image if pair.image not in image_index else pair.audio
                raise ValueError(
                    f"{self.pair_dir / f'pairs_{split}.csv'} names {missing}, which is not in the {split} split; "
                    f"delete {self.pair_dir} to draw the pairs again"
                )
            rows.append((image_index[pair.image], tone_index[pair.audio], pair.label))
        drop = self.drop_modality if split == "train" else 0.0
        images, tones = getattr(self.shapes, f"{split}_set"), getattr(self.tones, f"{split}_set")
        return ShapeToneDataset(images, tones, rows, drop_modality=drop, only=self.only, cache_audio=self.cache_audio)

    def _load(self) -> tuple[Dataset, Dataset, Dataset, list[str]]:
        self._ensure_pairs()
        sets = {
            split: self._dataset(
                split, read_pairs(self.pair_dir / f"pairs_{split}.csv", self.shape_names, self.key_names)
            )
            for split in SPLITS
        }
        return sets["train"], sets["val"], sets["test"], [str(i) for i in range(self.num_classes)]
