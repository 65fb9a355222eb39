"""LanguageModelModule: perplexity = exp(token loss), scored samples, the tokenizer inside checkpoints, options."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from mmattn.lit import LanguageModelModule
from mmattn.lit.language_model import sample_texts
from mmattn.models import DecoderOnly
from mmattn.tasks.text import TextFolderDataModule


def _data(tmp_path: Path) -> TextFolderDataModule:
    words = ["walk", "jump", "look", "run"]
    lines = "".join(f"{a} {b} twice\n" for a in words for b in words) * 4
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text(lines)
    return TextFolderDataModule(
        str(tmp_path / "text"), tokenizer="bytes", documents="line", block_size=16, batch_size=8, val_fraction=0.2
    )


def test_fit_logs_perplexity_and_scored_samples_and_checkpoints_carry_the_tokenizer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = DecoderOnly(vocab_size=260, dim=32, depth=1, num_heads=2, context_length=16, positions="rotary")
    check = lambda text: text.endswith("twice")  # noqa: E731
    module = LanguageModelModule(
        net,
        optimizer=functools.partial(torch.optim.AdamW, lr=3e-3),
        sampling={"max_new_tokens": 12},
        sample_eval={"check": check, "name": "twice", "num_samples": 6, "show": 0},
    )
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    dm = _data(tmp_path)
    trainer.fit(module, datamodule=dm)
    metrics = trainer.callback_metrics
    # Every validation block has the same number of targets, so the mean of batch losses weighted by targets is
    # the token-mean loss that perplexity exponentiates.
    assert math.isclose(float(metrics["val/ppl"]), math.exp(float(metrics["val/loss"])), rel_tol=1e-4)
    assert 0.0 <= float(metrics["val/twice"]) <= 1.0

    ckpt = tmp_path / "lm.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = LanguageModelModule.load_from_checkpoint(
        ckpt,
        net=DecoderOnly(vocab_size=260, dim=32, depth=1, num_heads=2, context_length=16, positions="rotary"),
        weights_only=True,
    )
    assert loaded.tokenizer == dm.tokenizer
    a = sample_texts(loaded, ["walk"], num_samples=3, seed=5)
    assert (
        a
        == sample_texts(module, ["walk"], num_samples=3, seed=5)
        == sample_texts(loaded, ["walk"], num_samples=3, seed=5, use_cache=False)
    )
    assert all(text.startswith("walk") for text in a[0]) and len(a[0]) == 3
    greedy = sample_texts(loaded, ["walk", "jump"], temperature=0.0, max_new_tokens=4)
    assert [len(g) for g in greedy] == [1, 1]


def test_options_are_checked_with_their_names() -> None:
    net = DecoderOnly(vocab_size=20, dim=16, depth=1, num_heads=2, context_length=8)
    with pytest.raises(ValueError, match=r"unknown module.sampling keys \['beam'\]"):
        LanguageModelModule(net, sampling={"beam": 2})
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        LanguageModelModule(net, sampling={"temperature": -1})
    with pytest.raises(ValueError, match="sample_eval.check names 'is_valid', which is not a dotted name"):
        LanguageModelModule(net, sample_eval={"check": "is_valid"})
    with pytest.raises(ValueError, match="sample_eval.check must be a callable"):
        LanguageModelModule(net, sample_eval={"check": 3})
    with pytest.raises(ValueError, match="no tokenizer"):
        sample_texts(LanguageModelModule(net), ["x"])
