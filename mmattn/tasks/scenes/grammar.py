"""The scenes' world and language: objects (shape, colour, size), scenes of one or two objects in a spatial relation,
a small caption grammar with paraphrases, and its parser.

A scene is kept in one canonical form, so that two descriptions of the same picture compare equal: the relation is
"above" or "left of" and the first object is the upper (or left) one. "a small blue ring below a large red star"
and "there is a big red star on top of a little blue ring" both parse to
`Scene((large red star, small blue ring), "above")`.

Grammar (every caption is lowercase, words separated by one space)::

    caption  := object | "there is" object | "a picture of" object
              | object relation object | "there is" object relation object
    object   := "a" size colour shape
    size     := small | little | large | big
    relation := above | on top of | over | below | under | beneath | left of | to the left of | right of
              | to the right of
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

__all__ = [
    "COLOURS",
    "NUM_SCENES",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "Scene",
    "SceneObject",
    "all_captions",
    "canonical_caption",
    "parse_caption",
    "sample_captions",
]

# Five outlines of the shapes demo that stay apart at ~10 px (a small object at 48 px): the disk and crescent are
# blobs a few pixels wide that look like the star there. Sorted: the order of zero-shot labels.
SHAPES: tuple[str, ...] = ("cross", "ring", "square", "star", "triangle")
COLOURS: tuple[str, ...] = ("blue", "green", "red", "white", "yellow")
SIZES: tuple[str, ...] = ("small", "large")
# The canonical relations; "below" and "right of" are written by swapping the objects.
RELATIONS: tuple[str, ...] = ("above", "left of")

_SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
# Surface phrases of each direction; the first one is the canonical wording.
_PHRASES = {
    "above": ("above", "on top of", "over"),
    "below": ("below", "under", "beneath"),
    "left of": ("left of", "to the left of"),
    "right of": ("right of", "to the right of"),
}
_INVERSE = {"above": "below", "left of": "right of"}
_SINGLE_TEMPLATES = ("{a}", "there is {a}", "a picture of {a}")
_PAIR_TEMPLATES = ("{a} {rel} {b}", "there is {a} {rel} {b}")

_NUM_OBJECTS = len(SHAPES) * len(COLOURS) * len(SIZES)
# One id per canonical scene: the single objects, then ordered pairs per relation.
NUM_SCENES = _NUM_OBJECTS + len(RELATIONS) * _NUM_OBJECTS**2


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene."""

    shape: str
    colour: str
    size: str

    def __post_init__(self) -> None:
        for field, allowed in (("shape", SHAPES), ("colour", COLOURS), ("size", SIZES)):
            value = getattr(self, field)
            if value not in allowed:
                raise ValueError(f"unknown {field} {value!r}; choose one of {list(allowed)}")

    @property
    def index(self) -> int:
        """Position of this object among all `len(SHAPES) * len(COLOURS) * len(SIZES)` objects."""
        return (SHAPES.index(self.shape) * len(COLOURS) + COLOURS.index(self.colour)) * len(SIZES) + SIZES.index(
            self.size
        )

    def phrase(self, size_word: str | None = None) -> str:
        """The noun phrase "a <size> <colour> <shape>", with `size_word` as the size when given."""
        return f"a {size_word or self.size} {self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """One or two objects; two are in `relation` ("above" or "left of"), the first being the upper (or left) one.

    Build scenes with `Scene.of`, which also takes "below" and "right of" and puts the objects in canonical order.
    """

    objects: tuple[SceneObject, ...]
    relation: str | None = None

    def __post_init__(self) -> None:
        if len(self.objects) == 1 and self.relation is not None:
            raise ValueError(f"a one-object scene has no relation, got {self.relation!r}")
        if len(self.objects) == 2 and self.relation not in RELATIONS:
            raise ValueError(
                f"relation {self.relation!r} is not canonical; choose one of {list(RELATIONS)} or build with Scene.of"
            )
        if len(self.objects) not in (1, 2):
            raise ValueError(f"a scene holds one or two objects, got {len(self.objects)}")

    @classmethod
    def of(cls, first: SceneObject, relation: str | None = None, second: SceneObject | None = None) -> Scene:
        """The canonical scene "first relation second" (relation any of above/below/left of/right of), or `first`
        alone."""
        if relation is None and second is None:
            return cls((first,))
        if relation is None or second is None:
            raise ValueError("a two-object scene needs both a relation and a second object")
        if relation in RELATIONS:
            return cls((first, second), relation)
        for canonical, inverse in _INVERSE.items():
            if relation == inverse:
                return cls((second, first), canonical)
        raise ValueError(f"unknown relation {relation!r}; choose one of {list(_PHRASES)}")

    @property
    def id(self) -> int:
        """An id in `range(NUM_SCENES)`, equal for equal scenes (what retrieval counts as the same scene)."""
        if len(self.objects) == 1:
            return self.objects[0].index
        first, second = (o.index for o in self.objects)
        return _NUM_OBJECTS + (RELATIONS.index(self.relation) * _NUM_OBJECTS + first) * _NUM_OBJECTS + second

    def to_dict(self) -> dict[str, Any]:
        """The scene as plain JSON values: {"objects": [{"shape", "colour", "size"}, ...], "relation"}."""
        objects = [{"shape": o.shape, "colour": o.colour, "size": o.size} for o in self.objects]
        return {"objects": objects, "relation": self.relation}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scene:
        """Rebuild a scene from `to_dict` output (any relation wording `Scene.of` takes).

        Raises:
            ValueError: A field is missing or holds an unknown value.
        """
        try:
            objects = [SceneObject(o["shape"], o["colour"], o["size"]) for o in d["objects"]]
            if len(objects) == 2:
                return cls.of(objects[0], d.get("relation"), objects[1])
            return cls(tuple(objects), d.get("relation"))
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a scene description: {dict(d)!r} ({type(e).__name__}: {e})") from e


def canonical_caption(scene: Scene) -> str:
    """The one plain caption of a scene: "a large red star above a small blue ring"."""
    if len(scene.objects) == 1:
        return scene.objects[0].phrase()
    first, second = scene.objects
    return f"{first.phrase()} {scene.relation} {second.phrase()}"


def all_captions(scene: Scene) -> list[str]:
    """Every caption the grammar has for `scene`, the canonical one first, without duplicates."""
    out = {canonical_caption(scene): None}
    if len(scene.objects) == 1:
        (obj,) = scene.objects
        for template, size in product(_SINGLE_TEMPLATES, _SIZE_WORDS[obj.size]):
            out[template.format(a=obj.phrase(size))] = None
        return list(out)
    first, second = scene.objects
    orders = ((first, scene.relation, second), (second, _INVERSE[scene.relation], first))
    for (a, direction, b), template in product(orders, _PAIR_TEMPLATES):
        for phrase, size_a, size_b in product(_PHRASES[direction], _SIZE_WORDS[a.size], _SIZE_WORDS[b.size]):
            out[template.format(a=a.phrase(size_a), rel=phrase, b=b.phrase(size_b))] = None
    return list(out)


def sample_captions(scene: Scene, rng: np.random.Generator, k: int) -> list[str]:
    """The canonical caption and `k - 1` other paraphrases drawn without replacement (fewer if the scene has fewer)."""
    captions = all_captions(scene)
    others = rng.permutation(len(captions) - 1)[: max(k - 1, 0)] + 1
    return [captions[0], *(captions[i] for i in others)]


def _alternation(words: Sequence[str]) -> str:
    # Longest first, so "to the left of" is tried before "left of".
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_SIZE_OF = {word: size for size, words in _SIZE_WORDS.items() for word in words}
_DIRECTION_OF = {phrase: direction for direction, phrases in _PHRASES.items() for phrase in phrases}
_OBJECT = rf"a ({_alternation(list(_SIZE_OF))}) ({_alternation(COLOURS)}) ({_alternation(SHAPES)})"
_CAPTION = re.compile(rf"(?:there is |a picture of )?{_OBJECT}(?: ({_alternation(list(_DIRECTION_OF))}) {_OBJECT})?")


def parse_caption(text: str) -> Scene | None:
    """The canonical scene a caption describes, or None when `text` is not a caption of the grammar.

    Case, surrounding whitespace, runs of spaces and a final full stop are forgiven. "a picture of" takes one object
    only, as the grammar says.
    """
    if not isinstance(text, str):
        return None
    normal = " ".join(text.lower().split()).removesuffix(".").rstrip()
    match = _CAPTION.fullmatch(normal)
    if match is None:
        return None
    size, colour, shape, phrase, size2, colour2, shape2 = match.groups()
    first = SceneObject(shape, colour, _SIZE_OF[size])
    if phrase is None:
        return Scene.of(first)
    if normal.startswith("a picture of "):
        return None
    return Scene.of(first, _DIRECTION_OF[phrase], SceneObject(shape2, colour2, _SIZE_OF[size2]))
