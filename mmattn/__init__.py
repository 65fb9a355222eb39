"""mmattn: a multi-modal Transformer framework on PyTorch Lightning."""

__version__ = "0.1.0"
