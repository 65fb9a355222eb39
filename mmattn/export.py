"""Export trained models to ONNX or to a torch.export program, with dynamic batch and sequence axes.

What is exported, by family (each part is a graph of its own, saved as `<part>.onnx` or `<part>.pt2`):

- classifiers: `model` (the network's input, e.g. images [B, 3, H, W] or AST features [B, frames, bins] -> logits);
  audio features are computed outside (`module.read_files(paths)` is the documented reference);
- language models: `model` (ids [B, T] -> logits [B, T, V]);
- seq2seq (translation, speech): `encoder` (source -> memory [B, S, D] and its padding mask [B, S]) and
  `decoder_step` (one token per row, the memory, and the self-attention keys/values of the tokens so far ->
  next-token logits and the keys/values including this token). Driving the step in a loop is greedy decoding
  (`greedy_decode_exported`), the same tokens as `Seq2SeqModule.generate` with beam size 1.

`export_module` checks every part against PyTorch on random inputs of two batch sizes (and two lengths where the
length is dynamic) with onnxruntime or the exported program, and writes `export.json` describing the parts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = ["ExportError", "export_module", "greedy_decode_exported"]

Format = Literal["onnx", "torch_export"]
FORMATS = ("onnx", "torch_export")
SUFFIX = {"onnx": ".onnx", "torch_export": ".pt2"}


class ExportError(ValueError):
    """A part of the model could not be exported; the message names the part and the exporter's reason."""


class _PastKV:
    """Keys/values of the tokens decoded so far, given as tensors and grown by concatenation (export-friendly).

    Quacks like `mmattn.nn.KVCache` for the calls a decoder's self-attention makes (`size`, `update`, `cached`).
    """

    def __init__(self, k: Tensor, v: Tensor) -> None:
        self.k, self.v = k, v

    @property
    def size(self) -> int:
        return self.k.shape[2]

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.k, self.v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        return self.k, self.v

    def cached(self) -> tuple[Tensor, Tensor]:
        return self.k, self.v


class _SourceEncoder(nn.Module):
    """`EncoderDecoder.encode_padded` of named input tensors (source ids, or a source embedding's inputs)."""

    def __init__(self, net: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.net = net
        self.names = names

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        if self.net.source is None or self.names == ["inputs"]:
            return self.net.encode_padded(inputs[0])
        return self.net.encode_padded(dict(zip(self.names, inputs)))


class _DecoderStep(nn.Module):
    """One decoder step on explicit keys/values: (tokens [B, 1], memory, mask, k_0, v_0, ...) -> (logits, k_0', ...)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, tokens: Tensor, memory: Tensor, memory_mask: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        from mmattn.nn import DecoderCache, LayerCache

        layers = [_PastKV(past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2)]
        cache = DecoderCache([LayerCache(kv) for kv in layers])  # type: ignore[arg-type]
        logits = self.net.decode(tokens, memory, memory_mask, cache=cache)[:, -1]
        return (logits, *[t for kv in layers for t in (kv.k, kv.v)])


def _classifier_parts(module: Any) -> dict[str, tuple[nn.Module, Callable[[int, int], tuple], dict]]:
    net = module.net
    example = getattr(net, "example_input", None)
    try:
        x = example(2)  # type: ignore[misc]
    except (TypeError, ValueError) as e:
        raise ExportError(f"cannot make an input for {type(net).__name__} to export it: {e}") from None
    if not torch.is_tensor(x):
        # Several inputs (a fusion model) have no single-tensor recipe yet; torch.onnx.export takes the net itself.
        raise ExportError(
            f"{type(net).__name__} takes {type(x).__name__} inputs, not one tensor: export its net with "
            "torch.onnx.export"
        )
    shape = tuple(x.shape)
    names = {"inputs": ["inputs"], "outputs": ["logits"], "dynamic": {"inputs": {0: "batch"}}}
    return {"model": (net, lambda b, n: (example(b),), names | {"shape": list(shape)})}


def _lm_parts(module: Any) -> dict[str, tuple[nn.Module, Callable[[int, int], tuple], dict]]:
    net = module.net
    vocab = net.vocab_size
    names = {"inputs": ["ids"], "outputs": ["logits"], "dynamic": {"ids": {0: "batch", 1: "length"}}}
    return {"model": (net, lambda b, n: (torch.randint(1, vocab, (b, n)),), names)}


def _seq2seq_parts(module: Any) -> dict[str, tuple[nn.Module, Callable[[int, int], tuple], dict]]:
    net = module.net
    depth, heads = len(net.decoder.layers), net.decoder.layers[0].self_attn.num_heads
    head_dim = net.dim // heads
    if net.source is not None:
        source = net.source
        keys = list(source.export_example(1, 1))

        def encoder_input(b: int, n: int) -> tuple:
            return tuple(source.export_example(b, n).values())

        encoder_names = {"inputs": keys, "dynamic": source.export_axes()}
    else:
        vocab = net.src_vocab_size
        keys = ["src"]

        def encoder_input(b: int, n: int) -> tuple:
            ids = torch.randint(4, vocab, (b, n))
            ids[0, n - 2 :] = net.pad_id  # one padded row
            return (ids,)

        encoder_names = {"inputs": keys, "dynamic": {"src": {0: "batch", 1: "src_len"}}}
    encoder_names["outputs"] = ["memory", "memory_mask"]
    encoder = _SourceEncoder(net, keys)
    past = [f"{kind}_{i}" for i in range(depth) for kind in ("past_k", "past_v")]

    def step_input(b: int, n: int) -> tuple:
        with torch.no_grad():
            memory, mask = encoder(*encoder_input(b, 3))
        cached = [torch.randn(b, heads, n, head_dim) for _ in past]
        return (torch.randint(4, net.tgt_vocab_size, (b, 1)), memory, mask, *cached)

    step_names = {
        "inputs": ["tokens", "memory", "memory_mask", *past],
        "outputs": ["logits", *[name.replace("past", "present") for name in past]],
        "dynamic": {
            "tokens": {0: "batch"},
            "memory": {0: "batch", 1: "memory_len"},
            "memory_mask": {0: "batch", 1: "memory_len"},
            **{name: {0: "batch", 2: "past_len"} for name in past},
        },
    }
    return {
        "encoder": (encoder, encoder_input, encoder_names),
        "decoder_step": (_DecoderStep(net), step_input, step_names),
    }


def _parts(module: Any) -> dict[str, tuple[nn.Module, Callable[[int, int], tuple], dict]]:
    from mmattn.lit import ClassificationModule, LanguageModelModule, Seq2SeqModule

    if isinstance(module, ClassificationModule):
        return _classifier_parts(module)
    if isinstance(module, LanguageModelModule):
        return _lm_parts(module)
    if isinstance(module, Seq2SeqModule):
        return _seq2seq_parts(module)
    raise ExportError(f"{type(module).__name__} has no export recipe; export its net with torch.onnx.export")


def _dynamic_shapes(wrapper: nn.Module, names: dict) -> dict[str, Any]:
    """torch.export's dynamic_shapes for the wrapper's forward arguments (a `*past` argument gets a tuple)."""
    import inspect

    specs = [
        {axis: torch.export.Dim.AUTO for axis in names["dynamic"].get(name, {})} or None for name in names["inputs"]
    ]
    out: dict[str, Any] = {}
    for i, param in enumerate(inspect.signature(wrapper.forward).parameters.values()):
        if param.kind == param.KEYWORD_ONLY or i >= len(specs):
            break
        if param.kind == param.VAR_POSITIONAL:
            out[param.name] = tuple(specs[i:])
            break
        out[param.name] = specs[i]
    return out


def _export_part(part: str, wrapper: nn.Module, args: tuple, names: dict, fmt: Format, path: Path) -> None:
    """Write one part; any exporter failure becomes one line naming the part and the first line of the reason."""
    dynamic = _dynamic_shapes(wrapper, names)
    try:
        with torch.no_grad():
            if fmt == "onnx":
                program = torch.onnx.export(
                    wrapper,
                    args,
                    input_names=names["inputs"],
                    output_names=names["outputs"],
                    dynamic_shapes=dynamic,
                    dynamo=True,
                    verbose=False,
                )
                program.save(str(path))
            else:
                program = torch.export.export(wrapper, args, dynamic_shapes=dynamic)
                torch.export.save(program, str(path))
    except Exception as e:  # the exporters raise many types; the user needs the part and the reason
        reason = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ExportError(f"cannot export the {part} of this model ({type(wrapper).__name__}): {reason}") from e


def _runner(fmt: Format, path: Path, names: dict) -> Callable[..., list[Tensor]]:
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run(*args: Tensor) -> list[Tensor]:
            feeds = {name: arg.numpy() for name, arg in zip(names["inputs"], args)}
            return [torch.from_numpy(out) for out in session.run(None, feeds)]

        return run
    program = torch.export.load(str(path)).module()
    return lambda *args: [t for t in _flat(program(*args))]


def _flat(out: Any) -> list[Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def export_module(
    module: Any, out_dir: str | Path, fmt: Format = "onnx", *, check: bool = True, atol: float = 1e-4
) -> dict[str, Any]:
    """Export `module`'s parts into `out_dir` (see the module docstring) and check them against PyTorch.

    Args:
        module: A trained mmattn module (`mmattn.load(...)`).
        out_dir: Folder for the parts, `export.json` and the tokenizer's files.
        fmt: "onnx" (onnxruntime runs it) or "torch_export" (`torch.export.load(path).module()`).
        check: Run each part on random inputs of two batch sizes and two lengths and compare with PyTorch.
        atol: Largest absolute difference allowed by the check.

    Returns:
        What `export.json` holds: per part its file, input and output names, dynamic axes, and the largest
        difference the check measured.

    Raises:
        ExportError: An unknown format, a part the exporter cannot handle (named), or a check above `atol`.
    """
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = module.cpu().eval()
    record: dict[str, Any] = {"module": f"{type(module).__module__}.{type(module).__qualname__}", "format": fmt}
    tokenizer = getattr(module, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.save(out)
        record["special_ids"] = {k: getattr(tokenizer, f"{k}_id") for k in ("pad", "bos", "eos")}
    record["parts"] = {}
    for part, (wrapper, make_input, names) in _parts(module).items():
        path = out / f"{part}{SUFFIX[fmt]}"
        _export_part(part, wrapper.eval(), make_input(2, 5), names, fmt, path)
        entry = {"file": path.name, **{k: names[k] for k in ("inputs", "outputs", "dynamic")}}
        if check:
            run = _runner(fmt, path, names)
            worst = 0.0
            for b, n in ((1, 3), (3, 7)):
                args = make_input(b, n)
                with torch.no_grad():
                    expected = _flat(wrapper(*args))
                got = run(*args)
                for e, g in zip(expected, got):
                    worst = max(worst, (e.float() - g.float()).abs().max().item() if e.numel() else 0.0)
            if worst > atol:
                raise ExportError(f"the exported {part} differs from PyTorch by {worst:.2e} (> {atol:g})")
            entry["max_abs_diff"] = worst
        record["parts"][part] = entry
    (out / "export.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def greedy_decode_exported(
    encoder: Callable[..., Sequence[Tensor]],
    decoder_step: Callable[..., Sequence[Tensor]],
    src: Sequence[Tensor],
    *,
    depth: int,
    num_heads: int,
    head_dim: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
) -> Tensor:
    """Greedy decoding driven by exported `encoder` and `decoder_step` callables (onnxruntime sessions or exported
    programs, taking and returning tensors), with `mmattn.models.greedy_decode`'s budget (ceil(a * source tokens +
    b), EOS included) and output (ids [B, T], EOS kept, then pad): the tokens of `Seq2SeqModule.generate` at beam 1.
    """
    from mmattn.models.decoding import _source_lengths, max_lengths

    memory, mask = encoder(*src)
    b = memory.shape[0]
    limits = max_lengths(_source_lengths(memory, mask), max_len_a, max_len_b)
    past = [torch.zeros(b, num_heads, 0, head_dim, dtype=memory.dtype) for _ in range(2 * depth)]
    tokens = torch.full((b, 1), bos_id, dtype=torch.long)
    out, done = [], torch.zeros(b, dtype=torch.bool)
    for t in range(int(limits.max())):
        logits, *past = decoder_step(tokens, memory, mask, *past)
        nxt = torch.where(limits == t + 1, eos_id, logits.argmax(-1))
        nxt = nxt.masked_fill(done, pad_id)
        out.append(nxt)
        done |= nxt == eos_id
        if bool(done.all()):
            break
        tokens = nxt[:, None]
    return torch.stack(out, dim=1)
