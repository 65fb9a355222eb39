"""The items and batches of the scene datamodules: images with their captions (texts and ids), scene ids, labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmattn.tasks.text.encode import pad_ids
from mmattn.tasks.vision.data import read_image

__all__ = ["Item", "SceneDataset", "collate_captions", "collate_scene_text", "pad_ids"]


# An item: (image [3, H, W], caption ids with EOS, caption text, scene id, shape label).
Item = tuple[Tensor, list[int], str, int, int]


class SceneDataset(Dataset):
    """Images with their captions (text and ids); item i = (image, ids, text, scene id, label), where the caption is
    a random one of image i's captions (`random_caption`) or its first, canonical one."""

    def __init__(
        self,
        files: Sequence[str],
        texts: Sequence[Sequence[str]],
        ids: Sequence[Sequence[list[int]]],
        scene_ids: Sequence[int],
        labels: Sequence[int],
        transform: Callable[[Any], Tensor],
        *,
        random_caption: bool,
    ) -> None:
        self.files, self.texts, self.ids = list(files), list(texts), list(ids)
        self.scene_ids, self.labels = list(scene_ids), list(labels)
        self.transform = transform
        self.random_caption = random_caption

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Item:
        j = int(torch.randint(len(self.texts[i]), ())) if self.random_caption else 0
        image = self.transform(read_image(self.files[i]))
        return image, self.ids[i][j], self.texts[i][j], self.scene_ids[i], self.labels[i]


def collate_captions(batch: Sequence[Item]) -> dict[str, Any]:
    """{"src": images [B, 3, H, W], "tgt": caption ids [B, T], "ref": caption texts}."""
    images = torch.stack([b[0] for b in batch])
    return {"src": images, "tgt": pad_ids([b[1] for b in batch]), "ref": [b[2] for b in batch]}


def collate_scene_text(batch: Sequence[Item]) -> dict[str, Tensor]:
    """{"image": [B, 3, H, W], "text": caption ids [B, L], "match": scene ids [B], "label": shape labels [B]}."""
    return {
        "image": torch.stack([b[0] for b in batch]),
        "text": pad_ids([b[1] for b in batch]),
        "match": torch.tensor([b[3] for b in batch], dtype=torch.long),
        "label": torch.tensor([b[4] for b in batch], dtype=torch.long),
    }
