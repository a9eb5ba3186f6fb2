"""Model comparison and backtest figures.

* :func:`plot_compare`: elpd_loo of each fit with its standard error (circles)
  and, for every fit but the best, the difference to the best with the
  standard error of the difference (triangles, drawn at the fit's elpd);
  stacking weights in the labels.
* :func:`plot_backtest`: predicted against observed for every held-out run,
  log-log, with the central posterior predictive intervals as bars and the
  line ``predicted = observed``.
"""

from __future__ import annotations

import numpy as np

from ..errors import BayescaleError
from ..predict import prob_label
from ._style import DATA_COLOR, LAW_COLOR, new_axes, plain_log_ticks

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
    """Predicted vs observed (log-log) for every held-out run, one colour per law.

    Bars: the central ``prob`` posterior predictive interval (default: the
    widest of the backtest's intervals) and, thicker, the narrowest one.
    """
    table = result.table
    probs = tuple(result.probs)
    if prob is None:
        prob = max(probs)
    if prob not in probs:
        raise BayescaleError(f"prob {prob!r} is not one of the backtest's intervals {list(probs)}")
    wide, narrow = prob_label(prob), prob_label(min(probs))
    fig, ax = new_axes(ax, figsize=(6.0, 5.5))
    laws = list(dict.fromkeys(table["law"]))
    for i, law in enumerate(laws):
        part = table[table["law"] == law]
        obs, pred = part["observed"].to_numpy(), part["predicted"].to_numpy()
        color = _COLORS[i % len(_COLORS)]
        # a small horizontal jitter (in log space) keeps several laws' bars apart
        shift = 10 ** (0.004 * (i - (len(laws) - 1) / 2))
        err = [pred - part[f"lower_{wide}"].to_numpy(), part[f"upper_{wide}"].to_numpy() - pred]
        s = result.summary.loc[law]
        label = (f"{law}: median ARE {s['median_are']:.3g}, {wide}% coverage "
                 f"{s[f'coverage_{wide}']:.2f} (n={int(s['n_test'])})")
        ax.errorbar(obs * shift, pred, yerr=np.clip(err, 0, None), fmt="o", ms=4, color=color, lw=0.8,
                    capsize=2, alpha=0.85, label=label)
        if narrow != wide:
            nerr = [pred - part[f"lower_{narrow}"].to_numpy(), part[f"upper_{narrow}"].to_numpy() - pred]
            ax.errorbar(obs * shift, pred, yerr=np.clip(nerr, 0, None), fmt="none", color=color, lw=2.2,
                        alpha=0.85)
    lo = min(table["observed"].min(), table[f"lower_{wide}"].min())
    hi = max(table["observed"].max(), table[f"upper_{wide}"].max())
    lo, hi = lo / 1.05, hi * 1.05
    ax.plot([lo, hi], [lo, hi], color="#999999", ls="--", lw=1, label="predicted = observed")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    if hi / lo < 30:
        plain_log_ticks(ax.xaxis)
        plain_log_ticks(ax.yaxis)
    ax.set_xlabel("observed (held-out runs)")
    ax.set_ylabel("predicted (posterior predictive median)")
    bars = f"bars: {wide}% predictive interval" + (f" (thick: {narrow}%)" if narrow != wide else "")
    ax.set_title(f"Backtest, held out {result.holdout}\n{bars}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return fig
