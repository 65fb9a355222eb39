"""DualEncoder: two towers, any modality each, projected into one embedding space (CLIP, CLAP, SigLIP).

Shapes: B examples, D_t a tower's feature width, E the shared embedding width.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mmattn.modality import InputEmbedding, modality_name, require_embedding

__all__ = ["CLIP_LOGIT_SCALE", "DualEncoder", "MAX_LOGIT_SCALE"]

# CLIP's initial temperature 0.07, as the log of the logit scale 1/0.07, and its cap at a scale of 100.
CLIP_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100)


class DualEncoder(nn.Module):
    """Two towers, each embedding its own input, projected to `embed_dim` and L2-normalised; the similarity of two
    embeddings is their dot product times a learned scale (plus a learned bias, for the sigmoid loss).

    A tower is any module whose `embed` attribute is an `mmattn.modality.InputEmbedding` (what its input is: its
    reader, renderer, batch handling) and whose forward maps a batch of that input to pooled features [B, D_t],
    typically `EncoderClassifier(num_classes=0, embed=...)`. Each tower runs once at construction on its embedding's
    `example_input` (in eval mode, without gradients, with the random state restored): that measures D_t and checks
    the tower's output, so a wrong tower stops here rather than in the first training step.

    The network holds no loss: the module chooses it (`mmattn.lit.ContrastiveModule`), and the sigmoid loss needs
    `init_logit_bias`.

    Args:
        towers: Exactly two towers by name; the names are the batch keys of their inputs.
        embed_dim: Width E of the shared embedding space.
        init_logit_scale: Initial log of the logit scale: log(1/0.07) as CLIP, log(10) as SigLIP.
        init_logit_bias: Initial learned logit bias (SigLIP: -10); None = no bias.
        max_logit_scale: Cap of the log scale (CLIP: log(100)), so the logits cannot grow without bound.
        proj_bias: Bias of the projections (CLIP has none).

    Raises:
        ValueError: Not exactly two towers, a name unfit for a module, `embed_dim` < 1, or a tower without an
            `InputEmbedding` or whose output is not [B, D_t].
    """

    def __init__(
        self,
        towers: Mapping[str, nn.Module],
        embed_dim: int,
        *,
        init_logit_scale: float = CLIP_LOGIT_SCALE,
        init_logit_bias: float | None = None,
        max_logit_scale: float = MAX_LOGIT_SCALE,
        proj_bias: bool = False,
    ) -> None:
        super().__init__()
        names = [str(name) for name in towers]
        if len(names) != 2:
            raise ValueError(f"DualEncoder takes exactly two towers, got {len(names)}: {names}")
        for name in names:
            if not name or "." in name:
                raise ValueError(f"tower name {name!r} must be a non-empty name without '.'")
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {embed_dim}")
        self.names: tuple[str, str] = (names[0], names[1])
        self.towers = nn.ModuleDict()
        widths = {}
        for name, tower in towers.items():
            if not isinstance(tower, nn.Module):
                raise ValueError(f"tower {name!r} is a {type(tower).__name__}, not a torch module")
            require_embedding(getattr(tower, "embed", None), f"DualEncoder tower {name!r}: its embed")
            widths[str(name)] = _feature_width(str(name), tower)
            self.towers[str(name)] = tower
        self.embed_dim = embed_dim
        self.proj = nn.ModuleDict({name: nn.Linear(widths[name], embed_dim, bias=proj_bias) for name in names})
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self.logit_bias = None if init_logit_bias is None else nn.Parameter(torch.tensor(float(init_logit_bias)))
        self.max_logit_scale = float(max_logit_scale)
        for proj in self.proj.values():
            # CLIP's init of the projections: std = width^-0.5.
            nn.init.normal_(proj.weight, std=proj.in_features**-0.5)
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)

    def embedding(self, name: str) -> InputEmbedding:
        """The input embedding of tower `name` (its modality: reader, renderer, batch handling).

        Raises:
            ValueError: No tower of that name.
        """
        return self.tower(name).embed

    def tower(self, name: str) -> nn.Module:
        """Tower `name`, or a one-line error listing the towers."""
        if name not in self.towers:
            raise ValueError(f"no tower {name!r}; this DualEncoder's towers are {list(self.names)}")
        return self.towers[name]

    def scale(self) -> Tensor:
        """The logit scale exp(logit_scale), its log capped at `max_logit_scale`."""
        return self.logit_scale.clamp(max=self.max_logit_scale).exp()

    def logits(self, a: Tensor, b: Tensor) -> Tensor:
        """Scaled similarities [N, M] of normalised embeddings a [N, E] and b [M, E] (plus the bias, if any)."""
        out = self.scale() * a @ b.T
        return out if self.logit_bias is None else out + self.logit_bias

    def encode(self, name: str, x: Any) -> Tensor:
        """L2-normalised embeddings [B, E] of a batch of tower `name`'s input."""
        features = self.tower(name)(x)  # [B, D_t]
        return nn.functional.normalize(self.proj[name](features), dim=-1)

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Tensor]:
        """Normalised embeddings [B, E] of every tower whose name is a key of `inputs` (other keys are ignored).

        Raises:
            ValueError: `inputs` holds no tower's input.
        """
        present = [name for name in self.names if name in inputs]
        if not present:
            raise ValueError(f"inputs hold none of the towers {list(self.names)} (keys: {sorted(map(str, inputs))})")
        return {name: self.encode(name, inputs[name]) for name in present}

    def example_input(self, batch_size: int) -> dict[str, Any]:
        """A random input of each tower, by name."""
        return {name: self.embedding(name).example_input(batch_size) for name in self.names}

    def no_weight_decay(self) -> set[str]:
        """The towers' own no-decay names (and their embeddings'), under their prefixes, and the logit scale/bias."""
        names = {"logit_scale", "logit_bias"}
        for name, tower in self.towers.items():
            for prefix, part in ((f"towers.{name}.", tower), (f"towers.{name}.embed.", tower.embed)):
                # timm's convention, which mmattn.lit.optim reads on the net; towers nest it, so pass it on.
                if callable(getattr(part, "no_weight_decay", None)):
                    names |= {prefix + n for n in part.no_weight_decay()}
        return names


def _feature_width(name: str, tower: nn.Module) -> int:
    """D_t of a tower, from one run on its embedding's example input; a one-line error unless it gives [B, D_t]."""
    embed = tower.embed
    was_training = tower.training
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        tower.eval()
        try:
            out = tower(embed.example_input(2))
        finally:
            tower.train(was_training)
    if not torch.is_tensor(out) or out.ndim != 2 or out.shape[0] != 2:
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(
            f"tower {name!r} ({modality_name(embed)}) must map a batch to pooled features [batch, width], got {got} "
            "for a batch of 2; use EncoderClassifier with num_classes=0"
        )
    return int(out.shape[1])
