"""Inference recipes: a trained model first, then what it reads; one function per use, for every family.

    import mmattn

    model = mmattn.load("outputs/vision_demo/runs/<run>/checkpoints/last.ckpt")
    mmattn.classify(model, ["cat.png", "dog.jpg"], top_k=3)
    mmattn.classify("outputs/vision_demo/runs/<run>/checkpoints/last.ckpt", ["cat.png"])  # loads it first

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

from mmattn.lit.classification import ClassificationModule, top_classes
from mmattn.lit.language_model import LanguageModelModule, sample_texts
from mmattn.lit.seq2seq import Seq2SeqModule, pad_ids

__all__ = ["classify", "generate", "transcribe", "translate"]

# Each family as messages name it, and the recipes that take it.
_FAMILIES: dict[type, tuple[str, str]] = {
    ClassificationModule: ("a classifier", "mmattn.classify"),
    Seq2SeqModule: ("a sequence-to-sequence model", "mmattn.translate (text) or mmattn.transcribe (files)"),
    LanguageModelModule: ("a language model", "mmattn.generate"),
}


def _family(model: Any, recipe: str, family: type) -> Any:
    """`model`, loaded first when it is a path or repo id; one line naming the right recipe for another family."""
    if isinstance(model, (str, Path)):
        from mmattn.checkpoint import load

        model = load(model)
    if isinstance(model, family):
        return model
    wanted = f"{_FAMILIES[family][0]} ({family.__name__})"
    other = next((use for kind, (_, use) in _FAMILIES.items() if isinstance(model, kind)), None)
    instead = f"use {other}" if other else "give a module from mmattn.load, a checkpoint file or a saved folder"
    raise ValueError(f"{recipe} needs {wanted}; got a {type(model).__name__}: {instead}")


def _listed(items: Any, recipe: str, what: str) -> list[Any]:
    """`items` as a list; one line for a single string, which would otherwise be taken a character at a time."""
    if isinstance(items, (str, Path)):
        raise ValueError(f"{recipe} takes a list of {what}; got the single string {str(items)!r}: wrap it in a list")
    return list(items)


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
        paths = [str(p) for p in _listed(inputs, "classify", "files")]
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
    model.require_text_source()
    tokenizer = model.require_tokenizer()

    def encode(chunk: list[str]) -> torch.Tensor:
        return pad_ids([torch.tensor(ids) for ids in tokenizer.encode_src_batch(chunk)], tokenizer.pad_id)

    return _decode(model, _listed(lines, "translate", "lines"), encode, batch_size)


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
    reader = model.source_reader()
    model.require_tokenizer()

    def read(chunk: list[str]) -> Any:
        return reader.collate([reader.read_file(p) for p in chunk])

    return _decode(model, [str(p) for p in _listed(paths, "transcribe", "files")], read, batch_size)


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
    prompts = _listed(prompts, "generate", "prompts")
    # The module samples the same way when it scores its samples in validation and in predict_step.
    return sample_texts(model, prompts, num_samples=num_samples, seed=seed, use_cache=use_cache, **overrides)
