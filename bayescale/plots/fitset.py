"""Small multiples of a :class:`~bayescale.inference.fitset.FitSet`: one panel per group."""

from __future__ import annotations

import math

from ._style import pyplot

__all__ = ["plot_fitset"]


def plot_fitset(fitset, keys=None, *, ncols: int = 4, prob: float = 0.9, extend: float = 10.0, max_panels: int = 24):
    """One :func:`~bayescale.plots.bands.plot_bands` panel per group (its runs, median, law and predictive
    bands, extended ``extend`` times past its largest run), titled by the group and its gate verdict.

    ``keys``: the groups to draw (default: the fitted groups in order, at most ``max_panels``; the
    title says how many were left out).  Groups that were not fitted are skipped.
    """
    from ..errors import BayescaleError
    from ..inference.fitset import key_label
    from .bands import plot_bands

    fitted = [k for k in fitset.all_keys if k in fitset.fits]
    if keys is None:
        keys = fitted[:max_panels]
    else:
        keys = list(keys)
        unknown = [k for k in keys if k not in fitset.fits]
        if unknown:
            shown = ", ".join(repr(key_label(k)) for k in fitted[:5]) + (" ..." if len(fitted) > 5 else "")
            raise BayescaleError(f"plot_fitset: no fit for group {key_label(unknown[0])!r}; fitted groups are {shown}")
    if not keys:
        raise BayescaleError("plot_fitset: the fit set has no fitted group to draw")
    if not (isinstance(ncols, int) and ncols >= 1):
        raise BayescaleError(f"ncols must be a positive integer, got {ncols!r}")
    cols = min(ncols, len(keys))
    rows = math.ceil(len(keys) / cols)
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), constrained_layout=True, squeeze=False)
    for ax, key in zip(axes.flat, keys):
        f = fitset.fits[key]
        plot_bands(f, prob=prob, extend=extend, ax=ax)
        ax.get_legend().remove()
        ax.set_title(f"{key_label(key)}\n{'gate passed' if f.diagnostics.passed else 'GATE FAILED'}", fontsize=8,
                     color="black" if f.diagnostics.passed else "#c0392b")
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_size(8)
        ax.yaxis.label.set_size(8)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    left = len(fitted) - len(keys)
    fig.suptitle(f"{fitset.law.name}: {len(keys)} of {len(fitted)} fitted groups"
                 + (f" ({left} not drawn)" if left > 0 else "") + f"; {prob:.0%} law and predictive bands",
                 fontsize=10)
    return fig
