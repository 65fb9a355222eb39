"""The inference recipes (`mmattn.inference`, exported as mmattn.classify, translate, transcribe, generate, embed and
retrieve): on the tiny trained runs, from a loaded module or from a path, and the one-line errors on the way."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmattn_towers import identity_dual_encoder

import mmattn
from mmattn import inference
from mmattn.lit import ContrastiveModule, LanguageModelModule
from mmattn.models import DecoderOnly


def _ckpt(trained_run, family: str) -> Path:
    return trained_run(family) / "checkpoints" / "last.ckpt"


def test_the_package_exports_the_recipes_lazily() -> None:
    # `import mmattn` (every command starts with it) loads neither torch nor Lightning; the recipes do, when used.
    code = "import sys, mmattn; print([m for m in ('torch', 'lightning') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    for name in inference.__all__:
        assert getattr(mmattn, name) is getattr(inference, name) and name in mmattn.__all__ and name in dir(mmattn)
        # A submodule of the same name would replace the function on the package once something imported it.
        assert importlib.util.find_spec(f"mmattn.{name}") is None, f"mmattn/{name}.py would shadow mmattn.{name}"
    with pytest.raises(AttributeError, match="module 'mmattn' has no attribute 'classifyy'"):
        mmattn.classifyy  # noqa: B018


def test_every_recipe_takes_a_path_as_well_as_a_loaded_model(trained_run, data_dir: Path) -> None:
    vision = _ckpt(trained_run, "vision")
    images = sorted((data_dir / "shapes" / "val").rglob("*.png"))[:2]
    classes = mmattn.classify(str(vision), images, top_k=2)
    assert len(classes) == 2 and classes == mmattn.classify(mmattn.load(vision), images, top_k=2)

    translation = _ckpt(trained_run, "translation")
    lines = ["jump twice", "walk left"]
    translated = mmattn.translate(str(translation), lines)
    assert len(translated) == 2 and translated == mmattn.translate(mmattn.load(translation), lines)
    assert mmattn.translate(str(translation), []) == []

    speech = _ckpt(trained_run, "speech")  # its training writes the clips
    clips = sorted((data_dir / "spoken_digits" / "test").glob("*.flac"))[:3]
    texts = mmattn.transcribe(str(speech), clips, batch_size=2)
    assert len(texts) == 3 and texts == mmattn.transcribe(mmattn.load(speech), clips, batch_size=2)

    lm = _ckpt(trained_run, "lm")
    samples = mmattn.generate(str(lm), ["jump", ""], num_samples=2, seed=1, max_new_tokens=4)
    assert [len(row) for row in samples] == [2, 2]
    assert samples == mmattn.generate(mmattn.load(lm), ["jump", ""], num_samples=2, seed=1, max_new_tokens=4)


def test_another_family_is_refused_in_one_line_naming_the_recipe_to_use(trained_run) -> None:
    vision = mmattn.load(_ckpt(trained_run, "vision"))
    translation = mmattn.load(_ckpt(trained_run, "translation"))
    lm = _ckpt(trained_run, "lm")
    dual = ContrastiveModule(identity_dual_encoder())
    s2s = "a sequence-to-sequence model (Seq2SeqModule)"
    cases = [
        (
            lambda: mmattn.translate(vision, ["x"]),
            f"translate needs {s2s}; got a ClassificationModule: use mmattn.classify",
        ),
        (
            lambda: mmattn.transcribe(str(lm), ["x.wav"]),
            f"transcribe needs {s2s}; got a LanguageModelModule: use mmattn.generate",
        ),
        (
            lambda: mmattn.generate(translation, ["x"]),
            "generate needs a language model (LanguageModelModule); got a Seq2SeqModule: use mmattn.translate (text) "
            "or mmattn.transcribe (files)",
        ),
        (
            lambda: mmattn.classify(dual, torch.zeros(1, 3)),
            "classify needs a classifier (ClassificationModule); got a ContrastiveModule: use mmattn.embed or "
            "mmattn.retrieve",
        ),
        (
            lambda: mmattn.embed(vision, "image", ["x.png"]),
            "embed needs a dual encoder (ContrastiveModule); got a ClassificationModule: use mmattn.classify",
        ),
        (
            lambda: mmattn.retrieve(str(lm), ["a"], ["b"], query_tower="text", candidate_tower="text"),
            "retrieve needs a dual encoder (ContrastiveModule); got a LanguageModelModule: use mmattn.generate",
        ),
        (
            lambda: mmattn.classify(torch.nn.Linear(3, 2), torch.zeros(1, 3)),
            "classify needs a classifier (ClassificationModule); got a Linear: give a module from mmattn.load, a "
            "checkpoint file or a saved folder",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as caught:
            call()
        assert str(caught.value) == message
    # Within the family, the source decides: text is translated, files are transcribed.
    with pytest.raises(
        ValueError, match=r"^this model's source is text, which is not read from files; .*mmattn\.translate$"
    ):
        mmattn.transcribe(translation, ["x.wav"])


def test_inputs_the_recipes_cannot_take_are_one_line(trained_run) -> None:
    translation = mmattn.load(_ckpt(trained_run, "translation"))
    with pytest.raises(ValueError, match=r"^translate takes a list of lines; got the single string 'jump twice': wrap"):
        mmattn.translate(translation, "jump twice")
    with pytest.raises(ValueError, match=r"^classify takes a list of files or a batch; got the single string 'a.png'"):
        mmattn.classify(_ckpt(trained_run, "vision"), "a.png")
    bare_lm = LanguageModelModule(DecoderOnly(vocab_size=20, dim=16, depth=1, num_heads=2, context_length=8))
    with pytest.raises(ValueError, match=r"^no tokenizer: load a checkpoint written by mmattn-train"):
        mmattn.generate(bare_lm, ["x"])
    # A dual encoder built in Python records no data config: its text tower cannot encode texts.
    dual = ContrastiveModule(identity_dual_encoder())
    with pytest.raises(ValueError, match=r"records no data config, so it cannot encode texts"):
        mmattn.embed(dual, "ids", ["three seven"])
    with pytest.raises(ValueError, match=r"^embed takes a list of texts or files, or a batch; got the single string"):
        mmattn.embed(dual, "ids", "three seven")


def test_retrieve_returns_the_best_candidates_and_refuses_an_empty_set() -> None:
    module = ContrastiveModule(identity_dual_encoder())
    queries = torch.tensor([[1.0, 0.1, 0.0], [0.0, 0.0, 1.0]])
    candidates = torch.tensor([[0, 9], [1, 9], [2, 9], [0, 1]])  # features: one-hot of the first id
    hits = mmattn.retrieve(module, queries, candidates, query_tower="vec", candidate_tower="ids", top_k=2)
    # Candidates 0 and 3 embed alike (first id 0): both are query 0's best, in either order.
    assert {h["index"] for h in hits[0]} == {0, 3} and hits[0][0]["score"] == pytest.approx(1 / math.hypot(1, 0.1))
    assert len(hits[1]) == 2 and hits[1][0] == {"index": 2, "score": pytest.approx(1.0)}
    assert mmattn.embed(module, "vec", queries).shape == (2, 3) and module.training  # the mode stays as it was
    for empty in ([], torch.zeros(0, 3)):
        with pytest.raises(ValueError, match=r"^retrieval over an empty candidate set: give at least one candidate$"):
            mmattn.retrieve(module, torch.eye(3), empty, query_tower="vec", candidate_tower="vec")
    with pytest.raises(ValueError, match=r"^top_k must be >= 1, got 0$"):
        mmattn.retrieve(module, queries, candidates, query_tower="vec", candidate_tower="ids", top_k=0)
