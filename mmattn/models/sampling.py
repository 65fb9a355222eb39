"""Sampling from a decoder-only language model on its KV cache: temperature, top-k and nucleus (top-p) filtering.

The prompt is run through the model once and its keys/values cached; each step then feeds only the newest token.
`use_cache=False` recomputes the whole prefix every step (same tokens, quadratic cost: kept for tests and benchmarks).
Randomness comes only from `generator`, so a seeded generator reproduces the samples. Shape legend: B sequences,
P prompt tokens, V vocabulary.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

__all__ = ["filter_logits", "sample_tokens"]


def filter_logits(logits: Tensor, *, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Logits [B, V] with every token outside the top `top_k` and outside the nucleus of mass `top_p` set to -inf.

    The nucleus (Holtzman et al., 2020) is the smallest set of most likely tokens whose probabilities sum to at
    least `top_p`; the most likely token always stays.

    Raises:
        ValueError: `top_k` < 1 or `top_p` outside (0, 1].
    """
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        if top_k < logits.shape[-1]:
            kth = logits.topk(top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
        if top_p < 1:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(dim=-1)
            # A token is outside when the tokens ranked before it already hold top_p of the mass.
            outside = probs.cumsum(dim=-1) - probs >= top_p
            logits = logits.masked_fill(outside.scatter(-1, order, outside), float("-inf"))
    return logits


def _fit_context(prompt: Tensor, max_new_tokens: int, context_length: int | None) -> tuple[Tensor, int]:
    if context_length is None:
        return prompt, max_new_tokens
    if prompt.shape[1] > context_length - 1:
        keep = max(context_length - 1, 1)
        warnings.warn(
            f"the prompt has {prompt.shape[1]} tokens but the model's context holds {context_length}: keeping its "
            f"last {keep} tokens",
            RuntimeWarning,
            stacklevel=4,
        )
        prompt = prompt[:, -keep:]
    room = context_length - prompt.shape[1]
    if max_new_tokens > room:
        warnings.warn(
            f"max_new_tokens {max_new_tokens} + prompt {prompt.shape[1]} tokens exceed the context of "
            f"{context_length}: sampling {room} tokens",
            RuntimeWarning,
            stacklevel=4,
        )
        max_new_tokens = room
    return prompt, max_new_tokens


@torch.no_grad()
def sample_tokens(
    model,
    prompt: Tensor,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    pad_id: int = 0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Continue every prompt row by up to `max_new_tokens` sampled tokens; returns ids [B, P + n] (prompt included).

    A row stops after it samples `eos_id` (kept), and is padded with `pad_id` after it; sampling stops when every
    row has. A prompt longer than the model's `context_length` is cut from the left with a warning, and the number
    of new tokens is capped by the room left in the context (also with a warning).

    Args:
        model: A `DecoderOnly` (anything with `forward(ids, cache=...)`, `init_cache` and `context_length`).
        prompt: Ids [B, P], P >= 1 (e.g. just the bos id); rows of one call share the prompt length.
        max_new_tokens: Tokens to sample at most.
        temperature: Divides the logits; 0 picks the most likely token (greedy).
        top_k: Sample among the `top_k` most likely tokens only.
        top_p: Sample within the nucleus of probability mass `top_p`.
        eos_id: Token that ends a row.
        pad_id: Filler after a row's eos.
        generator: Random source of the draws (seed it to reproduce samples).
        use_cache: Feed one token per step through the KV cache.

    Raises:
        ValueError: An empty prompt, a negative `max_new_tokens` or `temperature`, or bad filter values.
    """
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be ids [batch, tokens] with at least one token, got shape {tuple(prompt.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    filter_logits(prompt.new_zeros(1, 2, dtype=torch.float), top_k=top_k, top_p=top_p)  # validate once, up front
    prompt, max_new_tokens = _fit_context(prompt, max_new_tokens, getattr(model, "context_length", None))
    b, device = prompt.shape[0], prompt.device
    tokens = prompt
    if max_new_tokens == 0:
        return tokens
    cache = None
    if use_cache:
        dtype = next(model.parameters()).dtype
        cache = model.init_cache(b, prompt.shape[1] + max_new_tokens, dtype=dtype, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    step_in = prompt
    for _ in range(max_new_tokens):
        logits = model(step_in if use_cache else tokens, cache=cache)[:, -1].float()
        if temperature == 0:
            nxt = logits.argmax(dim=-1)
        else:
            probs = filter_logits(logits / temperature, top_k=top_k, top_p=top_p).softmax(dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        step_in = nxt[:, None]
        if eos_id is not None:
            done |= nxt == eos_id
            if bool(done.all()):
                break
    return tokens
