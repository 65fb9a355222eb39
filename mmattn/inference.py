"""Inference recipes: a trained model first, then what it reads; one function per use, for every family.

    import mmattn

    model = mmattn.load("outputs/train/runs/<run>/checkpoints/last.ckpt")
    mmattn.classify(model, ["cat.png", "dog.jpg"], top_k=3)
    mmattn.classify("outputs/train/runs/<run>/checkpoints/last.ckpt", ["cat.png"])  # loads it first

`model` is a module from `mmattn.load`, or anything `mmattn.load` takes (a checkpoint file, a folder written by
`save_pretrained`, a Hub repo id), loaded on the CPU with the default trust; call `mmattn.load` yourself for other
options, and to load once for many calls. Each recipe checks the model's family first and names the one to use
instead. The recipes run in eval mode without gradients and leave the module in the mode they found it in.

The modules keep what training, validation and `mmattn-predict` need (decoding, sampling, readers); the recipes here
put them together, so `mmattn.lit` never imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from mmattn.checkpoint import load
from mmattn.lit.classification import ClassificationModule, top_classes
from mmattn.lit.contrastive import ContrastiveModule
from mmattn.lit.contrastive_inputs import tower_reader
from mmattn.lit.language_model import LanguageModelModule, sample_texts
from mmattn.lit.retrieval import top_k as nearest
from mmattn.lit.seq2seq import Seq2SeqModule, pad_ids

__all__ = ["classify", "embed", "generate", "retrieve", "transcribe", "translate"]

# Each family as messages name it, and the recipes that take it.
_FAMILIES: dict[type, tuple[str, str]] = {
    ClassificationModule: ("a classifier", "mmattn.classify"),
    Seq2SeqModule: ("a sequence-to-sequence model", "mmattn.translate (text) or mmattn.transcribe (files)"),
    LanguageModelModule: ("a language model", "mmattn.generate"),
    ContrastiveModule: ("a dual encoder", "mmattn.embed or mmattn.retrieve"),
}


def _family(model: Any, recipe: str, family: type) -> Any:
    """`model`, loaded first when it is a path or repo id; one line naming the right recipe for another family."""
    if isinstance(model, (str, Path)):
        model = load(model)
    if isinstance(model, family):
        return model
    wanted = f"{_FAMILIES[family][0]} ({family.__name__})"
    other = next((use for kind, (_, use) in _FAMILIES.items() if isinstance(model, kind)), None)
    instead = f"use {other}" if other else "give a module from mmattn.load, a checkpoint file or a saved folder"
    raise ValueError(f"{recipe} needs {wanted}; got a {type(model).__name__}: {instead}")


def _refuse_one_string(items: Any, recipe: str, what: str) -> None:
    """One line for a single string where a list is meant: it would be read a character at a time."""
    if isinstance(items, (str, Path)):
        raise ValueError(f"{recipe} takes {what}; got the single string {str(items)!r}: wrap it in a list")


@contextmanager
def _evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode without gradients, then the module's own mode again (a recipe may run in the middle of training)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def classify(
    model: Any, inputs: torch.Tensor | Sequence[str | Path], *, top_k: int = 5, batch_size: int = 64
) -> list[dict[str, Any]]:
    """The `top_k` classes of each input with their probabilities, most likely first.

    Args:
        model: A classifier (`ClassificationModule`), or a path `mmattn.load` takes.
        inputs: A batch the network takes (e.g. images [B, 3, H, W]), or files, read as the evaluation data is
            (the eval transform, the audio features) through the recorded data config.
        top_k: Classes per input (at most the number of classes).
        batch_size: Files read and classified at a time.

    Returns:
        One `{"labels": [...], "probs": [...], "ids": [...]}` per input, in input order (labels are the class
        names, or the ids as strings when none were recorded).

    Raises:
        ValueError: Another family of model, files without a recorded data config, or a `top_k` below 1.
    """
    model = _family(model, "classify", ClassificationModule)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if isinstance(inputs, torch.Tensor):
        batches: Iterator[torch.Tensor] = iter([inputs])
    else:
        _refuse_one_string(inputs, "classify", "a list of files or a batch")
        paths = [str(p) for p in inputs]
        batches = (model.read_files(paths[i : i + batch_size]) for i in range(0, len(paths), batch_size))
    with _evaluating(model):
        return [row for batch in batches for row in top_classes(model(batch.to(model.device)), top_k, model.classes)]


def _decode(model: Seq2SeqModule, items: list[Any], to_batch: Callable[[list[Any]], Any], batch_size: int) -> list[str]:
    """Texts the model decodes (its configured decoding) from `items`, `batch_size` at a time through `to_batch`."""
    out: list[str] = []
    with _evaluating(model):
        for start in range(0, len(items), batch_size):
            src = move_data_to_device(to_batch(items[start : start + batch_size]), model.device)
            out += model.tokenizer.decode_tgt_batch(model.generate(src).tolist())
    return out


def translate(model: Any, lines: Sequence[str], *, batch_size: int = 64) -> list[str]:
    """Translations of plain-text lines with the model's decoding; one output line per input line, in order.

    Args:
        model: A sequence-to-sequence model whose source is text (`Seq2SeqModule`), or a path `mmattn.load` takes.
        lines: Source texts, one sentence each.
        batch_size: Lines decoded at a time.

    Raises:
        ValueError: Another family of model, a source that is not text (use `transcribe`), or no tokenizer.
    """
    model = _family(model, "translate", Seq2SeqModule)
    _refuse_one_string(lines, "translate", "a list of lines")
    model.require_text_source()
    tokenizer = model.require_tokenizer()

    def encode(chunk: list[str]) -> torch.Tensor:
        return pad_ids([torch.tensor(ids) for ids in tokenizer.encode_src_batch(chunk)], tokenizer.pad_id)

    return _decode(model, list(lines), encode, batch_size)


def transcribe(model: Any, paths: Sequence[str | Path], *, batch_size: int = 16) -> list[str]:
    """The model's text for each file (speech to its transcript, an image to its caption), in order.

    Files are read by the source's own reader (the modality contract: audio at the front end's rate), else by the
    recorded data config (images through the evaluation transform), so nothing here names a modality.

    Args:
        model: A sequence-to-sequence model whose source reads files (`Seq2SeqModule`), or a path `mmattn.load` takes.
        paths: The files.
        batch_size: Files read and decoded at a time.

    Raises:
        ValueError: Another family of model, a text source (use `translate`), or no tokenizer.
    """
    model = _family(model, "transcribe", Seq2SeqModule)
    _refuse_one_string(paths, "transcribe", "a list of files")
    reader = model.source_reader()
    model.require_tokenizer()

    def read(chunk: list[str]) -> Any:
        return reader.collate([reader.read_file(p) for p in chunk])

    return _decode(model, [str(p) for p in paths], read, batch_size)


def generate(
    model: Any,
    prompts: Sequence[str],
    *,
    num_samples: int = 1,
    seed: int | None = None,
    use_cache: bool = True,
    **overrides: Any,
) -> list[list[str]]:
    """`num_samples` continuations of each prompt (text after bos; "" samples from scratch), as full texts.

    Args:
        model: A language model (`LanguageModelModule`), or a path `mmattn.load` takes.
        prompts: Prompt texts.
        num_samples: Samples per prompt.
        seed: Seed of the draws (the same seed gives the same samples); None draws from a fresh random seed.
        use_cache: Sample on the KV cache (False recomputes every prefix; same tokens, slower).
        **overrides: Any of temperature, top_k, top_p, max_new_tokens over the model's `sampling` defaults.

    Returns:
        Per prompt, its samples.

    Raises:
        ValueError: Another family of model, no tokenizer, unknown overrides or out-of-range values.
    """
    model = _family(model, "generate", LanguageModelModule)
    _refuse_one_string(prompts, "generate", "a list of prompts")
    # The module samples the same way when it scores its samples in validation and in predict_step.
    return sample_texts(model, prompts, num_samples=num_samples, seed=seed, use_cache=use_cache, **overrides)


def _is_items(inputs: Any) -> bool:
    """A list of strings or paths (texts or files), as opposed to a batch."""
    return isinstance(inputs, (list, tuple)) and all(isinstance(x, (str, Path)) for x in inputs)


def _embed(model: ContrastiveModule, tower: str, inputs: Any, batch_size: int) -> torch.Tensor:
    """`embed` of a checked model."""
    net = model.net
    net.tower(tower)
    _refuse_one_string(inputs, "embed", "a list of texts or files, or a batch")
    with _evaluating(model):
        if not _is_items(inputs):
            return net.encode(tower, move_data_to_device(inputs, model.device))
        items = [str(x) for x in inputs]
        if not items:
            return torch.zeros(0, net.embed_dim, device=model.device)
        read = tower_reader(model, tower)
        parts = [
            net.encode(tower, move_data_to_device(read(items[i : i + batch_size]), model.device))
            for i in range(0, len(items), batch_size)
        ]
        return torch.cat(parts)


def embed(model: Any, tower: str, inputs: Any, *, batch_size: int = 64) -> torch.Tensor:
    """Normalised embeddings [N, E] of `inputs` by the dual encoder's tower `tower`.

    What a tower takes: a batch its input embedding takes (a tensor, or a mapping for inputs such as waveforms with
    lengths), or a list of strings. Strings are texts for a tower whose embedding holds a vocabulary (it reads token
    ids), encoded by the recorded datamodule's `encode_texts` with the model's tokenizer; for any other tower they are
    file paths, read by the embedding's own file reader or else the recorded data config (the evaluation transform).

    Args:
        model: A dual encoder (`ContrastiveModule`), or a path `mmattn.load` takes.
        tower: The tower that embeds `inputs`.
        inputs: A batch, or texts / file paths.
        batch_size: Strings read and embedded at a time.

    Raises:
        ValueError: Another family of model, no such tower, one string instead of a list, or strings the tower
            cannot read.
    """
    return _embed(_family(model, "embed", ContrastiveModule), tower, inputs, batch_size)


def _count(model: ContrastiveModule, tower: str, inputs: Any) -> int:
    _refuse_one_string(inputs, "retrieve", "a list of texts or files, or a batch")
    if _is_items(inputs):
        return len(inputs)
    return model.net.embedding(tower).batch_size(inputs)


def retrieve(
    model: Any,
    queries: Any,
    candidates: Any,
    *,
    query_tower: str,
    candidate_tower: str,
    top_k: int = 5,
    batch_size: int = 64,
) -> list[list[dict[str, Any]]]:
    """Per query, its `top_k` most similar candidates, best first: `{"index": i, "score": cosine similarity}`, plus
    `"item"` (the candidate's text or path) when the candidates are strings.

    Args:
        model: A dual encoder (`ContrastiveModule`), or a path `mmattn.load` takes.
        queries: What `query_tower` takes (see `embed`).
        candidates: What `candidate_tower` takes.
        query_tower: The tower that embeds the queries.
        candidate_tower: The tower that embeds the candidates.
        top_k: Candidates per query (all of them if fewer).
        batch_size: Strings embedded at a time.

    Raises:
        ValueError: Another family of model, no candidates, `top_k` < 1, or inputs a tower cannot take.
    """
    model = _family(model, "retrieve", ContrastiveModule)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if _count(model, candidate_tower, candidates) == 0:
        raise ValueError("retrieval over an empty candidate set: give at least one candidate")
    found = _embed(model, candidate_tower, candidates, batch_size)
    asked = _embed(model, query_tower, queries, batch_size)
    scores, indices = nearest(asked, found, top_k)
    names = [str(x) for x in candidates] if _is_items(candidates) else None
    return [
        [{"index": j, "score": s} | ({"item": names[j]} if names else {}) for s, j in zip(row_s, row_i)]
        for row_s, row_i in zip(scores.tolist(), indices.tolist())
    ]
