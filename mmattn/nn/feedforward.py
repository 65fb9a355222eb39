"""Position-wise feed-forward blocks: two linear maps with a nonlinearity between, applied to every token alone."""

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Mlp", "SwiGLU"]


class Mlp(nn.Module):
    """fc2(dropout(act(fc1(x)))): the Transformer FFN (ReLU in the paper, GELU in ViT/BERT).

    Args:
        dim: Input and output channels.
        hidden_dim: Inner width (typically 4 * dim).
        act_layer: Activation module class.
        dropout: Dropout after the activation.
        bias: Bias in both linear maps.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        *,
        act_layer: type[nn.Module] = nn.GELU,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = act_layer()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to x [..., dim]."""
        return self.fc2(self.drop(self.act(self.fc1(x))))


class SwiGLU(nn.Module):
    """fc2(dropout(silu(x W) * (x V))) (Shazeer, 2020); W and V are packed into one `fc1` of width 2 * hidden_dim."""

    def __init__(self, dim: int, hidden_dim: int, *, dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * hidden_dim, bias=bias)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to x [..., dim]."""
        gate, value = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(self.drop(F.silu(gate) * value))
