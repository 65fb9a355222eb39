"""Inference with a trained dual encoder (`mmattn.lit.ContrastiveModule`): embed inputs of either tower, retrieve
the best matches of queries among candidates, and what `mmattn-predict` reads.

    model = mmattn.load("outputs/clap_demo/runs/<run>/checkpoints/last.ckpt")
    hits = model.retrieve(["three seven one"], ["a.wav", "b.wav"], query_tower="text", candidate_tower="audio")

What a tower takes: a batch its input embedding takes (a tensor, or a mapping for inputs such as waveforms with
lengths), or a list of strings. Strings are texts for a tower whose embedding holds a vocabulary (it reads token
ids), encoded by the recorded datamodule's `encode_texts` with the module's tokenizer (the checkpoint's, so no data
needs to be present); for any other tower they are file paths, read by the embedding's own file reader or else the
recorded data config's `load_inputs` (the evaluation transform).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor

from mmattn.data.predict import PredictInputs

__all__ = ["embed", "predict_inputs", "retrieve"]


def _is_items(inputs: Any) -> bool:
    """A list of strings or paths (texts or files), as opposed to a batch."""
    return isinstance(inputs, (list, tuple)) and all(isinstance(x, (str, Path)) for x in inputs)


def _text_datamodule(module: Any) -> Any:
    """The recorded datamodule, encoding texts with the module's tokenizer.

    Raises:
        ValueError: No data config, a datamodule without `encode_texts`, or no tokenizer.
    """
    datamodule = module.recorded_datamodule("encode texts")
    if not callable(getattr(datamodule, "encode_texts", None)):
        raise ValueError(f"{type(datamodule).__name__} cannot encode texts (it has no encode_texts)")
    if getattr(datamodule, "tokenizer", None) is None:
        if module.tokenizer is None:
            raise ValueError("no tokenizer to encode texts: load a checkpoint written by mmattn-train (it carries one)")
        # The tokenizer the model was trained with, so encoding needs no setup() (which reads the data).
        datamodule.tokenizer = module.tokenizer
    return datamodule


def _reader(module: Any, tower: str) -> Callable[[list[str]], Any]:
    """Strings of `tower` -> one input batch: texts encoded, or files read (see the module docstring)."""
    embedding = module.net.embedding(tower)
    if embedding.vocab_size is not None:
        return _text_datamodule(module).encode_texts
    reader = module.input_reader(embedding, f"tower {tower!r}")
    return lambda paths: reader.collate([reader.read_file(p) for p in paths])


@torch.no_grad()
def embed(module: Any, tower: str, inputs: Any, *, batch_size: int = 64) -> Tensor:
    """Normalised embeddings [N, E] of `inputs` (a batch, or texts / file paths: see the module docstring) by tower
    `tower`, in eval mode, `batch_size` strings at a time.

    Raises:
        ValueError: No such tower, one string instead of a list, or strings the tower cannot read.
    """
    net = module.net
    net.tower(tower)
    if isinstance(inputs, (str, Path)):
        raise ValueError(f"embed takes a list of texts or files, or a batch; got the single string {str(inputs)!r}")
    was_training = module.training
    module.eval()
    try:
        if not _is_items(inputs):
            return net.encode(tower, move_data_to_device(inputs, module.device))
        items = [str(x) for x in inputs]
        if not items:
            return torch.zeros(0, net.embed_dim, device=module.device)
        read = _reader(module, tower)
        parts = [
            net.encode(tower, move_data_to_device(read(items[i : i + batch_size]), module.device))
            for i in range(0, len(items), batch_size)
        ]
        return torch.cat(parts)
    finally:
        module.train(was_training)


def _count(module: Any, tower: str, inputs: Any) -> int:
    if _is_items(inputs):
        return len(inputs)
    return module.net.embedding(tower).batch_size(inputs)


def retrieve(
    module: Any,
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
        module: A trained `ContrastiveModule`.
        queries: What `query_tower` takes (see the module docstring).
        candidates: What `candidate_tower` takes.
        query_tower: The tower that embeds the queries.
        candidate_tower: The tower that embeds the candidates.
        top_k: Candidates per query (all of them if fewer).
        batch_size: Strings embedded at a time.

    Raises:
        ValueError: No candidates, `top_k` < 1, or inputs a tower cannot take.
    """
    from mmattn.lit.retrieval import top_k as search

    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if _count(module, candidate_tower, candidates) == 0:
        raise ValueError("retrieval over an empty candidate set: give at least one candidate")
    found = embed(module, candidate_tower, candidates, batch_size=batch_size)
    asked = embed(module, query_tower, queries, batch_size=batch_size)
    scores, indices = search(asked, found, top_k)
    names = [str(x) for x in candidates] if _is_items(candidates) else None
    return [
        [{"index": j, "score": s} | ({"item": names[j]} if names else {}) for s, j in zip(row_s, row_i)]
        for row_s, row_i in zip(scores.tolist(), indices.tolist())
    ]


def _line(item: str) -> str:
    return item


def predict_inputs(module: Any, tower: str) -> PredictInputs:
    """What `mmattn-predict` feeds tower `tower`: lines of text for a tower of token ids, else files."""
    embedding = module.net.embedding(tower)
    if embedding.vocab_size is not None:
        return PredictInputs("text", _line, _text_datamodule(module).encode_texts)
    reader = module.input_reader(embedding, f"predicting with tower {tower!r}")
    return PredictInputs("files", reader.read_file, reader.collate, reader.extensions)
