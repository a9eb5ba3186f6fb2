"""Extrapolation bands: data, the law's median, the law band and the predictive band."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import BayescaleError
from ..mixture import members
from ..predict import predict, prob_label
from ._style import DATA_COLOR, LAW_COLOR, PLAN_COLOR, PRED_COLOR, new_axes, plain_log_ticks

__all__ = ["plot_bands"]


def _path(fit, plan, extend: float, points: int):
    """Grid along which to draw: (grid DataFrame, x column, description)."""
    law = fit.law
    runs = fit.runs.table
    names = law.input_names
    if len(names) == 1:
        x = names[0]
        hi = max(runs[x].max() * extend, (plan or {}).get(x, 0) * 1.5)
        return pd.DataFrame({x: np.geomspace(runs[x].min(), hi, points)}), x, None
    if law.cost is None or "N" not in names:
        raise BayescaleError(f"bands for law {law.name!r} need one input or a law of N and D with a cost")
    if plan is not None and ("D" in plan or "M" in plan):
        ratio = plan["D"] / plan["N"] if "D" in plan else plan["M"]
        why = f"along D/N = {ratio:.3g} (the plan's tokens per parameter)"
    else:
        ratio = (float(np.median(runs["D"] / runs["N"])) if "D" in runs else
                 float(np.median(runs["M"])) if "M" in runs else 20.0)
        why = f"along D/N = {ratio:.3g} (the fitted runs' median tokens per parameter)"
    c_obs = law.compute(fit.runs.input_arrays())
    c_plan = 6 * plan["N"] ** 2 * ratio if plan is not None and "N" in plan else 0.0   # the path's C = 6 N D
    c_hi = max(c_obs.max() * extend, c_plan * 1.5)
    C = np.geomspace(c_obs.min(), c_hi, points)
    N = np.sqrt(C / (6 * ratio))
    grid = {"N": N, "D": ratio * N}
    if "M" in names:
        grid = {"N": N, "M": np.full_like(N, ratio)}
    if "U" in names:
        grid["U"] = grid.get("D", ratio * N)
    return pd.DataFrame(grid), "C", why


def plot_bands(fit, *, plan: dict | None = None, prob: float = 0.9, extend: float = 100.0,
               points: int = 80, weights=None, target: float | None = None, ax=None):
    """Log-log figure of the fitted runs, the median, the law band and the predictive band.

    ``plan``: inputs of a planned run (e.g. ``{"N": 7e10, "D": 1.4e12}``), marked
    with its predictive interval.  ``extend``: how far past the largest run to
    draw (a factor on the x axis).  ``fit`` may be a list of fits (mixture).
    ``target``: a target loss, drawn as a horizontal line.
    """
    mems = members(fit, weights)
    base = mems[0].fit
    grid, xcol, why = _path(base, plan, extend, points)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = predict([m.fit for m in mems], grid, prob=(prob,), weights=[m.weight for m in mems])
    lab = prob_label(prob)
    fig, ax = new_axes(ax)
    x = pred[xcol].to_numpy()
    ax.fill_between(x, pred[f"pred_lower_{lab}"], pred[f"pred_upper_{lab}"], color=PRED_COLOR, alpha=0.5,
                    lw=0, label=f"{lab}% predictive band (parameters + noise)")
    ax.fill_between(x, pred[f"law_lower_{lab}"], pred[f"law_upper_{lab}"], color=LAW_COLOR, alpha=0.35,
                    lw=0, label=f"{lab}% law band (parameters only)")
    ax.plot(x, pred["median"], color=LAW_COLOR, lw=1.5, label="posterior median of the law")
    runs = base.runs
    xr = runs.table[xcol] if xcol in runs.table else base.law.compute(runs.input_arrays())
    ax.scatter(xr, runs.table[runs.response], s=10, color=DATA_COLOR, alpha=0.7, zorder=3,
               label=f"fitted runs ({len(runs)})")
    ax.axvspan(np.min(xr), np.max(xr), color="#999999", alpha=0.08, lw=0)
    if plan is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = predict([m.fit for m in mems], pd.DataFrame({k: [v] for k, v in plan.items()}),
                        prob=(prob,), weights=[m.weight for m in mems])
        px = p[xcol].iloc[0]
        ax.errorbar([px], [p["pred_median"].iloc[0]],
                    yerr=[[p["pred_median"].iloc[0] - p[f"pred_lower_{lab}"].iloc[0]],
                          [p[f"pred_upper_{lab}"].iloc[0] - p["pred_median"].iloc[0]]],
                    fmt="D", color=PLAN_COLOR, ms=6, capsize=4, zorder=4,
                    label=f"planned run: {p['pred_median'].iloc[0]:.4g} ({lab}% interval)")
    if target is not None:
        ax.axhline(target, color=PLAN_COLOR, ls="--", lw=1, label=f"target loss {target:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if ax.get_ylim()[1] / ax.get_ylim()[0] < 30:
        plain_log_ticks(ax.yaxis)
    ax.set_xlabel("training compute C (FLOPs)" if xcol == "C" else xcol)
    ax.set_ylabel(runs.response)
    names = " + ".join(m.fit.law.name for m in mems)
    ax.set_title(f"{names}: extrapolation" + (f"\n{why}" if why else ""), fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return fig
