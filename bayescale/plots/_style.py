"""Shared matplotlib setup: the Agg backend and a consistent look."""

from __future__ import annotations

LAW_COLOR = "#1f5fa8"
PRED_COLOR = "#9ec3ea"
DATA_COLOR = "#333333"
PLAN_COLOR = "#c0392b"


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def new_axes(ax=None, figsize=(7.0, 4.5)):
    plt = pyplot()
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    ax.grid(True, which="major", alpha=0.3)
    return fig, ax


def plain_log_ticks(axis) -> None:
    """Label a log axis with plain numbers (2, 3, 4, not 2x10^0), minor ticks included."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:.3g}")
    axis.set_major_formatter(fmt)
    axis.set_minor_formatter(fmt)
