"""Attention rollout against its closed form for uniform attention, and against a hand-computed two-layer product."""

import pytest
import torch

from mmattn.nn import Encoder, capture_attention
from mmattn.viz import attention_rollout


@pytest.mark.parametrize("layers", [1, 2, 5])
def test_uniform_attention_rolls_out_to_its_closed_form(layers: int) -> None:
    n = 6
    uniform = torch.full((2, 3, n, n), 1 / n)
    # A_hat = (I + U) / 2 with U idempotent, so A_hat^L = 0.5^L I + (1 - 0.5^L) U.
    expected = 0.5**layers * torch.eye(n) + (1 - 0.5**layers) * torch.full((n, n), 1 / n)
    out = attention_rollout([uniform] * layers)
    torch.testing.assert_close(out, expected.expand(2, n, n))
    # Without the residual term uniform attention stays uniform.
    torch.testing.assert_close(attention_rollout([uniform] * layers, residual=False), uniform[:, 0])


def test_two_layers_by_hand_and_head_fusion() -> None:
    a1 = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [1.0, 0.0]]]])  # [1, 2 heads, 2, 2]
    a2 = torch.tensor([[[[0.2, 0.8], [0.6, 0.4]], [[0.2, 0.8], [0.6, 0.4]]]])
    eye = torch.eye(2)
    m1 = 0.5 * a1.mean(1)[0] + 0.5 * eye  # rows already sum to 1
    m2 = 0.5 * a2.mean(1)[0] + 0.5 * eye
    torch.testing.assert_close(attention_rollout([a1, a2])[0], m2 @ m1)
    m1max = 0.5 * a1.amax(1)[0] + 0.5 * eye
    m1max = m1max / m1max.sum(-1, keepdim=True)
    torch.testing.assert_close(attention_rollout([a1], head_fusion="max")[0], m1max)
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout([a1], head_fusion="median")
    with pytest.raises(ValueError, match="at least one layer"):
        attention_rollout([])
    with pytest.raises(ValueError, match="one shape"):
        attention_rollout([a1, torch.ones(1, 2, 3, 3)])


def test_rollout_of_a_real_encoder_is_row_stochastic() -> None:
    torch.manual_seed(0)
    enc = Encoder(16, 3, 2).eval()
    with capture_attention(enc) as maps:
        enc(torch.randn(2, 5, 16))
    out = attention_rollout([m[0] for m in maps.values()])
    assert out.shape == (2, 5, 5)
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 5))
