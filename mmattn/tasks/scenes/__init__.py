"""Scenes adapter: procedurally drawn scenes of one or two coloured shapes with paraphrased captions, the caption
grammar and its parser, attribute accuracy, and datamodules for captioning and image <-> text contrastive training."""

from .datamodules import SceneCaptionDataModule, SceneDataModule, SceneTextDataModule
from .dataset import SceneDataset, collate_captions, collate_scene_text
from .generate import make_scenes, read_captions, render_scene, sample_scene
from .grammar import (
    COLOURS,
    NUM_SCENES,
    RELATIONS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    all_captions,
    canonical_caption,
    parse_caption,
    sample_captions,
)
from .metrics import AttributeAccuracy

__all__ = [
    "AttributeAccuracy",
    "COLOURS",
    "NUM_SCENES",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "Scene",
    "SceneCaptionDataModule",
    "SceneDataModule",
    "SceneDataset",
    "SceneObject",
    "SceneTextDataModule",
    "all_captions",
    "canonical_caption",
    "collate_captions",
    "collate_scene_text",
    "make_scenes",
    "parse_caption",
    "read_captions",
    "render_scene",
    "sample_captions",
    "sample_scene",
]
