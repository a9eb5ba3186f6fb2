"""Model comparison and backtest figures.

* :func:`plot_compare`: elpd_loo of each fit with its standard error (circles)
  and, for every fit but the best, the difference to the best with the
  standard error of the difference (triangles, drawn at the fit's elpd);
  stacking weights in the labels.
* :func:`plot_backtest`: per law, the relative error of every held-out run's
  predictive median against its observed loss, with the central predictive
  intervals as bars on the same relative scale (a bar crossing zero covers
  its run).
"""

from __future__ import annotations

import numpy as np

from ..errors import BayescaleError
from ..predict import prob_label
from ._style import DATA_COLOR, LAW_COLOR, new_axes

__all__ = ["plot_backtest", "plot_compare"]

_COLORS = ("#1f5fa8", "#c0392b", "#2e8b57", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#b8860b")


def plot_compare(comparison, ax=None):
    """Horizontal elpd_loo ± SE per fit (best at the top), with elpd differences ± dSE."""
    table = comparison.table
    fig, ax = new_axes(ax, figsize=(7.0, 1.8 + 0.6 * len(table)))
    y = np.arange(len(table))[::-1].astype(float)
    elpd, se = table["elpd_loo"].to_numpy(), table["se"].to_numpy()
    ax.errorbar(elpd, y, xerr=se, fmt="o", color=LAW_COLOR, capsize=4, ms=6,
                label="elpd_loo ± SE")
    if len(table) > 1:
        ax.errorbar(elpd[1:], y[1:] - 0.25, xerr=table["dse"].to_numpy()[1:], fmt="^", color=DATA_COLOR,
                    capsize=3, ms=5, alpha=0.8, label="difference to the best ± SE of the difference")
    ax.axvline(elpd[0], color="#999999", ls="--", lw=1)
    labels = [f"{name}\n(weight {w:.2f})" for name, w in zip(table.index, table["weight"])]
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(-0.8, len(table) - 0.4)
    ax.set_xlabel("elpd_loo (expected log predictive density; higher is better)")
    ax.set_title(f"PSIS-LOO comparison on {comparison.n_runs} runs (weights: stacking)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False)
    return fig


def plot_backtest(result, *, prob: float | None = None, ax=None):
    """Per law (one panel each): the error of every held-out run's prediction, relative to its observed loss.

    x: the observed loss; y: ``predicted / observed - 1`` in percent, where
    predicted is the posterior predictive median; bars: the central ``prob``
    predictive interval (default: the widest of the backtest's) and, thicker,
    the narrowest one, on the same relative scale.  A bar that crosses the
    zero line covers its run.  The axes span the runs and their bars, nothing
    else; there is no jitter (each law has its own panel).  ``ax``: one axis
    per law (a sequence), or None.
    """
    table = result.table
    probs = tuple(result.probs)
    if prob is None:
        prob = max(probs)
    if prob not in probs:
        raise BayescaleError(f"prob {prob!r} is not one of the backtest's intervals {list(probs)}")
    wide, narrow = prob_label(prob), prob_label(min(probs))
    laws = list(dict.fromkeys(table["law"]))
    from ._style import pyplot

    if ax is None:
        fig, axes = pyplot().subplots(1, len(laws), figsize=(1.2 + 3.9 * len(laws), 4.4), sharey=True,
                                      constrained_layout=True, squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(np.atleast_1d(ax))
        if len(axes) != len(laws):
            raise BayescaleError(f"plot_backtest needs one axis per law ({len(laws)}), got {len(axes)}")
        fig = axes[0].figure
    lows, highs = [], []
    for i, (law, a) in enumerate(zip(laws, axes)):
        part = table[table["law"] == law]
        obs = part["observed"].to_numpy(float)
        rel = lambda col: 100 * (part[col].to_numpy(float) / obs - 1)   # noqa: E731
        pred = rel("predicted")
        lo, hi = rel(f"lower_{wide}"), rel(f"upper_{wide}")
        color = _COLORS[i % len(_COLORS)]
        a.errorbar(obs, pred, yerr=np.clip([pred - lo, hi - pred], 0, None), fmt="o", ms=4, color=color, lw=0.8,
                   capsize=2, alpha=0.9, label=f"median, {wide}% interval")
        if narrow != wide:
            nlo, nhi = rel(f"lower_{narrow}"), rel(f"upper_{narrow}")
            a.errorbar(obs, pred, yerr=np.clip([pred - nlo, nhi - pred], 0, None), fmt="none", color=color,
                       lw=2.4, alpha=0.9, label=f"{narrow}% interval")
        a.axhline(0, color="#666666", ls="--", lw=1, label="prediction = observation")
        span = obs.max() - obs.min()
        pad = 0.06 * span if span > 0 else 0.01 * obs.max()
        a.set_xlim(obs.min() - pad, obs.max() + pad)
        a.grid(True, alpha=0.3)
        s = result.summary.loc[law]
        a.set_title(f"{law}: median ARE {100 * s['median_are']:.2g}%,\n{wide}% coverage "
                    f"{100 * s[f'coverage_{wide}']:.0f}% of {int(s['n_test'])} runs", fontsize=9)
        a.set_xlabel("observed loss (held-out runs)")
        lows.append(np.min(lo))
        highs.append(np.max(hi))
    low, high = min(min(lows), 0.0), max(max(highs), 0.0)
    pad = 0.08 * (high - low) if high > low else 1.0
    axes[0].set_ylim(low - pad, high + pad)
    axes[0].set_ylabel("prediction error: predicted / observed - 1 (%)")
    axes[-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"Backtest, held out {result.holdout}: bars crossing the dashed line cover their run", fontsize=9)
    return fig
