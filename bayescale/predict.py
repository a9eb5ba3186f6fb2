"""Predictions with two labelled bands.

For every grid point, from the posterior draws (one fit, or a weighted
mixture of fits):

* the **law band** (parameter uncertainty only): quantiles over draws of the
  law's value ``mu`` — columns ``median``, ``mean``, ``law_lower_<p>``,
  ``law_upper_<p>``;
* the **predictive band** (parameters + run-to-run noise): quantiles of the
  posterior predictive distribution of a new run's loss — ``pred_median``,
  ``pred_lower_<p>``, ``pred_upper_<p>``.

Intervals are central (equal-tailed) with the probability in the column
name (``_90`` = 5% to 95%).  The predictive quantiles and ``p_below_target``
are computed exactly from the mixture CDF ``mean_s F_noise(y | draw s)``
(bisection on ``y``), not from simulated noise, so they carry no Monte Carlo
noise beyond that of the posterior draws.  (With Student-t noise on log loss
the predictive *mean* of the loss is infinite, which is why no
``pred_mean`` is reported.)

``extrapolation`` says how far a point lies beyond the fitted runs: the
largest ratio of the point's inputs (and its compute, for laws with a cost)
to the largest observed value; <= 1 means at or below the observed maximum.
Points far beyond the largest run, or far below the smallest (``warn_beyond``
times, either way), give an :class:`~bayescale.errors.ExtrapolationWarning`.

When the fit carries a calibration (:func:`bayescale.calibrate`), a third,
labelled band is added beside the other two, never replacing them: the
**calibrated predictive band** -- ``cal_median``, ``cal_lower_<p>``,
``cal_upper_<p>`` (and ``cal_p_below_target``), widened by what a compute
rollout inside the fitted runs measured (see
:mod:`bayescale.evidence.calibration`); its label, with the number of
rollout runs it rests on, is in ``table.attrs["calibration"]``.  For a fit of
checkpoints the calibrated band of a *new* run includes the between-run
offset; a grid column named like the fit's run column (e.g. ``model``)
marks points that continue a training run instead.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .errors import BayescaleError, ExtrapolationWarning
from .formula import sigmoid
from .mixture import for_group, members, weighted_quantile
from .noise import link, noise_cdf, noise_location, noise_scale
from .runs import prepare_grid

__all__ = ["predict", "prob_label"]


def prob_label(p: float) -> str:
    """0.9 -> '90', 0.5 -> '50', 0.683 -> '68.3'."""
    return f"{100 * p:.10g}"


def _check_probs(prob) -> tuple[float, ...]:
    probs = (prob,) if isinstance(prob, (int, float)) else tuple(prob)
    if not probs or not all(isinstance(p, (int, float)) and 0 < p < 1 for p in probs):
        raise BayescaleError(f"prob must be interval probabilities in (0, 1), e.g. (0.5, 0.9); got {prob!r}")
    return tuple(sorted(set(float(p) for p in probs)))


def _below(grid_inputs: dict, member_fits) -> np.ndarray:
    """Per grid point: the largest ratio of the observed minimum to the point's value over inputs
    (and compute); > 1 means below the smallest fitted run."""
    factor = np.zeros(len(next(iter(grid_inputs.values()))))
    for fit in member_fits:
        observed = fit.runs.input_arrays()
        for name, values in observed.items():
            factor = np.maximum(factor, values.min() / grid_inputs[name])
        if fit.law.cost is not None:
            factor = np.maximum(factor, fit.law.compute(observed).min() / fit.law.compute(grid_inputs))
    return factor


def _extrapolation(grid_inputs: dict, member_fits) -> np.ndarray:
    """Per grid point: the largest ratio to the observed maximum over inputs (and compute)."""
    factor = np.zeros(len(next(iter(grid_inputs.values()))))
    for fit in member_fits:
        observed = fit.runs.input_arrays()
        for name, values in observed.items():
            factor = np.maximum(factor, grid_inputs[name] / values.max())
        if fit.law.cost is not None:
            c_obs = fit.law.compute(observed).max()
            factor = np.maximum(factor, fit.law.compute(grid_inputs) / c_obs)
    return factor


class _Component:
    """One fit's draws evaluated on the grid: location (S, G) and scale (S, 1)."""

    def __init__(self, member, grid_inputs):
        fit = member.fit
        params = member.params()
        draws = {k: v[:, None] for k, v in params.items()}
        inputs = {k: grid_inputs[k][None, :] for k in fit.law.input_names}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            self.mu = np.asarray(fit.law.mean(draws, inputs, xp="numpy"), float)
            self.mu = np.broadcast_to(self.mu, (len(params["sigma"]), len(grid_inputs[fit.law.input_names[0]])))
            self.link = link(fit.noise)
            loc = noise_location(fit.noise, fit.law, draws, inputs, xp="numpy")
            self.loc = np.broadcast_to(np.asarray(loc, float), self.mu.shape)
        self.noise = fit.noise
        self.scale = noise_scale(fit.noise, params["sigma"], fit.refs["loss_ref"])[:, None]
        self.weights = np.full(len(params["sigma"]), member.weight / len(params["sigma"]))
        finite = np.isfinite(self.loc) & np.isfinite(self.mu)
        if not np.all(finite):
            bad = np.flatnonzero(~np.all(finite, axis=0))
            raise BayescaleError(f"the law {fit.law.name!r} is not finite at grid rows {bad[:8].tolist()} "
                                 f"for some posterior draws; check the inputs are in the law's domain")

    def cdf(self, y):
        """Weighted CDF contribution at y (shape (G,) or (Q, G)) -> same shape."""
        y = np.asarray(y)[..., None, :]
        return np.sum(self.weights[:, None] * noise_cdf(self.noise, y, self.loc, self.scale), axis=-2)

    def bracket(self):
        """Values of y below/above which this component has negligible mass."""
        lo = (self.loc - 60 * self.scale).min(axis=0)
        hi = (self.loc + 60 * self.scale).max(axis=0)
        if self.link == "log":
            return np.exp(lo), np.exp(hi)
        if self.link == "logit":
            return sigmoid(lo), sigmoid(hi)
        return lo, hi


def _mixture_quantiles(components, levels, iters: int = 60) -> np.ndarray:
    """Quantiles (len(levels), G) of the predictive mixture by bisection."""
    lo = np.min([c.bracket()[0] for c in components], axis=0)
    hi = np.max([c.bracket()[1] for c in components], axis=0)
    all_log = all(c.link == "log" for c in components)
    levels = np.asarray(levels)[:, None]
    lo = np.broadcast_to(np.log(lo) if all_log else lo, (len(levels), lo.size)).copy()
    hi = np.broadcast_to(np.log(hi) if all_log else hi, (len(levels), hi.size)).copy()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        y = np.exp(mid) if all_log else mid
        below = sum(c.cdf(y) for c in components) < levels
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    mid = 0.5 * (lo + hi)
    return np.exp(mid) if all_log else mid


def predict(fit, grid, prob=(0.5, 0.9), *, target=None, weights=None, mapping=None,
            warn_beyond: float = 10.0, group=None) -> pd.DataFrame:
    """Predictions at ``grid`` (DataFrame or dict of input columns) with both bands.

    ``fit``: a Fit, or a list of Fits mixed with ``weights`` (stacking weights
    by default).  ``target``: adds ``p_below_target`` = P(loss < target) for a
    new run.  A warning is given for points more than ``warn_beyond`` times
    beyond the largest observed input or compute, or below the smallest.
    ``group``: for a fit pooled over groups, the group to predict for (a level, or ``"new"``).
    """
    fit = for_group(fit, group)
    mems = members(fit, weights)
    probs = _check_probs(prob)
    if target is not None and not (isinstance(target, (int, float)) and np.isfinite(target)):
        raise BayescaleError(f"target must be a finite number, got {target!r}")
    if not (isinstance(warn_beyond, (int, float)) and warn_beyond >= 1):
        raise BayescaleError(f"warn_beyond must be a number >= 1, got {warn_beyond!r}")
    grid_inputs = {}
    for m in mems:
        g = prepare_grid(grid, m.fit.law, mapping)
        for k in g.columns:
            grid_inputs[k] = g[k].to_numpy(float)
    out = pd.DataFrame(grid_inputs)
    cost_law = next((m.fit.law for m in mems if m.fit.law.cost is not None), None)
    if cost_law is not None and "C" not in out.columns:
        out["C"] = cost_law.compute(grid_inputs)
    out["extrapolation"] = _extrapolation(grid_inputs, [m.fit for m in mems])

    comps = [_Component(m, grid_inputs) for m in mems]
    mu = np.concatenate([c.mu for c in comps])
    w = np.concatenate([c.weights for c in comps])
    tails = [q for p in probs for q in ((1 - p) / 2, (1 + p) / 2)]
    law_q = weighted_quantile(mu, w, [0.5] + tails)
    out["median"] = law_q[0]
    out["mean"] = (w[:, None] * mu).sum(axis=0)
    pred_q = _mixture_quantiles(comps, [0.5] + tails)
    out["pred_median"] = pred_q[0]
    for i, p in enumerate(probs):
        lab = prob_label(p)
        out[f"law_lower_{lab}"], out[f"law_upper_{lab}"] = law_q[1 + 2 * i], law_q[2 + 2 * i]
        out[f"pred_lower_{lab}"], out[f"pred_upper_{lab}"] = pred_q[1 + 2 * i], pred_q[2 + 2 * i]
    if target is not None:
        out["p_below_target"] = np.clip(sum(c.cdf(np.full(len(out), float(target))) for c in comps), 0, 1)
        _check_target(mems, float(target))
    calibrated = [getattr(m.fit, "calibration", None) is not None for m in mems]
    if all(calibrated):
        try:
            _add_calibrated(out, fit, grid, grid_inputs, probs, target, weights)
        except BayescaleError as exc:       # e.g. inflation calibrations of several stacked fits
            warnings.warn(f"no calibrated band: {exc}", UserWarning, stacklevel=2)
    elif any(calibrated):
        warnings.warn(f"{sum(calibrated)} of {len(mems)} fits carry a calibration; the calibrated band needs "
                      "every fit of the mixture calibrated (bayescale.calibrate), so it is left out", UserWarning,
                      stacklevel=2)
    far = out["extrapolation"].to_numpy() > warn_beyond
    if far.any():
        warnings.warn(f"{int(far.sum())} of {len(out)} grid points lie more than {warn_beyond:g}x beyond "
                      f"the largest fitted run (up to {out['extrapolation'].max():.3g}x); that far out the "
                      f"bands rest on the law's form holding, not on data", ExtrapolationWarning,
                      stacklevel=2)
    below = _below(grid_inputs, [m.fit for m in mems])
    low = below > warn_beyond
    if low.any():
        warnings.warn(f"{int(low.sum())} of {len(out)} grid points lie more than {warn_beyond:g}x below "
                      f"the smallest fitted run (down to 1/{below.max():.3g} of it); that far below the "
                      f"bands rest on the law's form holding, not on data (small runs often leave a "
                      f"power law)", ExtrapolationWarning, stacklevel=2)
    return out


def _add_calibrated(out, fit, grid, grid_inputs, probs, target, weights) -> None:
    """The calibrated predictive band as ``cal_*`` columns (beside the raw bands).

    A grid column named like the fit's run column marks points that continue
    a training run (no new-run offset)."""
    from .evidence.calibrated import calibrated_forecast

    runs = None
    structure = next((m.fit.structure for m in members(fit, weights) if m.fit.structure is not None), None)
    if structure is not None and structure.run is not None and isinstance(grid, (pd.DataFrame, dict)) \
            and structure.run in grid:
        runs = np.asarray(grid[structure.run]).astype(str)
    forecast = calibrated_forecast(fit, pd.DataFrame(grid_inputs), probs, weights=weights, runs=runs)
    out["cal_median"] = forecast.median
    for p in probs:
        lab = prob_label(p)
        out[f"cal_lower_{lab}"], out[f"cal_upper_{lab}"] = forecast.intervals[p]
    if target is not None:
        out["cal_p_below_target"] = forecast.cdf(np.full(len(out), float(target)))
    out.attrs["calibration"] = forecast.label


def _check_target(mems, target: float) -> None:
    for m in mems:
        name = m.fit.law.irreducible
        if name is None:
            continue
        e = m.fit.draws(name)
        if np.mean(e < target) < 0.05:
            lo, med = np.quantile(e, [0.05, 0.5])
            warnings.warn(
                f"target {target:g} is below the irreducible loss {name} of law {m.fit.law.name!r} "
                f"(posterior median {med:.4g}, 5% quantile {lo:.4g}): under this law no model size or "
                f"amount of data reaches it, so P(loss < target) comes only from run-to-run noise",
                UserWarning, stacklevel=3)
