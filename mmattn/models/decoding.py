"""Batched greedy and beam-search decoding of an `EncoderDecoder` with the decoder's KV cache.

The source is encoded once; cross-attention keys/values are computed at the first step and kept in the cache, and every
step feeds only the newest token. Shape legend: B sentences, K beams, T target steps, V vocabulary.

Against transformers' `generate` (checked in tests/models/test_hf_marian.py): `greedy_decode` is
`generate(do_sample=False, num_beams=1, forced_eos_token_id=eos)` and `beam_search` is
`generate(num_beams=K, early_stopping=True, length_penalty=lp, forced_eos_token_id=eos)` with
`forced_eos_score="zero"`, both with `max_len_a=0, max_len_b=n` as `max_new_tokens=n`; `banned_ids` is
`bad_words_ids` of single tokens (or `suppress_tokens`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from .ctc_prefix import CTCPrefixScorer

__all__ = ["beam_search", "ctc_greedy_decode", "greedy_decode", "max_lengths"]


def max_lengths(src_lengths: Tensor, max_len_a: float, max_len_b: int, hard_max: int | None = None) -> Tensor:
    """Per-sentence output budgets `ceil(a * source length + b)` (EOS included), capped by `hard_max`."""
    limits = torch.ceil(src_lengths.float() * max_len_a + max_len_b).long().clamp_min(1)
    return limits if hard_max is None else limits.clamp_max(hard_max)


def _limits(
    memory: Tensor,
    mask: Tensor | None,
    max_len_a: float,
    max_len_b: int,
    hard_max: int | None,
    exact_lengths: Tensor | None,
) -> Tensor:
    """Each sentence's last step: its oracle length, or its budget from the source length."""
    if exact_lengths is None:
        return max_lengths(_source_lengths(memory, mask), max_len_a, max_len_b, hard_max)
    if exact_lengths.shape != (memory.shape[0],) or bool((exact_lengths < 1).any()):
        raise ValueError(f"exact_lengths must be [B] = [{memory.shape[0]}] lengths >= 1, got {exact_lengths.tolist()}")
    return exact_lengths.to(memory.device).long()


def _source_lengths(memory: Tensor, mask: Tensor | None) -> Tensor:
    # Counted on the encoder output, not the source batch: a speech front end subsamples its frames, and its
    # source is a dict of waveforms and lengths anyway.
    if mask is None:
        return torch.full((memory.shape[0],), memory.shape[1], device=memory.device)
    return (~mask).sum(dim=1)


@torch.no_grad()
def greedy_decode(
    model,
    src: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    hard_max: int | None = None,
    use_cache: bool = True,
    banned_ids: Sequence[int] = (),
    exact_lengths: Tensor | None = None,
) -> Tensor:
    """Most likely next token at every step until EOS or the length budget; returns ids [B, T] (EOS kept, then pad).

    Args:
        model: An `EncoderDecoder` (anything with `encode`, `decode` and `init_cache`).
        src: Source batch, e.g. ids [B, S].
        bos_id: Start token fed first.
        eos_id: End token; a sentence stops after producing it.
        pad_id: Filler after EOS in the returned tensor.
        max_len_a: Output budget per source token.
        max_len_b: Output budget added to that (budget = ceil(a * source length + b), EOS included).
        hard_max: Cap on every budget.
        use_cache: Feed one token per step through the KV cache (False recomputes the whole prefix each step;
            the result is the same, only slower: kept for tests and benchmarks).
        banned_ids: Tokens never chosen (Marian's pad, which its configs ban through `bad_words_ids`); EOS at the
            budget is still forced.
        exact_lengths: Oracle output lengths [B] (EOS included): EOS is banned before them and forced at them, so
            the model decides what to emit but not when to stop (Newman et al., 2020); replaces the budget.
    """
    memory, mask = model.encode(src)
    b = memory.shape[0]
    limits = _limits(memory, mask, max_len_a, max_len_b, hard_max, exact_lengths)
    steps = int(limits.max())
    cache = model.init_cache(b, steps, memory) if use_cache else None
    tokens = torch.full((b, 1), bos_id, dtype=torch.long, device=memory.device)
    done = torch.zeros(b, dtype=torch.bool, device=memory.device)
    for t in range(steps):
        step_in = tokens[:, -1:] if use_cache else tokens
        logits = model.decode(step_in, memory, mask, cache=cache)[:, -1]
        if banned_ids:
            logits[:, list(banned_ids)] = float("-inf")
        if exact_lengths is not None:
            logits[:, eos_id] = logits[:, eos_id].masked_fill(limits > t + 1, float("-inf"))
        nxt = logits.argmax(dim=-1)
        # The budget includes EOS: a sentence at its last allowed step is closed with EOS.
        nxt = torch.where(limits == t + 1, torch.full_like(nxt, eos_id), nxt)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == eos_id
        if bool(done.all()):
            break
    return tokens[:, 1:]


@torch.no_grad()
def beam_search(
    model,
    src: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    hard_max: int | None = None,
    banned_ids: Sequence[int] = (),
    forced_eos_score: Literal["logprob", "zero"] = "logprob",
    ctc_weight: float = 0.0,
    blank_id: int | None = None,
    exact_lengths: Tensor | None = None,
) -> Tensor:
    """Beam search (fairseq's rules): returns the best finished hypothesis per sentence, ids [B, T] (EOS, then pad).

    Each step extends the K live hypotheses by their 2K best continuations; an EOS among the best K finishes a
    hypothesis, scored by its log-probability / length ** `length_penalty` (length counts EOS). A sentence stops when
    K hypotheses have finished; live ones are closed with EOS at the length budget. Beam size 1 is greedy decoding.

    Args:
        model: An `EncoderDecoder` (anything with `encode`, `decode` and `init_cache`).
        src: Source batch, e.g. ids [B, S].
        bos_id: Start token.
        eos_id: End token.
        pad_id: Filler after EOS in the returned tensor.
        beam_size: Hypotheses kept per sentence.
        length_penalty: Exponent of the length normalisation (0 = raw log-probabilities, favouring short outputs).
        max_len_a: Output budget per source token.
        max_len_b: Output budget added to that.
        hard_max: Cap on every budget.
        banned_ids: Tokens never chosen: their log-probability becomes -inf after the softmax and the others keep
            theirs (not renormalised), as transformers' `bad_words_ids` / `suppress_tokens` do in beam search.
        forced_eos_score: What the EOS forced at the length budget adds to a hypothesis' score: "logprob" (its
            log-probability, fairseq) or "zero" (transformers' `forced_eos_token_id` sets it to 0).
        ctc_weight: Joint CTC/attention decoding (Watanabe et al., 2017): each token scores `ctc_weight * CTC prefix
            log-probability + (1 - ctc_weight) * attention log-probability` (`mmattn.models.ctc_prefix`), so a
            hypothesis that skips or repeats words against the encoder's CTC alignment loses; 0 = attention only.
            Needs a model with `ctc_logits` (`EncoderDecoder(ctc=True)`).
        blank_id: CTC's blank label (the pad id in `Seq2SeqModule`); required with `ctc_weight` > 0.
        exact_lengths: Oracle output lengths [B] (EOS included), as in `greedy_decode`.

    Raises:
        ValueError: `beam_size` < 1, an unknown `forced_eos_score`, or a `ctc_weight` outside [0, 1] (or without
            `blank_id`).
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if not 0.0 <= ctc_weight <= 1.0 or (ctc_weight > 0 and blank_id is None):
        raise ValueError(f"ctc_weight must be in [0, 1] and needs blank_id, got {ctc_weight} and {blank_id}")
    if forced_eos_score not in ("logprob", "zero"):
        raise ValueError(f"forced_eos_score must be 'logprob' or 'zero', got {forced_eos_score!r}")
    k = beam_size
    memory, mask = model.encode(src)
    b, device = memory.shape[0], memory.device
    limits = _limits(memory, mask, max_len_a, max_len_b, hard_max, exact_lengths)
    steps = int(limits.max())
    # Every sentence's encoder output repeated for its K beams: [B*K, S, D].
    memory = memory.repeat_interleave(k, dim=0)
    mask = None if mask is None else mask.repeat_interleave(k, dim=0)
    ctc = None
    if ctc_weight > 0:
        log_probs = torch.log_softmax(model.ctc_logits(memory).float(), dim=-1)
        ctc = CTCPrefixScorer(log_probs, _source_lengths(memory, mask), blank=blank_id, eos=eos_id)
        ctc_state = ctc.initial_state()
    cache = model.init_cache(b * k, steps, memory)
    tokens = torch.full((b * k, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.zeros(b, k, device=device)
    scores[:, 1:] = float("-inf")  # all beams start equal: keep one, or the first step yields K copies
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    active = torch.ones(b, dtype=torch.bool, device=device)
    base = torch.arange(b, device=device)[:, None] * k  # row offset of each sentence in the B*K batch
    for t in range(steps):
        logp = torch.log_softmax(model.decode(tokens[:, -1:], memory, mask, cache=cache)[:, -1].float(), dim=-1)
        if ctc is not None:
            psi, ctc_r = ctc.extend(ctc_state)
            # The CTC term of a token is what it adds to the hypothesis' prefix log-probability (a dead beam's
            # -inf minus -inf would be NaN, which topk ranks first).
            alive = torch.isfinite(ctc_state.psi)[:, None]
            ctc_step = torch.where(alive, psi - ctc_state.psi[:, None], torch.full_like(psi, float("-inf")))
            logp = ctc_step if ctc_weight == 1 else (1 - ctc_weight) * logp + ctc_weight * ctc_step
        if banned_ids:
            logp[:, list(banned_ids)] = float("-inf")
        v = logp.shape[-1]
        last = limits == t + 1  # [B]: sentences whose budget ends at this step
        # At the budget only EOS may follow.
        logp = logp.view(b, k, v)
        if exact_lengths is not None:
            logp[..., eos_id] = logp[..., eos_id].masked_fill((limits > t + 1)[:, None], float("-inf"))
        forced = torch.full_like(logp, float("-inf"))
        forced[..., eos_id] = logp[..., eos_id] if forced_eos_score == "logprob" else 0.0
        logp = torch.where(last[:, None, None], forced, logp)
        cand = (scores[:, :, None] + logp).view(b, k * v)
        top_scores, top_idx = cand.topk(min(2 * k, k * v), dim=1)  # [B, 2K]
        beam_idx, token_idx = top_idx // v, top_idx % v
        is_eos = token_idx == eos_id
        # Finish EOS candidates ranked among the best K (fairseq's rule; with K=1 this is greedy's stop).
        eos_rows, eos_cols = torch.nonzero(is_eos[:, :k] & active[:, None], as_tuple=True)
        if eos_rows.numel():
            prefixes = tokens[(base[:, 0][eos_rows] + beam_idx[eos_rows, eos_cols])].tolist()
            for row, col, prefix in zip(eos_rows.tolist(), eos_cols.tolist(), prefixes):
                if len(finished[row]) < k and math.isfinite(top_scores[row, col].item()):
                    hyp = prefix[1:] + [eos_id]
                    finished[row].append((top_scores[row, col].item() / len(hyp) ** length_penalty, hyp))
        active &= torch.tensor([len(f) < k for f in finished], device=device) & ~last
        if not bool(active.any()):
            break
        # The K best non-EOS candidates live on (2K candidates always hold K of them).
        keep_score = top_scores.masked_fill(is_eos, float("-inf"))
        order = keep_score.topk(k, dim=1).indices  # [B, K]
        scores = keep_score.gather(1, order)
        src_rows = (base + beam_idx.gather(1, order)).view(-1)
        cache.reorder(src_rows)
        new_tokens = token_idx.gather(1, order).view(-1)
        if ctc is not None:
            ctc_state = ctc.select(ctc_r, psi, src_rows, new_tokens)
        tokens = torch.cat([tokens[src_rows], new_tokens[:, None]], dim=1)
    best = [max(f, key=lambda h: h[0])[1] if f else [eos_id] for f in finished]
    # Every hypothesis ends with EOS, so no row is empty.
    return pad_sequence([torch.tensor(h, device=device) for h in best], batch_first=True, padding_value=pad_id)


@torch.no_grad()
def ctc_greedy_decode(model, src: Tensor, *, blank_id: int, eos_id: int, pad_id: int = 0) -> Tensor:
    """CTC best path of the encoder's CTC head: most likely label per frame, repeats merged, blanks dropped.

    One encoder pass and no decoder steps, so this is the fast path of a joint CTC/attention model. Returns ids
    [B, T] in the layout of `greedy_decode` (each row closed with EOS, then pad).

    Args:
        model: An `EncoderDecoder` built with `ctc=True` (anything with `encode` and `ctc_logits`).
        src: Source batch.
        blank_id: The CTC blank label (the pad id in `Seq2SeqModule`).
        eos_id: End token appended to every row.
        pad_id: Filler after EOS.
    """
    memory, mask = model.encode(src)
    logits = model.ctc_logits(memory)
    # EOS is never a CTC training label (the targets are the transcript alone), so it is never emitted either.
    logits[..., eos_id] = float("-inf")
    best = logits.argmax(dim=-1)  # [B, S]
    # A frame emits when it is no blank and differs from the frame before it (CTC's collapse rule).
    emit = best != blank_id
    emit[:, 1:] &= best[:, 1:] != best[:, :-1]
    if mask is not None:
        emit &= ~mask
    rows = [torch.cat([b[e], b.new_tensor([eos_id])]) for b, e in zip(best, emit)]
    return pad_sequence(rows, batch_first=True, padding_value=pad_id)
