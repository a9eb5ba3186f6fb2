"""Allocation figures: the N*/D* fan over budgets and the D*/N* histogram at a budget."""

from __future__ import annotations

import warnings

import numpy as np

from ..mixture import members, weighted_quantile
from ..optimal import optimal
from ._style import LAW_COLOR, PLAN_COLOR, new_axes

__all__ = ["plot_allocation", "plot_ratio"]


def plot_allocation(fit, budgets=None, *, prob: float = 0.9, plan: dict | None = None, weights=None,
                    ax=None, **constraints):
    """N* and D* against C (log-log) with central ``prob`` bands; the data's compute range shaded."""
    mems = members(fit, weights)
    c_obs = np.concatenate([m.fit.law.compute(m.fit.runs.input_arrays()) for m in mems])
    if budgets is None:
        top = max(c_obs.max() * 1e4, 6 * plan["N"] * plan["D"] * 10 if plan else 0)
        budgets = np.geomspace(c_obs.min(), top, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alloc = optimal([m.fit for m in mems], budgets, weights=[m.weight for m in mems], **constraints)
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    fig, ax = new_axes(ax)
    for arr, name, color in ((alloc.N, "N* (parameters)", LAW_COLOR), (alloc.D, "D* (tokens)", "#2e8b57")):
        q = weighted_quantile(arr, alloc.weights, [0.5, lo, hi])
        ax.fill_between(alloc.budgets, q[1], q[2], color=color, alpha=0.25, lw=0)
        ax.plot(alloc.budgets, q[0], color=color, lw=1.5, label=f"{name}: median, {100 * prob:g}% band")
    ax.axvspan(c_obs.min(), c_obs.max(), color="#999999", alpha=0.15, lw=0, label="compute range of the runs")
    if plan is not None:
        c = 6 * plan["N"] * plan["D"]
        ax.scatter([c, c], [plan["N"], plan["D"]], marker="D", color=PLAN_COLOR, zorder=4, label="plan")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C (FLOPs)")
    ax.set_ylabel("compute-optimal N*, D*")
    exps = alloc.exponents(prob)
    title = f"{' + '.join(alloc.laws)}: compute-optimal allocation"
    if exps is not None:
        title += f"\nN* ~ C^{exps.loc['a', 'median']:.3f}, D* ~ C^{exps.loc['b', 'median']:.3f} (posterior medians)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def plot_ratio(fit, budget: float, *, plan: dict | None = None, weights=None, ax=None, **constraints):
    """Histogram of the posterior of D*/N* (tokens per parameter) at one budget."""
    mems = members(fit, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alloc = optimal([m.fit for m in mems], [budget], weights=[m.weight for m in mems], **constraints)
    ratio = alloc.ratio[:, 0]
    fig, ax = new_axes(ax)
    ok = np.isfinite(ratio) & (ratio > 0)
    ratio, w = ratio[ok], alloc.weights[ok]
    # the axis spans the posterior's 0.5%..99.5% range (and the plan), not a stray draw far out in the tail
    lo, hi = weighted_quantile(ratio[:, None], w, [0.005, 0.995])[:, 0]
    if plan is not None:
        lo, hi = min(lo, plan["D"] / plan["N"]), max(hi, plan["D"] / plan["N"])
    lo, hi = lo / 1.15, hi * 1.15
    inside = (ratio >= lo) & (ratio <= hi)
    bins = np.geomspace(lo, hi, 50) if hi > lo else 10
    ax.hist(ratio[inside], bins=bins, weights=w[inside], color=LAW_COLOR, alpha=0.7)
    ax.set_xlim(lo, hi)
    q = weighted_quantile(ratio[:, None], w, [0.05, 0.5, 0.95])[:, 0]
    for v, style in zip(q, (":", "-", ":")):
        ax.axvline(v, color="black", ls=style, lw=1)
    if plan is not None:
        ax.axvline(plan["D"] / plan["N"], color=PLAN_COLOR, lw=2, label=f"plan D/N = {plan['D'] / plan['N']:.3g}")
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    if hi / lo < 1e4:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("tokens per parameter D*/N*")
    ax.set_ylabel("posterior probability")
    ax.set_title(f"D*/N* at C = {budget:.3g} FLOPs: median {q[1]:.3g}, 90% interval [{q[0]:.3g}, {q[2]:.3g}]",
                 fontsize=10)
    return fig
