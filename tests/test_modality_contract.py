"""The modality contract, checked for every model family x every modality: each family is built from its config alone
(`_target_` wiring), runs forward and backward without NaN, trains its input embedding, and its pictures are drawn by
the modality's own renderer. A modality package written only into the test's temporary folder, following
docs/new_modality.md, joins every family without an edit under mmattn/ or configs/. Nothing in the core names a
modality or guesses one from a shape."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.errors import InstantiationException
from mmattn_testing import is_picture

from mmattn.build import safe_instantiate
from mmattn.modality import InputEmbedding

ROOT = Path(__file__).resolve().parents[1]
DIM = 16

# A modality that exists only in the test's temporary folder: what docs/new_modality.md asks a user to write.
OUTSIDE_PACKAGE = '''
"""Radar returns [B, range_bins, sweeps]: a modality mmattn has never heard of."""
import torch
from torch import nn

from mmattn.modality import InputEmbedding, TokenLayout, Tokens
from mmattn.viz.heat import overlay_heat


class RadarRenderer:
    def draw(self, ax, example, heat, layout, *, tokenizer=None):
        ax.imshow(example.T.numpy(), aspect="auto", origin="lower")
        if heat is not None:
            overlay_heat(ax, heat, layout, (0, example.shape[0], 0, example.shape[1]), origin="lower")


class RadarEmbed(InputEmbedding):
    modality = "radar"

    def __init__(self, range_bins: int, sweeps: int, dim: int) -> None:
        super().__init__()
        self.range_bins, self.sweeps, self.dim = range_bins, sweeps, dim
        self.proj = nn.Linear(range_bins, dim)

    @property
    def layout(self):
        return TokenLayout.sequence(self.sweeps)

    def embed(self, x):
        tokens = self.proj(x.transpose(1, 2))  # one token per sweep
        return Tokens(tokens, None, TokenLayout.sequence(tokens.shape[1]))

    def example_input(self, batch_size):
        return torch.randn(batch_size, self.range_bins, self.sweeps)

    def renderer(self):
        return RadarRenderer()
'''


def _modalities() -> dict[str, dict[str, Any]]:
    """Each modality's embedding config at width DIM."""
    return {
        "image": {"_target_": "mmattn.tasks.vision.ImagePatchEmbed", "img_size": 16, "patch_size": 8, "in_chans": 3},
        "spectrogram": {
            "_target_": "mmattn.tasks.audio.SpectrogramPatchEmbed",
            "num_mel_bins": 16,
            "target_length": 24,
            "patch_size": 8,
            "freq_stride": 8,
            "time_stride": 8,
        },
        "text": {"_target_": "mmattn.tasks.text.TextEmbedding", "vocab_size": 40, "example_length": 7},
        "speech": {
            "_target_": "mmattn.tasks.speech.SpeechFrontEnd",
            "sample_rate": 8000,
            "num_mel_bins": 20,
            "subsampling": 4,
            "channels": 4,
        },
        "sensor": {"_target_": "mmattn_timeseries.SensorPatchEmbed", "in_chans": 3, "seq_len": 32, "patch_len": 8},
        "radar": {"_target_": "mmattn_radar.RadarEmbed", "range_bins": 6, "sweeps": 5},
    }


def _embed(name: str) -> dict[str, Any]:
    return {**_modalities()[name], "dim": DIM}


def _family(family: str, modality: str) -> dict[str, Any]:
    """A family's net config with `modality` as its input (fusion: together with a second, different one)."""
    core = {"dim": DIM, "num_heads": 2}
    if family == "classifier":
        return {
            "_target_": "mmattn.models.EncoderClassifier",
            "embed": _embed(modality),
            "num_classes": 3,
            **core,
            "depth": 1,
            "pool": "avg",
        }
    if family == "seq2seq":
        return {
            "_target_": "mmattn.models.EncoderDecoder",
            "source": _embed(modality),
            "src_vocab_size": 0,
            "tgt_vocab_size": 12,
            "encoder_depth": 1,
            "decoder_depth": 1,
            **core,
        }
    partner = "image" if modality != "image" else "spectrogram"
    if family == "dual":
        tower = {"_target_": "mmattn.models.EncoderClassifier", "num_classes": 0, "depth": 1, "pool": "avg", **core}
        towers = {"a": {**tower, "embed": _embed(modality)}, "b": {**tower, "embed": _embed(partner)}}
        return {"_target_": "mmattn.models.DualEncoder", "towers": towers, "embed_dim": 8}
    return {
        "_target_": "mmattn.models.FusionEncoder",
        "members": {"a": _embed(modality), "b": _embed(partner)},
        "num_classes": 3,
        "depth": 1,
        **core,
    }


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory):
    """The path-added example package and a package written only into a temporary folder, both importable."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "mmattn_radar.py").write_text(textwrap.dedent(OUTSIDE_PACKAGE))
    added = [str(folder), str(ROOT / "examples" / "timeseries")]
    sys.path[:0] = added
    yield folder
    for p in added:
        sys.path.remove(p)
    sys.modules.pop("mmattn_radar", None)


TRUST = ("mmattn_timeseries", "mmattn_radar")


def _forward(family: str, net: torch.nn.Module, x: Any) -> torch.Tensor:
    if family == "seq2seq":
        return net(x, torch.randint(1, 12, (2, 4)))
    return net(x)


@pytest.mark.parametrize("modality", list(_modalities()))
@pytest.mark.parametrize("family", ["classifier", "seq2seq", "fusion", "dual"])
def test_every_family_takes_every_modality(family: str, modality: str, outside: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = safe_instantiate(_family(family, modality), where="model", trust=TRUST)
    parts = {"seq2seq": lambda: net.source, "fusion": lambda: net.members["a"], "dual": lambda: net.towers["a"].embed}
    embed = parts.get(family, lambda: net.embed)()
    assert isinstance(embed, InputEmbedding)
    x = net.example_input(2) if family in ("fusion", "dual") else embed.example_input(2)
    out = _forward(family, net, x)
    if family == "dual":  # two normalised embeddings; their similarity is what trains
        out = out["a"] @ out["b"].T * net.logit_scale.exp()
    assert torch.isfinite(out).all()
    out.float().pow(2).mean().backward()
    grads = [p.grad for p in embed.parameters() if p.grad is not None]
    assert grads and any(bool(g.abs().sum() > 0) for g in grads), "the input embedding is not trained"

    from mmattn.viz.attention import net_figures, save_figures, seq2seq_figures

    if family == "dual":
        from mmattn.viz.similarity import dual_encoder_figures

        figures = dual_encoder_figures(net, x, torch.arange(2), 2)
        assert [n for n, _ in figures] == ["similarity", "pairs"]
    elif family == "seq2seq":
        tokenizer = _Tokenizer()
        tgt = torch.tensor([[5, 6, 2, 0], [7, 2, 0, 0]])
        figures = seq2seq_figures(net, x, tgt, 1, tokenizer)
        assert [n for n, _ in figures] == ["alignment_0", "alignment_heads_0", "words_0"]
    else:
        figures = net_figures(net, x, 1, titles=["x"])
    paths = save_figures(figures, tmp_path, dpi=30)
    assert paths and all(is_picture(p) for p in paths)


class _Tokenizer:
    """Token ids as names: what the seq2seq pictures need of a tokenizer."""

    pad_id, bos_id, eos_id = 0, 1, 2


@pytest.mark.parametrize("modality", ["sensor", "radar"])
def test_outside_modalities_train_in_every_family_that_classifies_or_retrieves(modality: str, outside: Path) -> None:
    # A real (short) Lightning fit, built from configs: classifier input and fusion member through ClassificationModule,
    # contrastive tower through ContrastiveModule (its pairs matched by id).
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    from mmattn.lit import ClassificationModule, ContrastiveModule

    def sgd(params):
        return torch.optim.SGD(params, lr=0.1)

    for family in ("classifier", "fusion", "dual"):
        net = safe_instantiate(_family(family, modality), where="model", trust=TRUST)
        inputs = net.embed.example_input(8) if family == "classifier" else net.example_input(8)
        if family == "dual":
            rows = [{"a": inputs["a"][i], "b": inputs["b"][i], "match": i} for i in range(8)]
            module = ContrastiveModule(net, optimizer=sgd)
        else:
            rows = [
                ({k: v[i] for k, v in inputs.items()} if family == "fusion" else inputs[i], i % 3) for i in range(8)
            ]
            module = ClassificationModule(net, 3, optimizer=sgd)
        trainer = pl.Trainer(
            max_steps=3,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        before = [p.detach().clone() for p in net.parameters()]
        trainer.fit(module, DataLoader(rows, batch_size=4))
        assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters())), family


def test_a_missing_part_stops_with_one_line_naming_the_modality(outside: Path) -> None:
    # Not an InputEmbedding at all (an old-style module returning a grid): named at build time.
    # (mmattn's CLIs print the ValueError inside Hydra's InstantiationException as their one line; see test_cli_errors.)
    with pytest.raises(InstantiationException, match=r"EncoderDecoder source: Linear is not an mmattn.modality.Input"):
        safe_instantiate(
            {
                **_family("seq2seq", "image"),
                "source": {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 2},
            },
            where="model",
        )
    # A reader-less modality given files.
    from mmattn.modality import require_reader, require_renderer

    radar = safe_instantiate(_embed("radar"), where="embed", trust=TRUST)
    with pytest.raises(ValueError, match=r"reads files, but the radar \(RadarEmbed\) input has no file reader"):
        require_reader(radar, "mmattn-transcribe")
    image = safe_instantiate(_embed("image"), where="embed")
    assert require_renderer(image, "viz") is not None
    with pytest.raises(InstantiationException, match=r"member 'b' \(image\) gives 16-wide tokens, dim is 32"):
        safe_instantiate(
            {
                **_family("fusion", "text"),
                "dim": 32,
                "members": {"a": {**_embed("text"), "dim": 32}, "b": _embed("image")},
            },
            where="model",
        )


# Words that name a modality; the core (everything under mmattn/ but the adapters in mmattn/tasks) must not use them
# in code: not as names, attributes or string constants (its docstrings may give examples).
MODALITY_WORDS = {
    "image",
    "images",
    "audio",
    "speech",
    "vision",
    "spectrogram",
    "waveform",
    "mel",
    "pixel",
    "pixels",
    "video",
    "sensor",
    "timeseries",
    "radar",
}


def _code_words(source: str) -> set[str]:
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.arg):
            words.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            words.add(node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.add(node.value)
    split: set[str] = set()
    for w in words:
        split |= {part.lower() for part in __import__("re").split(r"[^A-Za-z]+|_", w) if part}
    return split


def test_the_core_names_no_modality() -> None:
    core = [p for p in (ROOT / "mmattn").rglob("*.py") if "tasks" not in p.relative_to(ROOT / "mmattn").parts]
    assert any(p.parts[-2] == "viz" for p in core)
    found = {str(p.relative_to(ROOT)): sorted(_code_words(p.read_text()) & MODALITY_WORDS) for p in core}
    assert not {k: v for k, v in found.items() if v}, "the core names a modality"
