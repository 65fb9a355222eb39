"""Seq2SeqModule: any source adapter feeding a text decoder, trained with label-smoothed cross-entropy (optionally
joint with CTC on the encoder), evaluated by decoding (greedy, beam search or CTC greedy) with BLEU, chrF, exact match,
word and character error rate."""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from torchmetrics import MeanMetric, Metric, MetricCollection
from torchmetrics.text import CharErrorRate, CHRFScore, SacreBLEUScore, WordErrorRate

from mmattn.build import resolve_class
from mmattn.data.predict import PredictInputs
from mmattn.lit.base import MMattnModule, plain
from mmattn.lit.tokenizer_state import TOKENIZER_KEY, CarriesTokenizer, adopt_tokenizer, tokenizer_from_checkpoint
from mmattn.modality import FileReader, modality_name
from mmattn.models.decoding import beam_search, ctc_greedy_decode, greedy_decode
from mmattn.nn.capture import attention_layers, capture_attention

__all__ = ["Seq2SeqModule", "TOKENIZER_KEY", "guided_attention_loss", "pad_ids", "tokenizer_from_checkpoint"]

# The decoder's cross-attention layers of the shared EncoderDecoder, which guided attention steers.
CROSS_ATTENTION = "decoder.layers.*.cross_attn"


def guided_attention_loss(
    weights: Sequence[Tensor], query_lengths: Tensor, key_lengths: Tensor, sigma: float
) -> Tensor:
    """Attention mass away from the diagonal (Tachibana et al., 2017), per query row and head, averaged over layers.

    Query n of a row with N queries attending to key t of T keys is penalised by
    `1 - exp(-((n + 0.5) / N - (t + 0.5) / T)^2 / (2 sigma^2))`: near 0 on the diagonal, near 1 far from it.

    Args:
        weights: Attention weights [B, H, N, M] of each layer (rows sum to 1 over the keys).
        query_lengths: Real queries per row [B] (padding beyond them is ignored).
        key_lengths: Real keys per row [B].
        sigma: Width of the allowed band, as a fraction of the lengths (0.2 in the paper).
    """
    _, heads, n, m = weights[0].shape
    device = weights[0].device
    q_len = query_lengths.to(device).clamp_min(1).float()[:, None, None]
    k_len = key_lengths.to(device).clamp_min(1).float()[:, None, None]
    q = (torch.arange(n, device=device).float()[None, :, None] + 0.5) / q_len  # [B, N, 1]
    k = (torch.arange(m, device=device).float()[None, None, :] + 0.5) / k_len  # [B, 1, M]
    penalty = 1 - torch.exp(-((q - k) ** 2) / (2 * sigma**2))
    valid = (q <= 1) & (k <= 1)
    penalty = (penalty * valid)[:, None]  # [B, 1, N, M]
    rows = valid.any(dim=2).sum() * heads
    total = sum((w.float() * penalty).sum() for w in weights)
    return total / (rows.clamp_min(1) * len(weights))


def _memory_lengths(memory: Tensor, mask: Tensor | None) -> Tensor:
    """Real encoder tokens per row [B] of `memory` [B, S, D] (padding marked True in `mask`)."""
    if mask is None:
        return torch.full((memory.shape[0],), memory.shape[1], dtype=torch.long, device=memory.device)
    return (~mask).sum(dim=1)


DECODING_KEYS = (
    "method",
    "beam_size",
    "length_penalty",
    "max_len_a",
    "max_len_b",
    "hard_max",
    "ctc_weight",
    "oracle_length",
)
DECODING_METHODS = ("attention", "ctc")
METRICS = ("bleu", "chrf", "exact", "wer", "cer")
# Metrics that take one reference per hypothesis (the others take a list of references each).
_SINGLE_REFERENCE = ("exact", "wer", "cer")
# Error rates: lower is better (the other metrics are scores).
_LOWER_IS_BETTER = ("wer", "cer")
# BLEU and chrF on sacrebleu's 0-100 scale; the rest are fractions.
_PERCENT = ("bleu", "chrf")


class _ExactMatch(MeanMetric):
    """Share of hypotheses equal to their reference (after stripping outer whitespace)."""

    def update(self, hyps: Sequence[str], refs: Sequence[str]) -> None:  # type: ignore[override]
        super().update(torch.tensor([float(h.strip() == r.strip()) for h, r in zip(hyps, refs)]))


class Seq2SeqModule(CarriesTokenizer, MMattnModule):
    """Sequence-to-sequence training and evaluation for a net with `encode(src)` and `decode(...)` (`EncoderDecoder`).

    Batches are dicts: `src` (source batch: ids [B, S], or whatever the net's source adapter takes, e.g. waveforms
    and their lengths), `tgt` (target ids [B, T], EOS-terminated, padded), and for evaluation `ref` (the reference
    texts). The decoder input is BOS + `tgt[:, :-1]` (teacher forcing).
    The tokenizer comes from the datamodule (`datamodule.tokenizer`) or the checkpoint; it needs `pad_id`, `bos_id`,
    `eos_id`, `decode_tgt_batch(ids)`, `to_dict()`, a `from_dict` classmethod and, for text sources,
    `encode_src_batch(texts)`. `mmattn.translate` and `mmattn.transcribe` decode texts and files with it.

    Args:
        net: The network.
        optimizer: Partial optimizer taking parameter groups (e.g. Adam with betas 0.9/0.98).
        scheduler: `mmattn.lit.optim.build_scheduler` options (e.g. name=inverse_sqrt, warmup_steps=4000).
        weight_decay: Decay of the weight matrices (embeddings, biases and norms get none).
        label_smoothing: Label smoothing of the cross-entropy (0.1 in the paper); padding is ignored.
        predict_eos: Train the decoder to emit EOS. False leaves EOS out of the loss (Newman et al., 2020's -EOS
            models, which extrapolate to longer outputs better): such a model cannot stop by itself and is decoded
            with `decoding.oracle_length`.
        ctc_weight: Weight w of the joint loss `(1 - w) * attention + w * CTC` (Kim et al., 2017; 0.3 is usual for
            speech); > 0 needs a net with a CTC head (`EncoderDecoder(ctc=True)`). CTC's blank is the pad id.
        guided_attention: Weight of the guided-attention loss (Tachibana et al., 2017) added in training: the
            decoder's cross-attention mass away from the diagonal of (target position, source position). It makes
            the attention decoder align with the source early on monotonic tasks (speech), where it otherwise learns
            to align late and skips or repeats words; 0 = off. Those layers take the explicit attention path in
            training steps.
        guided_sigma: Width of the band guided attention allows, as a fraction of the lengths (0.2 in the paper).
        decoding: method ("attention": greedy or beam search in the decoder; "ctc": CTC greedy decoding of the
            encoder, the fast path), beam_size (1 = greedy), length_penalty, max_len_a, max_len_b (budget = a *
            encoder length + b), hard_max, ctc_weight (attention decoding scored jointly with the CTC head's prefix
            probabilities, Watanabe et al. 2017: 0 = attention alone; > 0 needs a CTC head), oracle_length
            (evaluation only: every output takes its reference's length, EOS banned before it and forced at it;
            Newman et al., 2020's diagnostic of whether a model fails at what to say or at when to stop).
        val_decode_batches: Validation batches decoded for BLEU/exact match each epoch (a fixed subset, since the
            val loader is not shuffled); None decodes all. Loss is computed on every batch; test decodes everything.
        metrics: Any of "bleu" (SacreBLEU, 13a tokenisation, 0-100), "chrf" (0-100), "exact" (0-1), "wer" (word
            error rate, 0-1 and above), "cer" (character error rate).
        text_metrics: More metrics of decoded texts, `{name: dotted class path}` (or `{name: {class: path,
            **options}}`): each a torchmetrics `Metric` (resolved through `mmattn.build`'s allowlist) updated with
            `(hypotheses, references)`, logged as `val/<name>` and `test/<name>`; its class's `higher_is_better`
            sets the checkpoint mode (e.g. a task's attribute accuracy of captions). Plain paths, not `_target_`
            nodes, so the module records the config, not an instance.
        compile: torch.compile the net at setup.
        tokenizer: A tokenizer, when not taken from the datamodule.
        data: The data config (see `MMattnModule`).

    Raises:
        ValueError: Unknown decoding keys or metrics, out-of-range options.
    """

    def __init__(
        self,
        net: nn.Module | Mapping[str, Any],
        *,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        weight_decay: float = 0.0,
        label_smoothing: float = 0.1,
        ctc_weight: float = 0.0,
        guided_attention: float = 0.0,
        guided_sigma: float = 0.2,
        predict_eos: bool = True,
        decoding: Mapping[str, Any] | None = None,
        val_decode_batches: int | None = 4,
        metrics: Sequence[str] = ("bleu", "exact"),
        text_metrics: Mapping[str, str | Mapping[str, Any]] | None = None,
        compile: bool = False,
        tokenizer: Any = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            net, optimizer=optimizer, scheduler=scheduler, weight_decay=weight_decay, compile=compile, data=data
        )
        net = self.net
        decoding = dict(decoding or {})
        unknown = sorted(set(decoding) - set(DECODING_KEYS))
        if unknown:
            raise ValueError(f"unknown module.decoding keys {unknown}; allowed keys are {list(DECODING_KEYS)}")
        if decoding.get("method", "attention") not in DECODING_METHODS:
            raise ValueError(
                f"module.decoding.method must be one of {list(DECODING_METHODS)}, got {decoding['method']!r}"
            )
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"module.ctc_weight must be in [0, 1], got {ctc_weight}")
        has_ctc = getattr(net, "ctc_head", None) is not None
        if (ctc_weight > 0 or decoding.get("method") == "ctc") and not has_ctc:
            raise ValueError(
                f"module.ctc_weight={ctc_weight} / module.decoding.method={decoding.get('method', 'attention')!r} "
                "need a CTC head on the encoder: set model.ctc=true"
            )
        joint = float(decoding.get("ctc_weight") or 0.0)
        if not 0.0 <= joint <= 1.0:
            raise ValueError(f"module.decoding.ctc_weight must be in [0, 1], got {joint}")
        if joint > 0 and not has_ctc:
            raise ValueError(
                f"module.decoding.ctc_weight={joint} scores hypotheses with the encoder's CTC head: set model.ctc=true"
            )
        if ctc_weight == 1.0 and decoding.get("method", "attention") == "attention" and joint < 1:
            raise ValueError("module.ctc_weight=1 trains no decoder: decode with module.decoding.method=ctc")
        if guided_attention < 0 or guided_sigma <= 0:
            raise ValueError(
                f"module.guided_attention ({guided_attention}) must be >= 0 and module.guided_sigma ({guided_sigma}) "
                "> 0; 0.2 is the paper's width"
            )
        if guided_attention > 0:
            names = list(attention_layers(net))
            if not any(fnmatch.fnmatch(n, CROSS_ATTENTION) for n in names):
                raise ValueError(
                    f"module.guided_attention steers the decoder's cross-attention ({CROSS_ATTENTION}), which "
                    f"{type(net).__name__} does not have; set module.guided_attention=0"
                )
        if not predict_eos and not decoding.get("oracle_length"):
            raise ValueError(
                "module.predict_eos=false trains no end of sequence, so decoding could not stop: evaluate with "
                "module.decoding.oracle_length=true"
            )
        if int(decoding.get("beam_size", 1)) < 1:
            raise ValueError(f"module.decoding.beam_size must be >= 1, got {decoding['beam_size']}")
        bad = sorted(set(metrics) - set(METRICS))
        if bad or not metrics:
            raise ValueError(f"module.metrics {list(metrics)}: choose from {list(METRICS)}")
        text_metrics = {
            name: plain(cfg if isinstance(cfg, str) else dict(cfg), f"module.text_metrics.{name}")
            for name, cfg in (text_metrics or {}).items()
        }
        clash = sorted(set(text_metrics) & {*METRICS, "loss", "ctc_loss", "att_loss"})
        if clash:
            raise ValueError(f"module.text_metrics {clash} clash with built-in metric names; rename them")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}; fix module.label_smoothing")
        if val_decode_batches is not None and val_decode_batches < 0:
            raise ValueError(f"val_decode_batches must be >= 0 or null, got {val_decode_batches}")
        self.label_smoothing = float(label_smoothing)
        self.predict_eos = bool(predict_eos)
        self.ctc_weight = float(ctc_weight)
        self.guided_attention = float(guided_attention)
        self.guided_sigma = float(guided_sigma)
        defaults = {"method": "attention", "beam_size": 4, "length_penalty": 1.0, "max_len_a": 1.5, "max_len_b": 10}
        self.decoding = {**defaults, **decoding}
        self.val_decode_batches = val_decode_batches
        self.tokenizer = tokenizer
        self.save_module_hyperparameters(
            {
                "label_smoothing": self.label_smoothing,
                "ctc_weight": self.ctc_weight,
                "guided_attention": self.guided_attention,
                "guided_sigma": self.guided_sigma,
                "decoding": self.decoding,
                "val_decode_batches": val_decode_batches,
                "metrics": list(metrics),
                "text_metrics": text_metrics,
            }
        )
        self._single_reference = {*_SINGLE_REFERENCE, *text_metrics}
        self.val_metrics = self._metrics(metrics, text_metrics, "val/")
        self.test_metrics = self._metrics(metrics, text_metrics, "test/")

    @classmethod
    def metric_modes(cls, options: Mapping[str, Any]) -> dict[str, str]:
        """The validation keys a module built with `options` (its config) logs, each with "min" or "max"."""
        modes = {"val/loss": "min"}
        ctc_weight = float(options.get("ctc_weight") or 0.0)
        if 0 < ctc_weight:
            modes["val/ctc_loss"] = "min"
            if ctc_weight < 1:
                modes["val/att_loss"] = "min"
        for name in options.get("metrics", ("bleu", "exact")):
            modes[f"val/{name}"] = "min" if name in _LOWER_IS_BETTER else "max"
        for name, cfg in (options.get("text_metrics") or {}).items():
            metric = _text_metric_class(name, cfg)
            modes[f"val/{name}"] = "min" if metric.higher_is_better is False else "max"
        return modes

    @classmethod
    def default_monitor(cls, options: Mapping[str, Any]) -> str:
        """The key checkpoints select by unless the config names one: the first of `metrics`."""
        return f"val/{list(options.get('metrics', ('bleu', 'exact')))[0]}"

    @staticmethod
    def _metrics(names: Sequence[str], extra: Mapping[str, Any], prefix: str) -> MetricCollection:
        make = {
            "bleu": lambda: SacreBLEUScore(tokenize="13a"),
            # chrF (character n-grams only), sacrebleu's default; n_word_order=2 would be chrF++.
            "chrf": lambda: CHRFScore(n_word_order=0),
            "exact": lambda: _ExactMatch(),
            "wer": lambda: WordErrorRate(),
            "cer": lambda: CharErrorRate(),
        }
        built = {name: make[name]() for name in names}
        for name, cfg in extra.items():
            options = {} if isinstance(cfg, str) else {k: v for k, v in cfg.items() if k != "class"}
            built[name] = _text_metric_class(name, cfg)(**options)
        return MetricCollection(built, prefix=prefix)

    # ---------------------------------------------------------------------------------------------- tokenizer

    def setup(self, stage: str) -> None:
        """Take the tokenizer from the datamodule, check the net's vocabularies fit it, compile once if asked."""
        from mmattn.lit.tokenizer_state import vocab_size_problem

        self.tokenizer = adopt_tokenizer(self.tokenizer, self.run_datamodule(), type(self).__name__)
        problems = []
        for side, name in (("src", "source"), ("tgt", "target")):
            have = getattr(self.tokenizer, f"{side}_vocab_size", None)
            room = getattr(self.net, f"{side}_vocab_size", None)
            source = getattr(self.net, "source", None)
            if side == "src" and getattr(source, "vocab_size", None) is not None:
                room = source.vocab_size  # a text embedding as the source: its table holds the source ids
            # A source adapter of another modality (audio, images) replaces the source vocabulary.
            adapter = side == "src" and not self.text_source()
            if have is not None and room is not None and not adapter:
                key = f"model.{side}_vocab_size"
                problems.append(vocab_size_problem(f"the {name} tokenizer", have, key, room, fitting=stage == "fit"))
        problems = [p for p in problems if p is not None]
        limit = getattr(self.net, "position_limit", None)
        max_len = getattr(self.run_datamodule(), "max_len", None)
        if stage == "fit" and limit is not None and isinstance(max_len, int) and max_len > limit[0]:
            problems.append(
                f"data.max_len={max_len} lets sequences take {max_len} positions, but {limit[1]}={limit[0]} places "
                f"at most {limit[0]}; raise {limit[1]} or lower data.max_len"
            )
        if problems:
            # Both sides in one line: a joint vocabulary needs both overrides, and one run should name them both.
            raise ValueError("; ".join(problems))
        super().setup(stage)

    # ------------------------------------------------------------------------------------------- train / eval

    def _loss(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, int, dict[str, Tensor]]:
        """The training loss, the target token count and its parts (attention and CTC) when joint."""
        src, tgt = batch["src"], batch["tgt"]
        pad, bos = self.tokenizer.pad_id, self.tokenizer.bos_id
        # Positions after EOS hold padding in both tgt_in and tgt; the loss ignores them.
        tgt_in = torch.cat([torch.full_like(tgt[:, :1], bos), tgt[:, :-1]], dim=1)
        tokens = int((tgt != pad).sum())
        guide = self.guided_attention > 0 and self.training and self.ctc_weight < 1
        if not self.ctc_weight and not guide:
            return self._attention_loss(self.net(src, tgt_in), tgt), tokens, {}
        memory, mask = self.net.encode(src)
        parts: dict[str, Tensor] = {}
        att = None
        if self.ctc_weight < 1:
            if guide:
                with capture_attention(self.net, [CROSS_ATTENTION], keep_graph=True) as maps:
                    logits = self.net.decode(tgt_in, memory, mask)
                weights = [w for layer in maps.values() for w in layer]
                frames = _memory_lengths(memory, mask)
                parts["guide_loss"] = guided_attention_loss(weights, (tgt != pad).sum(dim=1), frames, self.guided_sigma)
            else:
                logits = self.net.decode(tgt_in, memory, mask)
            att = self._attention_loss(logits, tgt)
        if not self.ctc_weight:
            loss = att
        else:
            parts["ctc_loss"] = ctc = self._ctc_loss(memory, mask, tgt)
            loss = ctc if att is None else (1 - self.ctc_weight) * att + self.ctc_weight * ctc
        if att is not None and (self.ctc_weight or guide):
            parts["att_loss"] = att
        if guide:
            loss = loss + self.guided_attention * parts["guide_loss"]
        return loss, tokens, parts

    def _attention_loss(self, logits: Tensor, tgt: Tensor) -> Tensor:
        if not self.predict_eos:
            tgt = tgt.masked_fill(tgt == self.tokenizer.eos_id, self.tokenizer.pad_id)
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            tgt.reshape(-1),
            ignore_index=self.tokenizer.pad_id,
            label_smoothing=self.label_smoothing,
        )

    def _ctc_loss(self, memory: Tensor, mask: Tensor | None, tgt: Tensor) -> Tensor:
        """CTC per target token; the targets are `tgt` without EOS, the blank is the pad id."""
        pad = self.tokenizer.pad_id
        log_probs = torch.log_softmax(self.net.ctc_logits(memory).float(), dim=-1).transpose(0, 1)  # [S, B, V]
        frames = _memory_lengths(memory, mask)
        labels = (tgt != pad).sum(dim=1) - 1  # EOS is the last real token of every row
        # zero_infinity: an utterance with fewer frames than CTC needs for its labels adds nothing, not inf.
        loss = F.ctc_loss(log_probs, tgt, frames, labels, blank=pad, reduction="sum", zero_infinity=True)
        return loss / labels.sum().clamp_min(1)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        """Label-smoothed cross-entropy per target token (padding ignored)."""
        loss, tokens, parts = self._loss(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=tokens)
        for name, value in parts.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=False, batch_size=tokens)
        return loss

    @torch.no_grad()
    def generate(self, src: Tensor, *, exact_lengths: Tensor | None = None) -> Tensor:
        """Output ids [B, T] for a source batch with the configured decoding (CTC, or beam_size 1 = greedy);
        `exact_lengths` [B] (EOS included) fixes each output's length (oracle-length evaluation)."""
        options = dict(self.decoding)
        options.pop("oracle_length", None)
        if exact_lengths is not None:
            options["exact_lengths"] = exact_lengths
        pad, eos = self.tokenizer.pad_id, self.tokenizer.eos_id
        if options.get("method") == "ctc" and exact_lengths is not None:
            raise ValueError("decoding.oracle_length fixes the decoder's steps; CTC decoding (method=ctc) has none")
        if options.pop("method", "attention") == "ctc":
            return ctc_greedy_decode(self.net, src, blank_id=pad, eos_id=eos, pad_id=pad)
        beam_size = int(options.pop("beam_size"))
        length_penalty = float(options.pop("length_penalty"))
        joint = float(options.pop("ctc_weight", 0.0) or 0.0)
        ids = dict(bos_id=self.tokenizer.bos_id, eos_id=eos, pad_id=pad)
        if beam_size == 1 and not joint:
            return greedy_decode(self.net, src, **ids, **options)
        if joint:
            # CTC's blank is the pad id (see _ctc_loss).
            options.update(ctc_weight=joint, blank_id=pad)
        return beam_search(self.net, src, beam_size=beam_size, length_penalty=length_penalty, **ids, **options)

    def _eval_step(self, batch: Mapping[str, Any], stage: str, decode: bool) -> Tensor:
        loss, tokens, parts = self._loss(batch)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=tokens)
        for name, value in parts.items():
            self.log(f"{stage}/{name}", value, on_step=False, on_epoch=True, sync_dist=True, batch_size=tokens)
        if decode:
            metrics = self.val_metrics if stage == "val" else self.test_metrics
            # Oracle length (Newman et al., 2020): every output gets its reference's length, EOS included.
            oracle = (batch["tgt"] != self.tokenizer.pad_id).sum(dim=1) if self.decoding.get("oracle_length") else None
            hyps = self.tokenizer.decode_tgt_batch(self.generate(batch["src"], exact_lengths=oracle).tolist())
            refs = list(batch["ref"])
            for name, metric in metrics.items(keep_base=True):
                if name.split("/")[-1] in self._single_reference:
                    metric.update(hyps, refs)
                else:
                    metric.update(hyps, [[r] for r in refs])
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """Loss on every batch; decode the first `val_decode_batches` batches for the text metrics."""
        limit = self.val_decode_batches
        return self._eval_step(batch, "val", decode=limit is None or batch_idx < limit)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """Loss and text metrics on every test batch."""
        return self._eval_step(batch, "test", decode=True)

    def _log_text_metrics(self, metrics: MetricCollection) -> None:
        if not any(m.update_called for m in metrics.values()):
            return
        values = metrics.compute()
        for name, value in values.items():
            scale = 100.0 if name.split("/")[-1] in _PERCENT else 1.0
            self.log(name, value * scale, prog_bar=name.startswith("val/"), sync_dist=False)
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        """Log BLEU / chrF / exact match of the decoded subset."""
        self._log_text_metrics(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        """Log BLEU / chrF / exact match of the test set."""
        self._log_text_metrics(self.test_metrics)

    # ----------------------------------------------------------------------------------------------- pictures

    def batch_size(self, batch: Mapping[str, Any]) -> int:
        """Rows of the target ids."""
        return int(batch["tgt"].shape[0])

    def attention_figures(
        self,
        batch: Mapping[str, Any],
        num_samples: int,
        *,
        classes: Sequence[str] | None = None,
        titles: Sequence[str] | None = None,
    ) -> list:
        """Cross-attention alignments of the first `num_samples` pairs, and for a source of another modality each
        target token's attention drawn over the input."""
        from mmattn.viz.attention import seq2seq_figures

        return seq2seq_figures(self.net, batch["src"], batch["tgt"], num_samples, self.tokenizer)

    @torch.no_grad()
    def file_attention_figures(self, paths: Sequence[str]) -> list:
        """Cross-attention of the decoder while it writes its own output for files read by the source's reader."""
        from mmattn.viz.attention import seq2seq_figures

        reader = self.source_reader()
        self.eval()
        src = move_data_to_device(reader.collate([reader.read_file(p) for p in paths]), self.device)
        return seq2seq_figures(self.net, src, self.generate(src), len(paths), self.tokenizer)

    # ----------------------------------------------------------------------------------------------- prediction

    def predict_inputs(self) -> PredictInputs:
        """Files read by the source's file reader (speech, images), or lines of source text (translation)."""
        tokenizer = self.require_tokenizer()
        if not self.text_source():
            reader = self.source_reader()
            return PredictInputs("files", reader.read_file, reader.collate, reader.extensions, reader.manifest_keys)
        encode = functools.partial(_encode_source, tokenizer)
        return PredictInputs("text", encode, functools.partial(pad_ids, pad_id=tokenizer.pad_id))

    def source_reader(self) -> FileReader:
        """The file reader of the net's source: its embedding's own (speech reads audio at its rate), else the recorded
        data config's (`load_inputs`: images through the evaluation transform).

        Raises:
            ValueError: The source is text token ids, or neither the modality nor the data reads files.
        """
        source = getattr(self.net, "source", None)
        if self.text_source():
            raise ValueError(
                "this model's source is text, which is not read from files; use mmattn-translate or mmattn.translate"
            )
        return self.input_reader(source, "this model's source")

    def text_source(self) -> bool:
        """The source is text token ids: the net's own token embedding, or an input embedding of token ids."""
        source = getattr(self.net, "source", None)
        return source is None or getattr(source, "vocab_size", None) is not None

    def require_text_source(self) -> None:
        """Raise one line unless the source is text token ids (what `mmattn.translate` and mmattn-translate take)."""
        source = getattr(self.net, "source", None)
        if not self.text_source():
            raise ValueError(
                f"this model's source is {modality_name(source)}, not text, so it does not translate text; "
                "read files with transcribe (mmattn-transcribe)"
            )

    def configure_prediction(self, **decoding: Any) -> None:
        """Decoding options of `predict_step` over the module's own (method, beam_size, length_penalty, ...)."""
        unknown = sorted(set(decoding) - set(DECODING_KEYS))
        if unknown:
            raise ValueError(f"unknown decoding options {unknown}; allowed are {list(DECODING_KEYS)}")
        self.decoding.update({k: v for k, v in decoding.items() if v is not None})

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """The decoded text of each readable input of a `mmattn.data.predict` batch."""
        if self.decoding.get("oracle_length"):
            raise ValueError("decoding.oracle_length takes each reference's length: it serves evaluation only")
        if batch["inputs"] is None:
            return []
        return [{"output": text} for text in self.tokenizer.decode_tgt_batch(self.generate(batch["inputs"]).tolist())]


def _text_metric_class(name: str, cfg: str | Mapping[str, Any]) -> type[Metric]:
    """The Metric class a `text_metrics` entry names (a dotted path, or a mapping with `class`)."""
    path = cfg if isinstance(cfg, str) else cfg.get("class")
    if not isinstance(path, str):
        raise ValueError(f"module.text_metrics.{name} must be a dotted class path or a mapping with `class`")
    return resolve_class(path, where=f"module.text_metrics.{name}", kinds=(Metric,))


def _encode_source(tokenizer: Any, text: str) -> Tensor:
    return torch.tensor(tokenizer.encode_src_batch([text])[0])


def pad_ids(rows: Sequence[Tensor], pad_id: int) -> Tensor:
    """Id rows of different lengths as one batch [B, max length], padded on the right with `pad_id`."""
    return pad_sequence(list(rows), batch_first=True, padding_value=pad_id)
