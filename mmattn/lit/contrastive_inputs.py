"""What the towers of a trained dual encoder (`mmattn.lit.ContrastiveModule`) read from strings: for
`mmattn.embed` / `mmattn.retrieve` and for `mmattn-predict`.

Strings are texts for a tower whose embedding holds a vocabulary (it reads token ids), encoded by the recorded
datamodule's `encode_texts` with the module's tokenizer (the checkpoint's, so no data needs to be present); for any
other tower they are file paths, read by the embedding's own file reader or else the recorded data config's
`load_inputs` (the evaluation transform).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmattn.data.predict import PredictInputs

__all__ = ["predict_inputs", "tower_reader"]


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


def tower_reader(module: Any, tower: str) -> Callable[[list[str]], Any]:
    """Strings of `tower` -> one input batch: texts encoded, or files read (see the module docstring).

    Raises:
        ValueError: No such tower, or strings the tower cannot read (no data config, no reader, no tokenizer).
    """
    embedding = module.net.embedding(tower)
    if embedding.vocab_size is not None:
        return _text_datamodule(module).encode_texts
    reader = module.input_reader(embedding, f"tower {tower!r}")
    return lambda paths: reader.collate([reader.read_file(p) for p in paths])


def _line(item: str) -> str:
    return item


def predict_inputs(module: Any, tower: str) -> PredictInputs:
    """What `mmattn-predict` feeds tower `tower`: lines of text for a tower of token ids, else files."""
    embedding = module.net.embedding(tower)
    if embedding.vocab_size is not None:
        return PredictInputs("text", _line, _text_datamodule(module).encode_texts)
    reader = module.input_reader(embedding, f"predicting with tower {tower!r}")
    return PredictInputs("files", reader.read_file, reader.collate, reader.extensions)
