"""Forecasts at target points and their scores against what happened.

A :class:`Forecast` is what a method says about responses it has not seen:
per target, the predictive median, central intervals at a few probabilities
and a function giving the log predictive density of any value.  It is made
*before* the truth is known (the density is a function, not a number) and
scored afterwards by :func:`score`:

* ``are = |median - y| / y`` (absolute relative error);
* ``hit_<p>``: whether ``y`` lies in the central ``p`` interval;
* ``rel_width_<p> = (upper - lower) / y``;
* ``lpd = log p(y)``: the log predictive density of the truth (higher is
  better; it rewards intervals that are both sharp and right).

:func:`summarise` pools a scored table: the number of targets, the median and
mean ARE, the coverage of each interval, the median relative width and the
mean lpd.  :func:`posterior_forecast` is the forecast of one fit's raw
posterior predictive (parameters + noise), as :func:`bayescale.predict`
computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import BayescaleError
from ..predict import prob_label

__all__ = ["Forecast", "posterior_forecast", "score", "summarise"]


@dataclass(frozen=True)
class Forecast:
    """Predictive statements about ``len(median)`` targets, made before seeing them.

    ``intervals`` maps a probability (0.5, 0.9) to ``(lower, upper)`` arrays;
    ``logpdf(y)`` returns the log predictive density of values ``y`` (one
    per target), ``cdf(y)`` (optional) their predictive probability
    ``P(Y <= y)``; ``law_intervals`` (optional) is the law band (parameter
    uncertainty only) in the same form; ``label`` names the band.
    """

    median: np.ndarray
    intervals: dict
    logpdf: Callable = field(repr=False, compare=False)
    law_intervals: dict | None = None
    label: str = "posterior predictive"
    info: dict = field(default_factory=dict)
    cdf: Callable | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        n = len(self.median)
        for p, (lo, hi) in self.intervals.items():
            if len(lo) != n or len(hi) != n:
                raise BayescaleError(f"forecast interval {p} has {len(lo)}/{len(hi)} bounds for {n} targets")

    def __len__(self) -> int:
        return len(self.median)


def posterior_forecast(fit, grid, prob=(0.5, 0.9)) -> Forecast:
    """The raw posterior predictive of ``fit`` (or a list of fits, stacked) at ``grid``."""
    from ..compare import log_density, lpd
    from ..mixture import members
    from ..predict import predict

    pred = predict(fit, grid, prob=prob, warn_beyond=math.inf)
    mems = members(fit)
    inputs = {k: pred[k].to_numpy(float) for m in mems for k in m.fit.law.input_names}
    probs = sorted({float(p) for p in np.atleast_1d(prob)})
    intervals = {p: (pred[f"pred_lower_{prob_label(p)}"].to_numpy(), pred[f"pred_upper_{prob_label(p)}"].to_numpy())
                 for p in probs}
    law = {p: (pred[f"law_lower_{prob_label(p)}"].to_numpy(), pred[f"law_upper_{prob_label(p)}"].to_numpy())
           for p in probs}
    weights = [m.weight for m in mems]

    def logpdf(y):
        y = np.asarray(y, float)
        parts = [np.log(w) + lpd(log_density(m.fit, inputs, y)) for m, w in zip(mems, weights)]
        return np.logaddexp.reduce(np.stack(parts), axis=0)

    return Forecast(median=pred["pred_median"].to_numpy(), intervals=intervals, logpdf=logpdf,
                    law_intervals=law, info={"extrapolation": pred["extrapolation"].to_numpy()})


def score(forecast: Forecast, y) -> pd.DataFrame:
    """One row per target: observed, median, ARE, interval bounds, hits, relative widths, lpd."""
    y = np.asarray(y, float).reshape(-1)
    if len(y) != len(forecast):
        raise BayescaleError(f"score: {len(y)} observed values for a forecast of {len(forecast)} targets")
    out = pd.DataFrame({"observed": y, "median": np.asarray(forecast.median, float)})
    out["are"] = np.abs(out["median"] - y) / np.abs(y)
    for p, (lo, hi) in sorted(forecast.intervals.items()):
        lab = prob_label(p)
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        out[f"lower_{lab}"], out[f"upper_{lab}"] = lo, hi
        out[f"hit_{lab}"] = (lo <= y) & (y <= hi)
        out[f"rel_width_{lab}"] = (hi - lo) / np.abs(y)
    out["lpd"] = np.asarray(forecast.logpdf(y), float)
    return out


def summarise(table: pd.DataFrame) -> dict:
    """Pooled scores of a :func:`score` table (or several concatenated)."""
    out = {"n": int(len(table)), "median_are": float(table["are"].median()),
           "mean_are": float(table["are"].mean())}
    for col in table.columns:
        if col.startswith("hit_"):
            out[f"coverage_{col[4:]}"] = float(table[col].mean())
        elif col.startswith("rel_width_"):
            out[f"median_rel_width_{col[10:]}"] = float(table[col].median())
    out["mean_lpd"] = float(table["lpd"].mean())
    return out
