"""Pictures of attention: rollout and attention maps, position encodings, the softmax scale (matplotlib, optional)."""

from mmattn.viz.rollout import attention_rollout

__all__ = ["attention_rollout", "require_matplotlib"]


def require_matplotlib():
    """The `matplotlib.pyplot` module on the file-only Agg backend.

    Raises:
        ImportError: matplotlib is missing; the message names the extra that installs it.
    """
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("the pictures need matplotlib: pip install 'mmattn[viz]' (or pip install matplotlib)") from e
    matplotlib.use("Agg")  # files only: no display is needed or opened
    import matplotlib.pyplot as plt

    return plt
