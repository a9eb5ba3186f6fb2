"""The memo's figures, rendered once to PNG bytes.

Extrapolation bands with the plan, the allocation fan, the D*/N* histogram
at the budget (from :mod:`bayescale.plots`, for the stacked mixture), the LOO
comparison and the backtest (when there are several fits / a backtest), and
the sensitivity figure drawn here: the plan's loss and D*/N* under each fit
alone beside the stacked answer.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from ..errors import BayescaleError
from .model import Figure

__all__ = ["memo_figures", "plot_sensitivity"]

DPI = 100


def _png(fig) -> bytes:
    from ..plots._style import pyplot

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    pyplot().close(fig)
    return buf.getvalue()


def plot_sensitivity(sensitivity, plan_loss=None, ratio=None, target=None):
    """Per fit (and stacked): the plan's predicted loss and D*/N*, medians with 50% and 90% intervals;
    ``target`` (a loss) as a dashed line on the loss panel."""
    from ..plots._style import LAW_COLOR, PLAN_COLOR, pyplot

    panels = []
    if any(r.plan_loss is not None for r in sensitivity.rows):
        panels.append(("predicted loss of the plan", [(r.name, r.plan_loss) for r in sensitivity.rows], plan_loss))
    if any(r.ratio is not None for r in sensitivity.rows):
        panels.append(("D*/N* at the budget\n(tokens per parameter)", [(r.name, r.ratio) for r in sensitivity.rows],
                       ratio))
    if not panels:
        raise BayescaleError("nothing to show: no plan and no allocation")
    n = len(sensitivity.rows) + 1
    plt = pyplot()
    width = max(len(r.name) for r in sensitivity.rows)      # room for the longest fit name
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 0.07 * width + 0.6, 1.9 + 0.5 * n),
                             constrained_layout=True, squeeze=False)
    for ax, (title, items, stacked) in zip(axes[0], panels):
        items = [(name, e) for name, e in items if e is not None]
        if stacked is not None:
            items = items + [("stacked", stacked)]
        y = np.arange(len(items))[::-1]
        for yi, (name, e) in zip(y, items):
            color = PLAN_COLOR if name == "stacked" else LAW_COLOR
            ax.plot([e.lower_90, e.upper_90], [yi, yi], color=color, lw=1.2)
            ax.plot([e.lower_50, e.upper_50], [yi, yi], color=color, lw=4, alpha=0.8)
            ax.plot([e.median], [yi], "o", color="white", mec=color, ms=6, zorder=3)
        ax.set_yticks(y)
        ax.set_yticklabels([name for name, _ in items], fontsize=8)
        ax.set_ylim(-0.7, len(items) - 0.3)
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
        if target is not None and title.startswith("predicted loss"):
            ax.axvline(target, color=PLAN_COLOR, ls="--", lw=1)
            ax.annotate(f"target {target:g}", xy=(target, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, -10), textcoords="offset points", fontsize=7, color=PLAN_COLOR)
        if "D*/N*" in title:
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
    fig.suptitle("How the answer moves across fits\n(thin: 90%, thick: 50% interval; o: median)", fontsize=9)
    return fig


def memo_figures(fits, weights, plan, budget, comparison, backtest, sensitivity, plan_loss=None,
                 ratio=None, target=None, names=None, say=None) -> tuple:
    """Every figure that applies, as :class:`~bayescale.memo.model.Figure` objects; ``say`` reports each."""
    from ..plots.allocation import plot_allocation, plot_ratio
    from ..plots.bands import plot_bands
    from ..plots.calibration import plot_loo_pit
    from ..plots.compare import plot_backtest, plot_compare
    from ._common import _allocatable
    from .evidence import ANSWER_WEIGHT
    from .fmt import flops

    out = []
    plan_nd = plan if plan is not None and {"N", "D"} <= set(plan) else None
    allocatable = _allocatable(fits)
    law_plan = None
    if plan is not None:
        law_inputs = set().union(*(f.law.input_names for f in fits))
        law_plan = {k: v for k, v in plan.items() if k in law_inputs}
    jobs = [("bands", "Extrapolation to the plan",
             "Fitted runs, the posterior median of the law, the 90% law band (parameter uncertainty) and the "
             "90% posterior predictive band (parameters and run-to-run noise), stacked over the laws; the "
             "diamond is the planned run with its 90% predictive interval"
             + ("; the dashed line is the target loss." if target is not None else "."),
             lambda: plot_bands(fits, plan=law_plan if (plan_nd or len(fits[0].law.input_names) == 1) else None,
                                weights=weights, target=target))]
    if allocatable:
        jobs.append(("allocation", "Compute-optimal allocation",
                     "Posterior medians and 90% bands of N* and D* against the training compute C, stacked over "
                     "the laws; the grey span is the compute range of the fitted runs.",
                     lambda: plot_allocation(fits, plan=plan_nd, weights=weights)))
        if budget is not None:
            jobs.append(("ratio", "Tokens per parameter at the budget",
                         f"Posterior of D*/N* at C = {flops(budget, 3)} (median solid, 90% interval dotted)"
                         + ("; the red line is the plan's D/N." if plan_nd else "."),
                         lambda: plot_ratio(fits, budget, plan=plan_nd, weights=weights)))
    if comparison is not None:
        jobs.append(("compare", "Law comparison (PSIS-LOO)",
                     "Expected log predictive density of each fit with its standard error, and each fit's "
                     "difference to the best with the standard error of the difference; stacking weights in "
                     "the labels.", lambda: plot_compare(comparison)))
    if backtest is not None:
        jobs.append(("backtest", "Backtest on the largest runs",
                     f"Fitted without the held-out runs ({backtest.holdout}): the error of each held-out run's "
                     "prediction (posterior predictive median) relative to its observed loss, with its 90% and "
                     "50% predictive intervals on the same scale; a bar crossing the dashed zero line covers its "
                     "run.", lambda: plot_backtest(backtest)))
    names = [f.law.name for f in fits] if names is None else list(names)
    answer = [(f, n) for f, n, w in zip(fits, names, weights) if w >= ANSWER_WEIGHT]
    jobs.append(("loo_pit", "Calibration on the fitted runs (LOO-PIT)",
                 "For each fit behind the answer, the difference between the empirical CDF of its leave-one-out "
                 "PIT values and the uniform CDF: inside the grey band the fit's predictive distributions are "
                 "calibrated on the runs it was fitted to. A curve that first rises above 0 and then falls below "
                 "it means too many runs in the tails (intervals too narrow); first below, then above: intervals "
                 "too wide; above 0 throughout: runs below their predictions.", lambda: plot_loo_pit([f for f, _ in answer], [n for _, n in answer])))
    if sensitivity is not None and (plan is not None or (allocatable and budget is not None)):
        jobs.append(("sensitivity", "Sensitivity to the law and noise model",
                     "The plan's predicted loss and D*/N* at the budget under each fit alone, and stacked"
                     + ("; the dashed line is the target loss." if target is not None else "."),
                     lambda: plot_sensitivity(sensitivity, plan_loss, ratio, target)))
    for i, (name, title, caption, make) in enumerate(jobs, 1):
        if say is not None:
            say(f"figure {i} of {len(jobs)}: {title.lower()}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig = make()
        out.append(Figure(name=name, title=title, caption=caption, png=_png(fig)))
    return tuple(out)
