"""ContrastiveModule: a dual encoder of any two inputs trained against each other (CLIP's symmetric InfoNCE or the
SigLIP sigmoid loss over the global batch), evaluated by retrieval over whole splits and zero-shot classification."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor, nn
from torchmetrics import MeanMetric

from mmattn.data.predict import PredictInputs
from mmattn.lit import contrastive_inputs
from mmattn.lit.base import MMattnModule
from mmattn.lit.contrastive_loss import LOSSES, contrastive_loss
from mmattn.lit.retrieval import PairBank, recall_at_k
from mmattn.lit.tokenizer_state import CarriesTokenizer, adopt_tokenizer, vocab_size_problem
from mmattn.models.dual_encoder import DualEncoder

__all__ = ["ContrastiveModule"]

MATCH_KEY = "match"
LABEL_KEY = "label"
# Where a datamodule keeps the zero-shot class prompts: one text per class, or a list of texts per class.
PROMPT_KINDS = ("prompts", "prompt_sets")


def _recall_keys(stage: str, towers: Sequence[str], ks: Sequence[int]) -> dict[str, str]:
    """The retrieval keys logged for `towers` (both directions) and recalls `ks`, each with "max"."""
    a, b = towers
    keys = {f"{stage}/{q}_to_{c}_r{k}": "max" for q, c in ((a, b), (b, a)) for k in ks}
    return {**keys, f"{stage}/mean_r1": "max"}


class ContrastiveModule(CarriesTokenizer, MMattnModule):
    """Contrastive training of a `DualEncoder` on batches of pairs.

    Batches are dicts: one key per tower name (that tower's input batch), `match` (long [B]: items with equal match
    ids are correct matches of each other, e.g. identical scenes or the same transcript) and, for zero-shot
    classification, `label` (long [B], class index; negative = not scored).

    The loss (`mmattn.lit.contrastive_loss`) treats every pair of equal match ids as positive; under several
    processes its negatives are the global batch (embeddings gathered with gradients) and it equals the loss of one
    process on that global batch. Validation and test collect the normalised embeddings of the whole split (from
    every process) and log recall@k both ways, `<stage>/<a>_to_<b>_r<k>`, their mean recall@1 `<stage>/mean_r1`,
    and with `zero_shot_tower` the zero-shot accuracy `<stage>/zero_shot_acc`: each example of the other tower is
    given the class whose prompt (the datamodule's `prompts`, encoded by its `encode_texts`) is most similar; with
    `zero_shot_prompts="prompt_sets"` a class is several prompts whose normalised embeddings are averaged (CLIP's
    prompt ensembling).

    The tokenizer, when the datamodule has one, rides in checkpoints (texts for `mmattn.embed` / `mmattn.retrieve` and
    prompts are encoded with it); towers whose embedding holds a vocabulary are checked against it at setup.

    Args:
        net: A `DualEncoder`, or its config.
        optimizer: Partially applied optimizer class (Hydra `_partial_: true`).
        scheduler: `mmattn.lit.optim.build_scheduler` options; None = constant learning rate.
        weight_decay: Decay of the weight matrices (biases, norms, the logit scale and bias get none).
        loss: "clip" (symmetric InfoNCE, learned temperature) or "siglip" (sigmoid loss; the net needs a logit bias).
        recall_at: The k of the recall@k metrics.
        zero_shot_tower: The tower that embeds the class prompts (its embedding reads token ids); null = no
            zero-shot classification.
        zero_shot_prompts: The datamodule's attribute that holds them: "prompts" (one text per class) or
            "prompt_sets" (a list of texts per class, ensembled).
        tower_names: The net's tower names, when the config knows them (`${oc.dict.keys:model.towers}`): the
            directional retrieval keys can then be declared and monitored before the net is built.
        compile: `torch.compile` the network at setup.
        tokenizer: A tokenizer, when not taken from the datamodule.
        data: The data config (see `MMattnModule`).

    Raises:
        ValueError: A net that is no `DualEncoder`, an unknown loss, "siglip" without a logit bias, bad `recall_at`,
            or a `zero_shot_tower` / `tower_names` that do not fit the net.
    """

    tokenizer_optional = True

    def __init__(
        self,
        net: nn.Module | Mapping[str, Any],
        *,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        weight_decay: float = 0.0,
        loss: str = "clip",
        recall_at: Sequence[int] = (1, 5, 10),
        zero_shot_tower: str | None = None,
        zero_shot_prompts: str = "prompts",
        tower_names: Sequence[str] | None = None,
        compile: bool = False,
        tokenizer: Any = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            net, optimizer=optimizer, scheduler=scheduler, weight_decay=weight_decay, compile=compile, data=data
        )
        if not isinstance(self.net, DualEncoder):
            raise ValueError(f"ContrastiveModule trains a mmattn.models.DualEncoder, got {type(self.net).__name__}")
        names = self.net.names
        if loss not in LOSSES:
            raise ValueError(f"module.loss must be one of {list(LOSSES)}, got {loss!r}")
        if loss == "siglip" and self.net.logit_bias is None:
            raise ValueError(
                "module.loss=siglip needs a learned logit bias: set model.init_logit_bias=-10 and "
                "model.init_logit_scale=2.3026 (SigLIP's log 10)"
            )
        ks = sorted({int(k) for k in recall_at})
        if not ks or ks[0] < 1:
            raise ValueError(f"module.recall_at must be positive ints, got {list(recall_at)}")
        if tower_names is not None and tuple(tower_names) != names:
            raise ValueError(f"module.tower_names={list(tower_names)} but the net's towers are {list(names)}")
        if zero_shot_tower is not None:
            if zero_shot_tower not in names:
                raise ValueError(f"module.zero_shot_tower={zero_shot_tower!r} is no tower; choose one of {list(names)}")
            if self.net.embedding(zero_shot_tower).vocab_size is None:
                raise ValueError(
                    f"module.zero_shot_tower={zero_shot_tower!r} does not embed token ids, so it cannot embed the "
                    "class prompts; name the tower that reads texts"
                )
        if zero_shot_prompts not in PROMPT_KINDS:
            raise ValueError(f"module.zero_shot_prompts must be one of {list(PROMPT_KINDS)}, got {zero_shot_prompts!r}")
        self.loss_kind = loss
        self.recall_at = ks
        self.zero_shot_tower = zero_shot_tower
        self.zero_shot_prompts = zero_shot_prompts
        self.tokenizer = tokenizer
        self.save_module_hyperparameters(
            {
                "loss": loss,
                "recall_at": ks,
                "zero_shot_tower": zero_shot_tower,
                "zero_shot_prompts": zero_shot_prompts,
                "tower_names": list(names),
            }
        )
        self.banks = nn.ModuleDict({"val": PairBank(), "test": PairBank()})
        self.zero_shot = nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})
        self._zero_shot_data: Any = None
        self._prompts: Tensor | None = None
        self.predict_tower: str | None = None

    @classmethod
    def metric_modes(cls, options: Mapping[str, Any]) -> dict[str, str]:
        """The validation keys a module built with `options` logs ("max" but the loss); the directional recall keys
        only when the options name the towers."""
        ks = sorted({int(k) for k in options.get("recall_at", (1, 5, 10))})
        names = options.get("tower_names")
        modes = {"val/loss": "min", "val/mean_r1": "max"}
        if names is not None and len(names) == 2:
            modes.update(_recall_keys("val", list(names), ks))
        if options.get("zero_shot_tower") is not None:
            modes["val/zero_shot_acc"] = "max"
        return modes

    @classmethod
    def default_monitor(cls, options: Mapping[str, Any]) -> str:
        """The mean of both directions' recall@1 over the validation split."""
        return "val/mean_r1"

    # ---------------------------------------------------------------------------------------------------- setup

    def setup(self, stage: str) -> None:
        """Take the datamodule's tokenizer (if any) and check the towers' vocabularies fit it; find the prompts."""
        datamodule = self.run_datamodule()
        if getattr(datamodule, "tokenizer", None) is not None or self.tokenizer is not None:
            self.tokenizer = adopt_tokenizer(self.tokenizer, datamodule, type(self).__name__)
        problems = []
        for name in self.net.names:
            room = self.net.embedding(name).vocab_size
            if room is not None and self.tokenizer is not None:
                key = f"model.towers.{name}.embed.vocab_size"
                have = int(self.tokenizer.vocab_size)
                problems.append(vocab_size_problem("the tokenizer", have, key, room, fitting=stage == "fit"))
        problems = [p for p in problems if p is not None]
        if problems:
            raise ValueError("; ".join(problems))
        if self.zero_shot_tower is not None and stage in ("fit", "validate", "test"):
            prompts = getattr(datamodule, self.zero_shot_prompts, None)
            if prompts is None or not callable(getattr(datamodule, "encode_texts", None)):
                raise ValueError(
                    f"module.zero_shot_tower={self.zero_shot_tower} needs a datamodule with {self.zero_shot_prompts} "
                    f"(class prompts) and encode_texts; {type(datamodule).__name__} has none: set "
                    "module.zero_shot_tower=null"
                )
            self._zero_shot_data = datamodule
        super().setup(stage)

    # ------------------------------------------------------------------------------------------- train / eval

    def _pairs(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised embeddings of both towers and the match ids of a batch."""
        names = self.net.names
        if not isinstance(batch, Mapping) or any(key not in batch for key in (*names, MATCH_KEY)):
            got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(
                f"ContrastiveModule batches are dicts with the towers' inputs and match ids, keys "
                f"{[*names, MATCH_KEY]}; got {got}"
            )
        out = self.net(batch)
        return out[names[0]], out[names[1]], batch[MATCH_KEY]

    def _loss(self, a: Tensor, b: Tensor, match: Tensor) -> Tensor:
        return contrastive_loss(a, b, match, scale=self.net.scale(), bias=self.net.logit_bias, kind=self.loss_kind)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """The contrastive loss of the batch against the global batch."""
        a, b, match = self._pairs(batch)
        loss = self._loss(a, b, match)
        size = int(match.shape[0])
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=size)
        self.log("train/logit_scale", self.net.scale().detach(), on_step=True, on_epoch=False, batch_size=size)
        return loss

    def _eval_step(self, batch: Mapping[str, Any], stage: str) -> Tensor:
        a, b, match = self._pairs(batch)
        loss = self._loss(a, b, match)
        size = int(match.shape[0])
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=size)
        self.banks[stage].update(a, b, match)
        if self.zero_shot_tower is not None and self._zero_shot_data is not None:
            self._update_zero_shot(batch, a, b, stage)
        return loss

    def _update_zero_shot(self, batch: Mapping[str, Any], a: Tensor, b: Tensor, stage: str) -> None:
        """Score the other tower's examples against the class prompts (those with a label >= 0)."""
        if LABEL_KEY not in batch:
            raise ValueError(
                f"module.zero_shot_tower={self.zero_shot_tower} scores batches by their '{LABEL_KEY}' (class index), "
                "but this batch has none; set module.zero_shot_tower=null"
            )
        if self._prompts is None:
            self._prompts = self._class_embeddings()
        other = b if self.zero_shot_tower == self.net.names[0] else a
        labels = batch[LABEL_KEY]
        scored = labels >= 0
        if bool(scored.any()):
            predicted = (other[scored] @ self._prompts.T).argmax(dim=1)
            metric = self.zero_shot[stage]
            metric.update((predicted == labels[scored]).float())
            self.log(f"{stage}/zero_shot_acc", metric, on_step=False, on_epoch=True, batch_size=int(scored.sum()))

    def _class_embeddings(self) -> Tensor:
        """One normalised embedding per class [C, E]: its prompt's, or the mean of its prompt set's."""
        found = getattr(self._zero_shot_data, self.zero_shot_prompts)
        sets = [[text] for text in found] if self.zero_shot_prompts == "prompts" else [list(texts) for texts in found]
        ids = self._zero_shot_data.encode_texts([text for texts in sets for text in texts])
        embedded = self.net.encode(self.zero_shot_tower, ids.to(self.device)).split([len(t) for t in sets])
        return torch.nn.functional.normalize(torch.stack([e.mean(dim=0) for e in embedded]), dim=-1)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """Loss, embeddings collected for retrieval, zero-shot predictions."""
        return self._eval_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """As `validation_step`, on the test split."""
        return self._eval_step(batch, "test")

    def _log_retrieval(self, stage: str) -> None:
        """Recall@k both ways over the whole split (every process's embeddings)."""
        self._prompts = None
        bank = self.banks[stage]
        if not bank.update_called:
            return
        a, b, match = bank.compute()
        bank.reset()
        first, second = self.net.names
        r1 = []
        for (q, c), (qn, cn) in (((a, b), (first, second)), ((b, a), (second, first))):
            recalls = recall_at_k(q, c, match, match, sorted({1, *self.recall_at}))
            for k in self.recall_at:
                # Every rank holds the same value (the gathered split): syncing averages equal numbers.
                self.log(f"{stage}/{qn}_to_{cn}_r{k}", recalls[k], sync_dist=True)
            r1.append(recalls[1])
        self.log(f"{stage}/mean_r1", sum(r1) / 2, prog_bar=stage == "val", sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        """Log the validation split's retrieval recall."""
        self._log_retrieval("val")

    def on_test_epoch_end(self) -> None:
        """Log the test split's retrieval recall."""
        self._log_retrieval("test")

    def batch_size(self, batch: Mapping[str, Any]) -> int:
        """Pairs in a batch (its match ids)."""
        return int(batch[MATCH_KEY].shape[0])

    def attention_figures(
        self,
        batch: Mapping[str, Any],
        num_samples: int,
        *,
        classes: Sequence[str] | None = None,
        titles: Sequence[str] | None = None,
    ) -> list:
        """`("similarity", figure)`: the cosine similarities of the first `num_samples` pairs of a batch, correct
        matches outlined; and `("pairs", figure)`: those inputs drawn by their renderers (towers that have one)."""
        from mmattn.viz.similarity import dual_encoder_figures

        self.eval()
        batch = move_data_to_device(batch, self.device)
        return dual_encoder_figures(self.net, batch, batch[MATCH_KEY], num_samples, tokenizer=self.tokenizer)

    def predict_inputs(self) -> PredictInputs:
        """The items of the prediction tower (`configure_prediction(tower=...)`, else the first): its files, or
        texts for a tower that reads token ids."""
        return contrastive_inputs.predict_inputs(self, self._predict_tower())

    def configure_prediction(self, *, tower: str | None = None) -> None:
        """Options of `predict_step`: which tower embeds the inputs (default: the first)."""
        if tower is not None:
            self.net.tower(tower)
        self.predict_tower = tower

    def _predict_tower(self) -> str:
        return self.predict_tower or self.net.names[0]

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """The normalised embedding of each readable input of a `mmattn.data.predict` batch."""
        if batch["inputs"] is None:
            return []
        out = self.net.encode(self._predict_tower(), batch["inputs"])
        return [{"embedding": row} for row in out.float().tolist()]
