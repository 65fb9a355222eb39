"""Audio-visual tasks: inputs of two modalities per example. The fusion demo pairs a shape image with a DTMF key tone
whose label, (shape + key) mod n, needs both."""

from .datamodule import MODALITIES, ShapeToneDataModule, ShapeToneDataset
from .pairs import PAIR_COLUMNS, Pair, check_pair_counts, draw_pairs, make_pairs, read_pairs, write_pairs

__all__ = [
    "MODALITIES",
    "PAIR_COLUMNS",
    "Pair",
    "ShapeToneDataModule",
    "ShapeToneDataset",
    "check_pair_counts",
    "draw_pairs",
    "make_pairs",
    "read_pairs",
    "write_pairs",
]
