"""Calibration figure: the LOO-PIT of each fit as the difference of its ECDF from the uniform one.

A calibrated fit's leave-one-out PIT values are close to uniform, so
``ECDF(u) - u`` stays near 0, inside the grey band (the approximate 95%
Kolmogorov-Smirnov band for that many runs).  A curve that first rises
above 0 and then falls below it means too many runs in the tails: intervals
too narrow; one that first falls and then rises means runs bunched in the
middle: intervals too wide; one that stays above (below) 0 means runs below
(above) their predictions.
"""

from __future__ import annotations

import numpy as np

from ._style import new_axes

__all__ = ["plot_loo_pit"]

_COLORS = ("#1f5fa8", "#c0392b", "#2e8b57", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#b8860b")


def plot_loo_pit(fits, names=None, ax=None):
    """``ECDF(u) - u`` of the LOO-PIT values of each fit in ``fits``, with the 95% band."""
    from ..evidence.predictive import _ks_bound, loo_pit
    from ..result import Fit

    fits = [fits] if isinstance(fits, Fit) else list(fits)
    names = [f.law.name for f in fits] if names is None else list(names)
    fig, ax = new_axes(ax, figsize=(6.4, 3.6))
    u = np.linspace(0, 1, 201)
    n = len(fits[0].runs)
    band = _ks_bound(n)
    ax.fill_between(u, -band, band, color="#999999", alpha=0.2, lw=0,
                    label=f"approximate 95% band for {n} uniform values")
    ax.axhline(0, color="#666666", lw=0.8)
    for i, (f, name) in enumerate(zip(fits, names)):
        pit = np.sort(loo_pit(f))
        ecdf = np.searchsorted(pit, u, side="right") / pit.size
        ax.step(u, ecdf - u, where="post", color=_COLORS[i % len(_COLORS)], lw=1.5, label=name)
    ax.set_xlim(0, 1)
    top = max(band * 1.6, max(abs(line.get_ydata()).max() for line in ax.lines[1:]) * 1.15)
    ax.set_ylim(-top, top)
    ax.set_xlabel("LOO-PIT value u (P(new run's loss <= observed), each run left out)")
    ax.set_ylabel("ECDF(u) - u")
    ax.set_title("Calibration on the fitted runs: LOO-PIT (0 = calibrated)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig
