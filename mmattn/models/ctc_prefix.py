"""CTC prefix scores for joint CTC/attention decoding (Watanabe et al., 2017, "Hybrid CTC/Attention Architecture for
End-to-End Speech Recognition", Algorithm 2), batched over hypotheses and every next token.

The CTC prefix probability of a label sequence h is the probability that the CTC output of the utterance *begins* with
h; for h ending in EOS it is the probability that the output *is* h. Beam search adds `log psi(h + c) - log psi(h)`
for each candidate c, so the sum along a hypothesis is its CTC prefix log-probability. Everything is in log space:
per hypothesis g and frame t, `r_n[t]` is the log-probability of the frames up to t emitting g with the last frame
on g's last label, `r_b[t]` the same ending in blank.

Shapes: N hypotheses (sentences x beams), T frames, V labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CTCPrefixScorer", "CTCPrefixState"]


@dataclass
class CTCPrefixState:
    """The forward variables of N prefixes: `r` [T, 2, N] (log r_n, log r_b), `psi` [N] (their prefix
    log-probabilities) and `last` [N] (their last label, -1 for the empty prefix)."""

    r: Tensor
    psi: Tensor
    last: Tensor


class CTCPrefixScorer:
    """Prefix scores of every extension of N prefixes under one utterance batch's CTC posteriors.

    Args:
        log_probs: Log-softmax of the CTC head, [N, T, V] (one row per hypothesis).
        lengths: Frames of each row [N]; frames after it count as blank with probability 1 (they change nothing).
        blank: The blank label.
        eos: The end label: its score is the probability that the output is exactly the prefix.
    """

    def __init__(self, log_probs: Tensor, lengths: Tensor, *, blank: int, eos: int) -> None:
        n, t, v = log_probs.shape
        frames = torch.arange(t, device=log_probs.device)[None, :] < lengths[:, None]  # [N, T]
        # Past its length a row emits blank with probability 1: r_n dies, r_b carries the total unchanged.
        padded = torch.full_like(log_probs, float("-inf"))
        padded[..., blank] = 0.0
        self.x = torch.where(frames[..., None], log_probs, padded).transpose(0, 1).float()  # [T, N, V]
        self.blank, self.eos = blank, eos
        self.frames, self.size, self.vocab = t, n, v

    def initial_state(self) -> CTCPrefixState:
        """The empty prefix of every row: r_n = -inf, r_b = cumulative log-probability of all-blank frames."""
        r = torch.full((self.frames, 2, self.size), float("-inf"), device=self.x.device)
        r[:, 1] = torch.cumsum(self.x[:, :, self.blank], dim=0)
        psi = torch.zeros(self.size, device=self.x.device)
        last = torch.full((self.size,), -1, dtype=torch.long, device=self.x.device)
        return CTCPrefixState(r, psi, last)

    def extend(self, state: CTCPrefixState) -> tuple[Tensor, Tensor]:
        """For every prefix g and label c: log psi(g + c) [N, V] and the forward variables of g + c [T, 2, N, V].

        psi(g + eos) is the probability that the output is g; psi(g + blank) is -inf (blank is no label).
        """
        x, t_len = self.x, self.frames
        r_prev = state.r  # [T, 2, N]
        total_prev = torch.logaddexp(r_prev[:, 0], r_prev[:, 1])  # [T, N]
        # Phi[t]: log-prob of the frames up to t emitting g such that c may start at t + 1 (a repeat needs a blank).
        same = torch.arange(self.vocab, device=x.device)[None, :] == state.last[:, None]  # [N, V]
        phi = torch.where(same[None], r_prev[:, 1, :, None], total_prev[:, :, None])  # [T, N, V]
        r = torch.full((t_len, 2, self.size, self.vocab), float("-inf"), device=x.device)
        empty = state.last < 0  # only the empty prefix may start on frame 0
        r[0, 0] = torch.where(empty[:, None], x[0], torch.full_like(x[0], float("-inf")))
        # psi(g + c) sums, over the frame t where c starts, Phi[t - 1] * p_t(c) (plus frame 0 for the empty prefix).
        starts = [r[0, 0]]
        for t in range(1, t_len):
            start = phi[t - 1] + x[t]
            r[t, 0] = torch.logaddexp(r[t - 1, 0], phi[t - 1]) + x[t]
            r[t, 1] = torch.logaddexp(r[t - 1, 0], r[t - 1, 1]) + x[t, :, self.blank, None]
            starts.append(start)
        psi = torch.logsumexp(torch.stack(starts), dim=0)  # [N, V]
        psi[:, self.eos] = total_prev[-1]
        psi[:, self.blank] = float("-inf")
        return psi, r

    def select(self, r: Tensor, psi: Tensor, rows: Tensor, labels: Tensor) -> CTCPrefixState:
        """The state of the chosen extensions: prefix `rows[i]` extended by `labels[i]`."""
        return CTCPrefixState(r[:, :, rows, labels], psi[rows, labels], labels.clone())
