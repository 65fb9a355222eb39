"""Scene datamodules: images with captions, for captioning (`SceneCaptionDataModule`) and for image <-> text
contrastive training (`SceneTextDataModule`), over the built-in scenes demo (`mmattn.tasks.scenes.generate`).

Batch formats:

- `SceneCaptionDataModule` (for `mmattn.lit.Seq2SeqModule`): `{"src": float [B, 3, H, W] normalised images,
  "tgt": long [B, T] caption ids, EOS-terminated, padded with `pad_id`, "ref": list of B caption strings}` (`ref` is
  the caption `tgt` encodes).
- `SceneTextDataModule`: `{"image": float [B, 3, H, W], "text": long [B, L] caption ids, EOS-terminated (no BOS),
  padded with `pad_id`, "match": long [B] the canonical scene id (equal ids = identical scene descriptions, so a
  retrieved caption of an identical scene counts as right), "label": long [B] the index in `classes` of the first
  object's shape (the upper or left one of two; -1 for two-object scenes with `pair_label="ignore"`)}`.

Training batches take a random one of each image's stored captions every time it is drawn (torch's RNG, which
`seed_everything(workers=True)` seeds per process and worker); validation and test take the canonical caption.
The tokenizer is a BPE (`mmattn.tasks.text.TextTokenizer`) trained on the training captions, saved in and reused
from `tokenizer_dir`; with the default vocabulary every word of the grammar is one token.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets.folder import IMG_EXTENSIONS

from mmattn.data import GeneratedData, train_loader
from mmattn.tasks.text import encode as text_ids
from mmattn.tasks.text.bpe import PAD_ID
from mmattn.tasks.text.tokenizer import TextTokenizer
from mmattn.tasks.text.tokenizer_dir import TokenizerInRunDir
from mmattn.tasks.vision.data import load_images
from mmattn.tasks.vision.shapes import DEFAULT_NOISE

from .dataset import Item, SceneDataset, collate_captions, collate_scene_text
from .generate import SPLITS, make_scenes, read_captions
from .grammar import COLOURS, SHAPES, SIZES, Scene, SceneObject, canonical_caption

__all__ = ["SceneCaptionDataModule", "SceneDataModule", "SceneTextDataModule"]

log = logging.getLogger(__name__)


class SceneDataModule(GeneratedData, TokenizerInRunDir, L.LightningDataModule):
    """Base of the scene datamodules: the demo generated once under `root/scenes`, a BPE on its training captions,
    image transforms and loaders. Subclasses choose the batch layout (`collate`).

    Args:
        root: Data directory; the dataset lives in `root/scenes`.
        generate: Generate the data when missing; if False, a missing folder is an error.
        img_size: Image side of the generated images and of the model input.
        num_train: Generated training images.
        num_val: Generated validation images.
        num_test: Generated test images.
        pair_fraction: Share of two-object scenes.
        captions_per_image: Captions stored per image (the canonical one and paraphrases).
        noise: Std of the Gaussian pixel noise of the generated images (0-255 scale).
        seed: Seed of the generated data.
        tokenizer_dir: Where the tokenizer is saved (and loaded from, when it exists); normally the run directory.
        vocab_size: BPE vocabulary size, an upper bound (the model's vocabulary follows it).
        random_caption: Train on a random stored caption of each image each time; False always takes the canonical
            one (one target per image: higher BLEU, less language to learn).
        color_jitter: Brightness, contrast and saturation jitter of training images (never hue, flips or crops: they
            would change a colour's name, a left/right relation or an object's size); 0 disables it.
        batch_size: Images per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        pin_memory: Pin host memory.
        drop_last: Drop the last incomplete training batch.

    Raises:
        ValueError: A non-positive `batch_size`, a negative `num_workers` or `color_jitter`.
    """

    tokenizer_class = TextTokenizer
    # The files `load_inputs` reads (what mmattn-predict takes from a folder).
    extensions = IMG_EXTENSIONS

    @staticmethod
    @abstractmethod
    def collate(batch: Sequence[Item]) -> Any:
        """A list of `SceneDataset` items as one batch (the subclass's batch layout)."""

    def __init__(
        self,
        root: str | Path,
        *,
        generate: bool = True,
        img_size: int = 48,
        num_train: int = 16000,
        num_val: int = 500,
        num_test: int = 1000,
        pair_fraction: float = 0.5,
        captions_per_image: int = 6,
        noise: float = DEFAULT_NOISE,
        seed: int = 0,
        tokenizer_dir: str | Path | None = None,
        vocab_size: int = 128,
        random_caption: bool = True,
        color_jitter: float = 0.1,
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool = False,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if color_jitter < 0:
            raise ValueError(f"color_jitter must be >= 0, got {color_jitter}; 0 disables it")
        self.data_root = Path(root).expanduser()
        self.root = self.data_root / "scenes"
        self.generate = generate
        self.img_size = img_size
        self.gen_kwargs = dict(
            counts={"train": num_train, "val": num_val, "test": num_test},
            img_size=img_size,
            pair_fraction=pair_fraction,
            captions_per_image=captions_per_image,
            noise=noise,
            seed=seed,
        )
        self.tokenizer_dir = None if tokenizer_dir is None else Path(tokenizer_dir).expanduser()
        self.vocab_size = int(vocab_size)
        self.random_caption = random_caption
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.pad_id = PAD_ID
        # The eval transform of ShapesDataModule: the whole image, ImageNet normalisation.
        self.eval_transform = create_transform(
            img_size,
            is_training=False,
            crop_pct=1.0,
            interpolation="bilinear",
            mean=IMAGENET_DEFAULT_MEAN,
            std=IMAGENET_DEFAULT_STD,
        )
        jitter = [transforms.ColorJitter(color_jitter, color_jitter, color_jitter)] if color_jitter else []
        self.train_transform = transforms.Compose([*jitter, self.eval_transform])
        self.tokenizer: TextTokenizer | None = None
        self.datasets: dict[str, SceneDataset] = {}
        # Texts given to `encode_texts` that held characters outside the tokenizer (they became <unk>).
        self.unknown_texts = 0

    # ------------------------------------------------------------------------------------------------ setup

    def ensure_data(self) -> None:
        """Generate the scenes when missing (write-once, process-safe)."""
        if self.generate:
            make_scenes(self.data_root, **self.gen_kwargs)
        elif not self.root.is_dir():
            raise FileNotFoundError(f"scenes demo data not found at {self.root}; pass data.generate=true to create it")

    def build_tokenizer(self) -> TextTokenizer:
        """A BPE trained on every stored caption of the training split."""
        texts = [c for r in read_captions(self.root / "train") for c in r["captions"]]
        log.info(f"training a BPE tokenizer (vocab_size {self.vocab_size}) on {len(texts)} training captions")
        return TextTokenizer.train(texts, vocab_size=self.vocab_size, min_frequency=1, lowercase=True)

    def setup(self, stage: str | None = None) -> None:
        """Load (or train) the tokenizer, read every split's captions and encode them once."""
        super().setup(stage)
        if self.datasets:
            return
        records = {split: read_captions(self.root / split) for split in SPLITS}
        for split, found in records.items():
            if not found:
                raise ValueError(f"the {split} split at {self.root / split} holds no images")
        self.setup_tokenizer()
        for split, found in records.items():
            texts = [r["captions"] for r in found]
            flat, _ = self._encode([c for caps in texts for c in caps], f"{split} split")
            ids, start = [], 0
            for caps in texts:
                ids.append(flat[start : start + len(caps)])
                start += len(caps)
            self.datasets[split] = SceneDataset(
                [r["file"] for r in found],
                texts,
                ids,
                [r["scene"].id for r in found],
                [self._label(r["scene"]) for r in found],
                self.train_transform if split == "train" else self.eval_transform,
                random_caption=split == "train" and self.random_caption,
            )

    def _label(self, scene: Scene) -> int:
        return SHAPES.index(scene.objects[0].shape)

    def _encode(self, texts: list[str], where: str) -> tuple[list[list[int]], int]:
        """EOS-terminated ids of `texts` and how many held characters outside the tokenizer (warned about)."""
        if self.tokenizer is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before texts are encoded")
        return text_ids.encode_eos(self.tokenizer, texts, where=where)

    # ------------------------------------------------------------------------------------------- public helpers

    def encode_texts(self, texts: Sequence[str]) -> Tensor:
        """Texts as the model reads captions: long [B, L], EOS-terminated ids padded with `pad_id`.

        Characters outside the tokenizer become `<unk>`; such texts are counted in `unknown_texts` and a warning.

        Raises:
            RuntimeError: Before `setup()`.
            ValueError: `texts` is not a non-empty list of strings.
        """
        if self.tokenizer is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before encode_texts")
        ids, unknown = text_ids.encode_texts(self.tokenizer, texts)
        self.unknown_texts += unknown
        return ids

    def load_inputs(self, paths: Sequence[str | Path]) -> Tensor:
        """Image files as the model sees them in evaluation: float [B, 3, img_size, img_size] (eval transform).

        Images of another size are resized by that transform, with a warning naming them.

        Raises:
            FileNotFoundError: A file does not exist.
            ImageDecodeError: A file is no image PIL can read.
        """
        return load_images(paths, self.eval_transform, self.img_size)

    # ------------------------------------------------------------------------------------------------ loaders

    def _loader(self, split: str) -> DataLoader:
        if not self.datasets:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders are requested")
        dataset = self.datasets[split]
        options = {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.num_workers > 0,
            "collate_fn": type(self).collate,
        }
        if split == "train":
            trainer = getattr(self, "trainer", None)
            return train_loader(dataset, trainer, batch_size=self.batch_size, drop_last=self.drop_last, **options)
        return DataLoader(dataset, batch_size=self.batch_size, **options)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (random captions, colour jitter)."""
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        """Validation batches (canonical captions, eval transform)."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        """Test batches (canonical captions, eval transform)."""
        return self._loader("test")


class SceneCaptionDataModule(SceneDataModule):
    """Image -> caption batches for `mmattn.lit.Seq2SeqModule`: {"src", "tgt", "ref"} (see the module docstring).

    Args:
        root: Data directory; the dataset lives in `root/scenes`.
        **kwargs: Options of `SceneDataModule`.
    """

    collate = staticmethod(collate_captions)


class SceneTextDataModule(SceneDataModule):
    """Image <-> caption batches for contrastive training: {"image", "text", "match", "label"} (see the module
    docstring), plus what zero-shot shape classification needs: `classes`, `prompts`, `prompt_sets`.

    Args:
        root: Data directory; the dataset lives in `root/scenes`.
        prompt_template: The zero-shot prompt of a class, with "{shape}" where the shape's name goes.
        pair_label: The `label` of a two-object scene: "first" (its upper or left object's shape) or "ignore" (-1,
            for `ignore_index=-1`, so zero-shot accuracy counts one-object scenes only: "a star" fits both shapes
            of "a star above a ring" equally well).
        drop_last: Drop the last incomplete training batch (on by default: a short batch has fewer negatives).
        **kwargs: Options of `SceneDataModule`.

    Raises:
        ValueError: `prompt_template` lacks "{shape}", or `pair_label` is unknown.
    """

    collate = staticmethod(collate_scene_text)

    def __init__(
        self,
        root: str | Path,
        *,
        prompt_template: str = "a {shape}",
        pair_label: str = "first",
        drop_last: bool = True,
        **kwargs: Any,
    ) -> None:
        if "{shape}" not in prompt_template:
            raise ValueError(f"prompt_template {prompt_template!r} needs '{{shape}}' where the shape's name goes")
        if pair_label not in ("first", "ignore"):
            raise ValueError(f"pair_label must be 'first' or 'ignore', got {pair_label!r}")
        super().__init__(root, drop_last=drop_last, **kwargs)
        self.prompt_template = prompt_template
        self.pair_label = pair_label
        self.classes = list(SHAPES)
        self.num_classes = len(SHAPES)

    @property
    def prompts(self) -> list[str]:
        """One zero-shot prompt per class, in `classes` order ("a cross", "a ring", ...)."""
        return [self.prompt_template.format(shape=shape) for shape in self.classes]

    @property
    def prompt_sets(self) -> list[list[str]]:
        """Per class, the canonical captions of every one-object scene of that shape (for prompt ensembles)."""
        return [
            [canonical_caption(Scene.of(SceneObject(shape, colour, size))) for colour in COLOURS for size in SIZES]
            for shape in self.classes
        ]

    def _label(self, scene: Scene) -> int:
        return -1 if len(scene.objects) == 2 and self.pair_label == "ignore" else super()._label(scene)
