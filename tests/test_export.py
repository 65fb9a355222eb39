"""mmattn.export: ONNX and torch.export programs of every family match PyTorch; a greedy decode driven by the exported
encoder and decoder step gives the tokens of the module's own greedy decoding; a part that cannot export is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import mmattn
from mmattn.export import ExportError, export_module, greedy_decode_exported
from mmattn.lit import ClassificationModule

onnxruntime = pytest.importorskip("onnxruntime")


def _session(path: Path):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda *args: [torch.from_numpy(o) for o in session.run(None, dict(zip(names, (a.numpy() for a in args))))]


def test_an_onnx_vit_and_lm_match_pytorch(trained_run, tmp_path: Path) -> None:
    vit = mmattn.load(trained_run("vision") / "checkpoints" / "last.ckpt")
    record = export_module(vit, tmp_path / "vit")
    assert record["parts"]["model"]["max_abs_diff"] < 1e-4
    run = _session(tmp_path / "vit" / "model.onnx")
    for batch in (1, 4):
        images = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            assert torch.allclose(run(images)[0], vit(images), atol=1e-4)
    assert json.loads((tmp_path / "vit" / "export.json").read_text())["parts"]["model"]["inputs"] == ["inputs"]

    lm = mmattn.load(trained_run("lm") / "checkpoints" / "last.ckpt")
    export_module(lm, tmp_path / "lm")
    run = _session(tmp_path / "lm" / "model.onnx")
    for batch, length in ((1, 3), (3, 11)):
        ids = torch.randint(4, lm.net.vocab_size, (batch, length))
        with torch.no_grad():
            assert torch.allclose(run(ids)[0], lm.net(ids), atol=1e-4)
    assert (tmp_path / "lm" / "tokenizer.json").is_file()


def _exported_greedy(module, encoder, step, src: tuple) -> torch.Tensor:
    net, tok = module.net, module.tokenizer
    heads = net.decoder.layers[0].self_attn.num_heads
    return greedy_decode_exported(
        encoder,
        step,
        src,
        depth=len(net.decoder.layers),
        num_heads=heads,
        head_dim=net.dim // heads,
        bos_id=tok.bos_id,
        eos_id=tok.eos_id,
        pad_id=tok.pad_id,
        max_len_a=module.decoding["max_len_a"],
        max_len_b=module.decoding["max_len_b"],
    )


def test_an_onnx_translation_model_decodes_like_the_module(trained_run, tmp_path: Path) -> None:
    mt = mmattn.load(trained_run("translation") / "checkpoints" / "last.ckpt")
    record = export_module(mt, tmp_path / "mt")
    assert set(record["parts"]) == {"encoder", "decoder_step"} and record["special_ids"]["bos"] == mt.tokenizer.bos_id
    texts = ["jump twice", "walk left after run around right thrice"]
    src = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(ids) for ids in mt.tokenizer.encode_src_batch(texts)], batch_first=True
    )
    got = _exported_greedy(
        mt, _session(tmp_path / "mt" / "encoder.onnx"), _session(tmp_path / "mt" / "decoder_step.onnx"), (src,)
    )
    mt.decoding.update(beam_size=1)
    assert got.tolist() == mt.generate(src).tolist()
    assert mt.tokenizer.decode_tgt_batch(got.tolist()) == mmattn.translate(mt, texts)


def test_a_speech_model_exports_as_torch_programs(trained_run, data_dir: Path, tmp_path: Path) -> None:
    asr = mmattn.load(trained_run("speech") / "checkpoints" / "last.ckpt")
    record = export_module(asr, tmp_path / "asr", "torch_export")
    assert all(entry["max_abs_diff"] < 1e-4 for entry in record["parts"].values())
    encoder = torch.export.load(str(tmp_path / "asr" / "encoder.pt2")).module()
    step = torch.export.load(str(tmp_path / "asr" / "decoder_step.pt2")).module()
    clips = sorted((data_dir / "spoken_digits" / "test").glob("*.flac"))[:2]
    reader = asr.net.source.reader()
    batch = reader.collate([reader.read_file(c) for c in clips])
    got = _exported_greedy(asr, encoder, lambda *a: list(step(*a)), (batch["audio"], batch["audio_lengths"]))
    asr.decoding.update(method="attention", beam_size=1)
    assert got.tolist() == asr.generate(batch).tolist()


class _Branchy(nn.Module):
    """A network with a data-dependent branch, which torch.export cannot trace."""

    num_classes = 2

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)

    def example_input(self, batch_size: int) -> torch.Tensor:
        return torch.randn(batch_size, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x) if bool(x.sum() > 0) else -self.head(x)


def test_what_cannot_export_is_named(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"cannot export the model of this model \(_Branchy\): "):
        export_module(ClassificationModule(_Branchy(), 2), tmp_path / "b", "torch_export")
    plain = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    plain.num_classes = 2
    with pytest.raises(ExportError, match=r"cannot make an input for Sequential to export it"):
        export_module(ClassificationModule(plain, 2), tmp_path / "s")
    with pytest.raises(ExportError, match=r"format must be one of \['onnx', 'torch_export'\], got 'tflite'"):
        export_module(ClassificationModule(_Branchy(), 2), tmp_path / "t", "tflite")


def test_relative_position_schemes_export_and_match(tmp_path: Path) -> None:
    from mmattn.lit import ClassificationModule, LanguageModelModule
    from mmattn.models import DecoderOnly
    from mmattn.tasks.vision import ViT

    torch.manual_seed(0)
    lm = LanguageModelModule(
        DecoderOnly(vocab_size=40, dim=32, depth=1, num_heads=4, context_length=16, positions="t5")
    )
    assert export_module(lm, tmp_path / "t5")["parts"]["model"]["max_abs_diff"] < 1e-4  # two batches, two lengths
    vit = ViT(img_size=16, patch_size=4, dim=32, depth=1, num_heads=2, num_classes=3, pos_embed="rotary2d_mixed")
    record = export_module(ClassificationModule(vit, num_classes=3), tmp_path / "rope2d", "torch_export")
    assert record["parts"]["model"]["max_abs_diff"] < 1e-4
