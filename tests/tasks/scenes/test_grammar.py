"""The scenes' caption grammar: every paraphrase parses back to its scene, one canonical form per scene, garbage is
rejected."""

from __future__ import annotations

import numpy as np
import pytest

from mmattn.tasks.scenes import (
    COLOURS,
    NUM_SCENES,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    all_captions,
    canonical_caption,
    parse_caption,
    sample_captions,
    sample_scene,
)

STAR = SceneObject("star", "red", "large")
RING = SceneObject("ring", "blue", "small")


def test_every_paraphrase_of_every_sampled_scene_parses_back_to_it() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        scene = sample_scene(rng)
        captions = all_captions(scene)
        assert captions[0] == canonical_caption(scene)
        assert len(captions) == len(set(captions))
        for caption in captions:
            assert parse_caption(caption) == scene, caption


def test_paraphrase_counts_cover_every_form() -> None:
    # One object: 3 templates x 2 size words. Two: both orders x 2 templates x the direction's phrases x 2 x 2 sizes.
    assert len(all_captions(Scene.of(RING))) == 6
    assert len(all_captions(Scene.of(STAR, "above", RING))) == 2 * 2 * 3 * 4
    assert len(all_captions(Scene.of(STAR, "left of", RING))) == 2 * 2 * 2 * 4
    forms = all_captions(Scene.of(STAR, "above", RING))
    for expected in (
        "a large red star above a small blue ring",
        "a small blue ring below a large red star",
        "a big red star on top of a little blue ring",
        "there is a little blue ring beneath a big red star",
        "a small blue ring under a large red star",
        "there is a large red star over a small blue ring",
    ):
        assert expected in forms


def test_inverse_relations_give_the_same_scene() -> None:
    above = parse_caption("a large red star above a small blue ring")
    assert above == parse_caption("a small blue ring below a large red star")
    assert above == parse_caption("there is a big red star on top of a little blue ring")
    assert above == Scene((STAR, RING), "above") and above.id == Scene.of(RING, "below", STAR).id
    left = parse_caption("a small blue ring to the right of a large red star")
    assert left == Scene((STAR, RING), "left of") == parse_caption("a big red star left of a small blue ring")
    assert left != above
    assert parse_caption("a small blue ring above a large red star") != above


def test_single_object_forms() -> None:
    scene = Scene.of(SceneObject("triangle", "green", "small"))
    for text in ("a small green triangle", "there is a small green triangle", "a picture of a little green triangle"):
        assert parse_caption(text) == scene
    # Case, spacing and a final full stop are forgiven.
    assert parse_caption("  There is a  Little green triangle. ") == scene


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a star",
        "a red star",
        "a small star",
        "a small purple star",
        "a small red circle",
        "a small red star above",
        "a small red star above a",
        "a small red star next to a big blue ring",
        "a picture of a small red star above a big blue ring",
        "there is a small red star there is a big blue ring",
        "small red star",
        "a small red star and a big blue ring",
        "a small red star above a big blue ring above a small green cross",
        "a purple ✨ star",
        "a small red star a small red star",
    ],
)
def test_garbage_is_rejected(text: str) -> None:
    assert parse_caption(text) is None


def test_non_strings_are_rejected() -> None:
    assert parse_caption(None) is None  # type: ignore[arg-type]
    assert parse_caption(3) is None  # type: ignore[arg-type]


def test_scene_ids_are_one_per_canonical_scene() -> None:
    objects = [SceneObject(s, c, z) for s in SHAPES for c in COLOURS for z in SIZES]
    singles = {Scene.of(o).id for o in objects}
    pairs = {Scene.of(a, r, b).id for a in objects for b in objects for r in ("above", "left of")}
    assert len(singles) + len(pairs) == NUM_SCENES == len(singles | pairs)
    assert singles | pairs == set(range(NUM_SCENES))


def test_scene_dict_round_trip_and_checks() -> None:
    for scene in (Scene.of(RING), Scene.of(STAR, "right of", RING)):
        assert Scene.from_dict(scene.to_dict()) == scene
    assert Scene.of(STAR, "right of", RING).to_dict()["relation"] == "left of"
    with pytest.raises(ValueError, match="unknown colour 'purple'"):
        SceneObject("star", "purple", "large")
    with pytest.raises(ValueError, match="not canonical"):
        Scene((STAR, RING), "below")
    with pytest.raises(ValueError, match="not a scene description"):
        Scene.from_dict({"objects": [{"shape": "star"}]})
    with pytest.raises(ValueError, match="unknown relation"):
        Scene.of(STAR, "near", RING)


def test_sampled_captions_start_with_the_canonical_one() -> None:
    scene = Scene.of(STAR, "above", RING)
    captions = sample_captions(scene, np.random.default_rng(1), 6)
    assert captions[0] == canonical_caption(scene) and len(set(captions)) == 6
    assert set(captions) <= set(all_captions(scene))
    assert len(sample_captions(Scene.of(RING), np.random.default_rng(1), 10)) == 6
