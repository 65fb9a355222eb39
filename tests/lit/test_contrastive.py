"""ContrastiveModule and its parts: the CLIP and SigLIP losses against hand-written references (duplicate match ids
included), recall@k against brute force, zero-shot accuracy on a crafted case, retrieval and its errors."""

from __future__ import annotations

import itertools
import math

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from mmattn_towers import identity_dual_encoder
from torch.utils.data import DataLoader

from mmattn.lit import ContrastiveModule
from mmattn.lit.contrastive_loss import contrastive_loss
from mmattn.lit.retrieval import recall_at_k, top_k


def _unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


# ------------------------------------------------------------------------------------------------------- losses


def test_clip_loss_is_symmetric_infonce_with_a_learned_temperature() -> None:
    a, b = _unit(5, 8, seed=1), _unit(5, 8, seed=2)
    log_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    loss = contrastive_loss(a, b, torch.arange(5), scale=log_scale.exp(), kind="clip")
    logits = log_scale.exp() * a @ b.T
    reference = (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.T, torch.arange(5))) / 2
    assert torch.allclose(loss, reference, atol=1e-5)
    loss.backward()
    assert log_scale.grad is not None and log_scale.grad.abs() > 0


def test_siglip_loss_is_the_papers_sigmoid_loss() -> None:
    a, b = _unit(4, 6, seed=3), _unit(4, 6, seed=4)
    t = torch.tensor(math.log(10.0), requires_grad=True)
    bias = torch.tensor(-10.0, requires_grad=True)
    loss = contrastive_loss(a, b, torch.arange(4), scale=t.exp(), bias=bias, kind="siglip")
    # Zhai et al. 2023, Algorithm 1: -sum(log_sigmoid(labels * logits)) / n, labels = 2 * eye(n) - 1.
    logits = a @ b.T * t.exp() + bias
    labels = 2 * torch.eye(4) - 1
    reference = -F.logsigmoid(labels * logits).sum() / 4
    assert torch.allclose(loss, reference, atol=1e-5)
    loss.backward()
    assert t.grad.abs() > 0 and bias.grad.abs() > 0


def test_duplicate_match_ids_are_all_positives() -> None:
    a, b = _unit(4, 5, seed=5), _unit(4, 5, seed=6)
    match = torch.tensor([7, 3, 7, 1])  # pairs 0 and 2 show the same scene: each is a correct match of the other
    scale = torch.tensor(10.0)
    loss = contrastive_loss(a, b, match, scale=scale, kind="clip")
    total = 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(4):
            positives = [j for j in range(4) if match[j] == match[i]]
            log_probs = (scale * x[i] @ y.T).log_softmax(dim=0)
            # Soft targets spread evenly over the row's positives.
            total += -sum(log_probs[j] for j in positives) / len(positives)
    assert torch.allclose(loss, torch.as_tensor(total / 8), atol=1e-5)

    bias = torch.tensor(-2.0)
    sig = contrastive_loss(a, b, match, scale=scale, bias=bias, kind="siglip")
    labels = torch.tensor([[1.0 if match[i] == match[j] else -1.0 for j in range(4)] for i in range(4)])
    assert torch.allclose(sig, -F.logsigmoid(labels * (scale * a @ b.T + bias)).sum() / 4, atol=1e-5)


def test_loss_errors() -> None:
    a = _unit(3, 4)
    with pytest.raises(ValueError, match=r"unknown contrastive loss 'nce'; choose one of \['clip', 'siglip'\]"):
        contrastive_loss(a, a, torch.arange(3), scale=torch.tensor(1.0), kind="nce")
    with pytest.raises(ValueError, match=r"the sigmoid loss needs a learned logit bias"):
        contrastive_loss(a, a, torch.arange(3), scale=torch.tensor(1.0), kind="siglip")


# ---------------------------------------------------------------------------------------------------- retrieval


def test_recall_at_k_equals_brute_force() -> None:
    q, c = _unit(30, 4, seed=7), _unit(30, 4, seed=8)
    match = torch.randint(0, 12, (30,), generator=torch.Generator().manual_seed(9))  # many duplicates
    got = recall_at_k(q, c, match, match, [1, 5, 10, 50])
    sims = (q @ c.T).tolist()
    for k in (1, 5, 10, 50):
        hits = 0
        for i in range(30):
            ranked = sorted(range(30), key=lambda j: -sims[i][j])[:k]
            hits += any(match[j] == match[i] for j in ranked)
        assert got[k] == pytest.approx(hits / 30)
    assert got[50] == 1.0  # k beyond the candidates counts all of them
    # Chunked search gives the same answer as one matrix.
    assert torch.equal(top_k(q, c, 5, chunk=7)[1], top_k(q, c, 5)[1])


def test_retrieval_over_an_empty_set_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"^retrieval over an empty candidate set: give at least one candidate$"):
        top_k(_unit(2, 3), torch.zeros(0, 3), 5)
    # mmattn.retrieve says the same before it embeds anything: tests/test_inference.py.


# ----------------------------------------------------------------------------------------- the module, in Lightning


class _PairData(pl.LightningDataModule):
    """Pairs (vector, ids) whose vectors point at class `label`'s one-hot axis; prompts are the ids of each class."""

    prompts = ["class 0", "class 1", "class 2"]

    def __init__(self, vectors: torch.Tensor, labels: torch.Tensor, match: torch.Tensor) -> None:
        super().__init__()
        self.rows = [
            {"vec": v, "ids": torch.tensor([int(m) % 3, 5]), "match": m, "label": y}
            for v, y, m in zip(vectors, labels, match)
        ]

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        return torch.tensor([[int(t.split()[1]), 5] for t in texts])

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.rows, batch_size=2)

    test_dataloader = val_dataloader
    train_dataloader = val_dataloader


def _trainer(**kw) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, **kw)


def test_validation_logs_recall_over_the_split_and_zero_shot_accuracy() -> None:
    # Vectors 0-4 point at classes 0, 1, 2, 2, 1 (by their largest axis); labels say 0, 1, 2, 0, 1: 4 of 5 right.
    vectors = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0.2, 1], [0.1, 0, 1], [0, 1, 0.3]])
    labels = torch.tensor([0, 1, 2, 0, 1])
    match = torch.tensor([0, 1, 2, 0, 4])  # text ids are match % 3: rows 0 and 3 share a match id
    module = ContrastiveModule(identity_dual_encoder(), zero_shot_tower="ids", recall_at=[1, 2])
    (metrics,) = _trainer().validate(module, datamodule=_PairData(vectors, labels, match))
    assert metrics["val/zero_shot_acc"] == pytest.approx(4 / 5)
    # Brute force over the whole split (3 batches of 2, 2, 1): vec -> ids with ids' features one-hot of match % 3.
    feats = F.one_hot(match % 3, 3).float()
    expected = recall_at_k(F.normalize(vectors, dim=-1), feats, match, match, [1, 2])
    assert metrics["val/vec_to_ids_r1"] == pytest.approx(expected[1])
    assert metrics["val/vec_to_ids_r2"] == pytest.approx(expected[2])
    back = recall_at_k(feats, F.normalize(vectors, dim=-1), match, match, [1])[1]
    assert metrics["val/mean_r1"] == pytest.approx((expected[1] + back) / 2)
    assert "val/loss" in metrics
    assert set(ContrastiveModule.metric_modes(dict(module.hparams))) >= {k for k in metrics if k != "val/loss"}

    # Prompt ensembles (CLIP's): a class's normalised prompt embeddings averaged. Class 2 = "class 2" and twice
    # "class 1" is (0, 2, 1) / sqrt(5): the vector [0, 1, 0.3] (label 1) now goes to class 2 as well.
    data = _PairData(vectors, labels, match)
    data.prompt_sets = [["class 0"], ["class 1"], ["class 2", "class 1", "class 1"]]
    module = ContrastiveModule(identity_dual_encoder(), zero_shot_tower="ids", zero_shot_prompts="prompt_sets")
    (metrics,) = _trainer().validate(module, datamodule=data)
    assert metrics["val/zero_shot_acc"] == pytest.approx(3 / 5)


def test_module_options_are_checked() -> None:
    with pytest.raises(ValueError, match=r"ContrastiveModule trains a mmattn.models.DualEncoder, got Linear"):
        ContrastiveModule(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"module.loss=siglip needs a learned logit bias: set model.init_logit_bias"):
        ContrastiveModule(identity_dual_encoder(), loss="siglip")
    ContrastiveModule(identity_dual_encoder(init_logit_bias=-10.0), loss="siglip")
    with pytest.raises(ValueError, match=r"zero_shot_tower='vec' does not embed token ids"):
        ContrastiveModule(identity_dual_encoder(), zero_shot_tower="vec")
    with pytest.raises(ValueError, match=r"zero_shot_tower='text' is no tower; choose one of \['vec', 'ids'\]"):
        ContrastiveModule(identity_dual_encoder(), zero_shot_tower="text")
    with pytest.raises(ValueError, match=r"zero_shot_prompts must be one of \['prompts', 'prompt_sets'\]"):
        ContrastiveModule(identity_dual_encoder(), zero_shot_tower="ids", zero_shot_prompts="classes")
    with pytest.raises(ValueError, match=r"tower_names=\['a', 'b'\] but the net's towers are \['vec', 'ids'\]"):
        ContrastiveModule(identity_dual_encoder(), tower_names=["a", "b"])
    module = ContrastiveModule(identity_dual_encoder())
    with pytest.raises(ValueError, match=r"batches are dicts with the towers' inputs and match ids, keys"):
        module.training_step({"vec": torch.eye(3)}, 0)


def test_zero_shot_needs_prompts_and_labels() -> None:
    class NoPrompts(_PairData):
        prompts = None

    data = NoPrompts(torch.eye(3), torch.arange(3), torch.arange(3))
    module = ContrastiveModule(identity_dual_encoder(), zero_shot_tower="ids")
    with pytest.raises(ValueError, match=r"zero_shot_tower=ids needs a datamodule with prompts .* set module"):
        _trainer().validate(module, datamodule=data)


def test_metric_modes_and_monitor() -> None:
    options = {"recall_at": [1, 5], "tower_names": ["audio", "text"], "zero_shot_tower": None}
    modes = ContrastiveModule.metric_modes(options)
    expected = {f"val/{a}_to_{b}_r{k}" for a, b in itertools.permutations(["audio", "text"]) for k in (1, 5)}
    assert set(modes) == {"val/loss", "val/mean_r1", *expected}
    assert modes["val/loss"] == "min" and modes["val/text_to_audio_r5"] == "max"
    assert "val/zero_shot_acc" in ContrastiveModule.metric_modes({**options, "zero_shot_tower": "text"})
    assert ContrastiveModule.default_monitor(options) == "val/mean_r1"
