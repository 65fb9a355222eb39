"""LanguageModelModule: next-token training of a decoder-only net, perplexity, and sampling on the KV cache.

Batches are dicts with `ids` [B, L + 1]: packed blocks of a token stream; the net reads `ids[:, :-1]` and learns
`ids[:, 1:]`. Validation logs `val/loss` and `val/ppl` (perplexity = exp of the mean token loss, torchmetrics); with
`sample_eval`, samples are drawn after every validation and scored by a check function (e.g. "is this line a command
of the grammar?"), logged as `val/<name>`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics.text import Perplexity

from mmattn.build import resolve_function
from mmattn.data.predict import PredictInputs
from mmattn.lit.base import MMattnModule
from mmattn.lit.tokenizer_state import CarriesTokenizer, adopt_tokenizer, vocab_size_problem
from mmattn.models.sampling import sample_tokens

__all__ = ["LanguageModelModule", "sample_texts"]

SAMPLING_KEYS = ("temperature", "top_k", "top_p", "max_new_tokens")
SAMPLE_EVAL_KEYS = ("check", "name", "num_samples", "prompt", "seed", "show")


def _resolve_check(check: Any) -> Callable[[str], bool]:
    """The sample check as a callable: given as one, or as the dotted name of a function."""
    if isinstance(check, str):
        # A checkpoint's hyperparameters name it too: only functions of mmattn or of trusted packages are called.
        return resolve_function(check, where="module.sample_eval.check")
    if not callable(check):
        raise ValueError(
            "module.sample_eval.check must be a callable text -> bool or its dotted name, e.g. "
            f"mmattn.tasks.text.is_scan_command; got {check!r}"
        )
    return check


def _check_name(check: Callable[[str], bool]) -> str | None:
    """The dotted name of a module-level function (or a partial of one without arguments), else None."""
    if isinstance(check, functools.partial) and not check.args and not check.keywords:
        check = check.func
    module, name = getattr(check, "__module__", None), getattr(check, "__qualname__", "")
    if module is None or not name or "<" in name:
        return None
    return f"{module}.{name}"


class LanguageModelModule(CarriesTokenizer, MMattnModule):
    """Causal language modelling for a net mapping ids [B, T] to logits [B, T, V] (`mmattn.models.DecoderOnly`).

    The tokenizer comes from the datamodule (`datamodule.tokenizer`) or the checkpoint; it needs `pad_id`, `bos_id`,
    `eos_id`, `encode(text)`, `decode_batch(ids)`, `to_dict()` and `from_dict` (`mmattn.tasks.text.TextTokenizer`).

    Args:
        net: The network.
        optimizer: Partial optimizer taking parameter groups (e.g. AdamW with betas 0.9/0.95).
        scheduler: `mmattn.lit.optim.build_scheduler` options (e.g. name=cosine, warmup_steps=2000).
        weight_decay: Decay of the weight matrices (embeddings, biases and norms get none).
        sampling: Defaults of `mmattn.generate`: temperature (0 = greedy), top_k, top_p, max_new_tokens.
        sample_eval: Score samples after each validation (and test): `check` (a callable text -> bool, or the
            dotted name of one),
            `name` (the metric is `val/<name>`), `num_samples`, `prompt` (text after bos; "" = unconditional),
            `seed` (the same samples' randomness every epoch), `show` (samples printed to the log). None = off.
        compile: torch.compile the net at setup.
        tokenizer: A tokenizer, when not taken from the datamodule.
        data: The data config (see `MMattnModule`).

    Raises:
        ValueError: Unknown sampling or sample_eval keys, out-of-range values, a check that is not callable.
    """

    sampling_keys = SAMPLING_KEYS

    def __init__(
        self,
        net: nn.Module | Mapping[str, Any],
        *,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        weight_decay: float = 0.1,
        sampling: Mapping[str, Any] | None = None,
        sample_eval: Mapping[str, Any] | None = None,
        compile: bool = False,
        tokenizer: Any = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            net, optimizer=optimizer, scheduler=scheduler, weight_decay=weight_decay, compile=compile, data=data
        )
        sampling = dict(sampling or {})
        unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
        if unknown:
            raise ValueError(f"unknown module.sampling keys {unknown}; allowed keys are {list(SAMPLING_KEYS)}")
        self.sampling = {"temperature": 1.0, "top_k": None, "top_p": None, "max_new_tokens": 64, **sampling}
        self._check_sampling(self.sampling)
        self.sample_eval = None
        if sample_eval:
            options = dict(sample_eval)
            unknown = sorted(set(options) - set(SAMPLE_EVAL_KEYS))
            if unknown:
                raise ValueError(
                    f"unknown module.sample_eval keys {unknown}; allowed keys are {list(SAMPLE_EVAL_KEYS)}"
                )
            options["check"] = _resolve_check(options.get("check"))
            self.sample_eval = {"name": "valid", "num_samples": 100, "prompt": "", "seed": 0, "show": 3, **options}
            if int(self.sample_eval["num_samples"]) < 1:
                raise ValueError(f"module.sample_eval.num_samples must be >= 1, got {self.sample_eval['num_samples']}")
        self.tokenizer = tokenizer
        hparams: dict[str, Any] = {"sampling": self.sampling}
        if self.sample_eval is not None and _check_name(self.sample_eval["check"]) is not None:
            # As a dotted name, so that mmattn-eval's rebuilt module scores its samples too.
            hparams["sample_eval"] = {**self.sample_eval, "check": _check_name(self.sample_eval["check"])}
        self.save_module_hyperparameters(hparams)
        self.val_ppl = Perplexity()
        self.test_ppl = Perplexity()

    @classmethod
    def metric_modes(cls, options: Mapping[str, Any]) -> dict[str, str]:
        """The validation keys a module built with `options` (its config) logs, each with "min" or "max"."""
        modes = {"val/loss": "min", "val/ppl": "min"}
        if options.get("sample_eval"):
            modes[f"val/{options['sample_eval'].get('name', 'valid')}"] = "max"
        return modes

    @classmethod
    def default_monitor(cls, options: Mapping[str, Any]) -> str:
        """The key checkpoints select by unless the config names one: the validation loss."""
        return "val/loss"

    @staticmethod
    def _check_sampling(options: Mapping[str, Any]) -> None:
        if float(options["temperature"]) < 0:
            raise ValueError(f"sampling temperature must be >= 0 (0 = greedy), got {options['temperature']}")
        if options["top_k"] is not None and int(options["top_k"]) < 1:
            raise ValueError(f"sampling top_k must be >= 1 or null, got {options['top_k']}")
        if options["top_p"] is not None and not 0 < float(options["top_p"]) <= 1:
            raise ValueError(f"sampling top_p must lie in (0, 1] or be null, got {options['top_p']}")
        if int(options["max_new_tokens"]) < 0:
            raise ValueError(f"sampling max_new_tokens must be >= 0, got {options['max_new_tokens']}")

    # ---------------------------------------------------------------------------------------------- tokenizer

    def setup(self, stage: str) -> None:
        """Take the tokenizer from the datamodule, check the net's vocabulary fits it, compile once if asked."""
        self.tokenizer = adopt_tokenizer(self.tokenizer, self.run_datamodule(), type(self).__name__)
        room = getattr(self.net, "vocab_size", None)
        if room is not None:
            problem = vocab_size_problem(
                "the tokenizer", self.tokenizer.vocab_size, "model.vocab_size", room, fitting=stage == "fit"
            )
            if problem is not None:
                raise ValueError(problem)
        # Packed blocks hold no padding, but batches of separate lines may.
        self.val_ppl.ignore_index = self.test_ppl.ignore_index = self.tokenizer.pad_id
        super().setup(stage)

    # ------------------------------------------------------------------------------------------- train / eval

    def _logits(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        ids = batch["ids"]
        return self.net(ids[:, :-1]), ids[:, 1:]

    def _loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=self.tokenizer.pad_id
        )

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        """Mean next-token cross-entropy of the batch."""
        logits, targets = self._logits(batch)
        loss = self._loss(logits, targets)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=targets.numel())
        return loss

    def _eval_step(self, batch: Mapping[str, Tensor], stage: str) -> Tensor:
        logits, targets = self._logits(batch)
        loss = self._loss(logits, targets)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=targets.numel())
        ppl = self.val_ppl if stage == "val" else self.test_ppl
        ppl.update(logits.float(), targets)
        self.log(f"{stage}/ppl", ppl, on_step=False, on_epoch=True, prog_bar=stage == "val")
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        """Loss and perplexity of a validation batch."""
        return self._eval_step(batch, "val")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        """Loss and perplexity of a test batch."""
        return self._eval_step(batch, "test")

    def _score_samples(self, stage: str) -> None:
        if self.sample_eval is None or self.trainer.sanity_checking:
            return
        options = self.sample_eval
        texts = sample_texts(
            self, [options["prompt"]], num_samples=int(options["num_samples"]), seed=int(options["seed"])
        )[0]
        passed = [bool(options["check"](text)) for text in texts]
        # Every rank draws the same samples from the same seed, so the value needs no reduction.
        self.log(f"{stage}/{options['name']}", sum(passed) / len(passed), prog_bar=stage == "val", sync_dist=False)
        shown = int(options["show"])
        if shown:
            lines = "\n".join(f"  {'ok ' if ok else 'BAD'} {text!r}" for text, ok in list(zip(texts, passed))[:shown])
            rank_zero_info(f"{stage} samples ({sum(passed)}/{len(passed)} {options['name']}):\n{lines}")

    def on_validation_epoch_end(self) -> None:
        """Sample and score with `sample_eval` (when configured)."""
        self._score_samples("val")

    def on_test_epoch_end(self) -> None:
        """Sample and score with `sample_eval` (when configured)."""
        self._score_samples("test")

    # ----------------------------------------------------------------------------------------------- prediction

    def batch_size(self, batch: Mapping[str, Tensor]) -> int:
        """Rows of the token blocks."""
        return int(batch["ids"].shape[0])

    def predict_inputs(self) -> PredictInputs:
        """Prompts, one a line (batched as a list of texts)."""
        return PredictInputs("text", str, list)

    def configure_prediction(self, *, num_samples: int = 1, seed: int | None = 0, **sampling: Any) -> None:
        """Options of `predict_step`: samples per prompt, the seed (prompt i draws from seed + i, so the samples do
        not depend on batching or the number of processes; None = random), sampling overrides."""
        unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
        if unknown:
            raise ValueError(f"unknown sampling options {unknown}; allowed are {list(SAMPLING_KEYS)}")
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.predict_options = {"num_samples": int(num_samples), "seed": seed, **sampling}

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """`num_samples` continuations of each prompt of a `mmattn.data.predict` batch."""
        options = dict(getattr(self, "predict_options", {"num_samples": 1, "seed": 0}))
        seed = options.pop("seed")
        out = []
        for index, prompt in zip(batch["indices"], batch["inputs"] or []):
            draw = None if seed is None else int(seed) + int(index)
            out.append({"samples": sample_texts(self, [prompt], seed=draw, **options)[0]})
        return out


@torch.no_grad()
def sample_texts(
    module: LanguageModelModule,
    prompts: Sequence[str],
    *,
    num_samples: int = 1,
    seed: int | None = None,
    use_cache: bool = True,
    **overrides: Any,
) -> list[list[str]]:
    """`num_samples` continuations of each prompt, as full texts: what `mmattn.generate` returns (see it for the
    arguments), and what the module scores in validation and writes in `predict_step`.

    Raises:
        ValueError: No tokenizer, unknown overrides or out-of-range values.
    """
    tok = module.require_tokenizer()
    unknown = sorted(set(overrides) - set(SAMPLING_KEYS))
    if unknown:
        raise ValueError(f"unknown sampling options {unknown}; allowed are {list(SAMPLING_KEYS)}")
    options = {**module.sampling, **{k: v for k, v in overrides.items() if v is not None}}
    module._check_sampling(options)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    generator = torch.Generator(device=module.device)
    generator.manual_seed(int(seed) if seed is not None else int(torch.seed()))
    was_training = module.training
    module.eval()
    out = []
    for prompt in prompts:
        ids = torch.tensor([tok.bos_id, *tok.encode(prompt)], device=module.device)
        rows = sample_tokens(
            module.net,
            ids.expand(num_samples, -1),
            max_new_tokens=int(options["max_new_tokens"]),
            temperature=float(options["temperature"]),
            top_k=None if options["top_k"] is None else int(options["top_k"]),
            top_p=None if options["top_p"] is None else float(options["top_p"]),
            eos_id=tok.eos_id,
            pad_id=tok.pad_id,
            generator=generator,
            use_cache=use_cache,
        )
        out.append(tok.decode_batch(rows.tolist()))
    module.train(was_training)
    return out
