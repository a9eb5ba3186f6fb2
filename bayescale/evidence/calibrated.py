"""Applying a calibration: the calibrated predictive band and density of a fit (or stacked fits).

:mod:`bayescale.evidence.calibration` learns a :class:`~bayescale.evidence.calibration.Calibration`
from a compute rollout; this module turns it into forecasts: :func:`calibrated_forecast` (used by
:func:`bayescale.predict`'s ``cal_*`` columns, :func:`bayescale.backtest` with ``calibrate=True`` and
the memo) and :func:`tau_per_draw` (the discrepancy sd per posterior draw, used by
:func:`bayescale.optimal`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from ..errors import BayescaleError
from ..noise import apply_link, link
from ..predict import prob_label
from .calibration import Calibration, _Draws, _inverse_link, _quantiles, extrapolation_distance, own_run_distance

__all__ = ["calibrated_forecast", "tau_per_draw"]


def _stratified(grid, weights, S: int, rng) -> np.ndarray:
    """S draws from a discrete posterior on a grid: stratified quantiles in a random order."""
    u = (np.arange(S) + 0.5) / S
    idx = np.minimum(np.searchsorted(np.cumsum(weights), u), len(weights) - 1)
    return rng.permutation(np.asarray(grid)[idx])


def _member_taus(cal: Calibration, S: int, dist: np.ndarray, new_run: np.ndarray | None = None,
                 rng_seed: int = 0) -> np.ndarray:
    """Discrepancy sd per (draw, point): s1 (and s0 for new runs) drawn from their posteriors."""
    if cal.method != "discrepancy":
        return np.zeros((1, len(dist)))
    rng = np.random.default_rng(rng_seed)
    s1 = _stratified(cal.s1_grid, cal.s1_weights, S, rng)
    tau2 = (s1[:, None] * dist[None, :]) ** 2
    if cal.s0_grid is not None:
        s0 = _stratified(cal.s0_grid, cal.s0_weights, S, rng)
        new = np.ones(len(dist), bool) if new_run is None else np.asarray(new_run, bool)
        tau2 = tau2 + np.maximum(s0 ** 2 - cal.s0_carried ** 2, 0.0)[:, None] * new[None, :]
    return np.sqrt(tau2)


def tau_per_draw(cal: Calibration, dist: np.ndarray, rng_seed: int = 0) -> np.ndarray:
    """Discrepancy sd (S, B) for per-draw distances ``dist`` (S, B) of new runs (the optimum of a budget)."""
    rng = np.random.default_rng(rng_seed)
    S = dist.shape[0]
    s1 = _stratified(cal.s1_grid, cal.s1_weights, S, rng)
    tau2 = (s1[:, None] * dist) ** 2
    if cal.s0_grid is not None:
        s0 = _stratified(cal.s0_grid, cal.s0_weights, S, rng)
        tau2 = tau2 + np.maximum(s0 ** 2 - cal.s0_carried ** 2, 0.0)[:, None]
    return np.sqrt(tau2)


def _continuation_distance(fit, runs, grid_inputs: dict) -> np.ndarray:
    """Per grid point continuing a training run: ``log(progress / the run's largest seen progress)``."""
    n = len(next(iter(grid_inputs.values())))
    if runs is None or fit.structure is None or fit.structure.run_ids is None:
        return np.zeros(n)
    from .structure import progress_column

    table = fit.runs.table
    try:
        col = progress_column(table, fit.law)
    except BayescaleError:
        return np.zeros(n)
    if col not in grid_inputs:
        return np.zeros(n)
    seen = pd.Series(table[col].to_numpy(float)).groupby(np.asarray(fit.structure.run_ids)).max()
    labels = np.asarray(runs).astype(str).reshape(-1)
    return own_run_distance(grid_inputs[col], seen.reindex(labels).to_numpy(float))


def _new_runs(fit, runs, n: int) -> np.ndarray | None:
    """True where a grid point is a new run (not one of the fit's training runs)."""
    if runs is None:
        return None
    runs = np.asarray(runs).astype(str).reshape(-1)
    if len(runs) != n:
        raise BayescaleError(f"runs= has {len(runs)} labels for {n} grid points")
    known = set() if fit.structure is None or fit.structure.run_ids is None else set(fit.structure.run_ids)
    return ~np.isin(runs, list(known))


def calibrated_forecast(fit, grid, prob=(0.5, 0.9), weights=None, runs=None):
    """The calibrated predictive of ``fit`` (or fits, stacked) at ``grid`` as a
    :class:`~bayescale.evidence.scoring.Forecast`; raises if no member is calibrated.

    ``runs``: optional run label per grid point; a label of a training run
    marks the point as a continuation of that run (no new-run offset)."""
    from ..mixture import members
    from ..runs import prepare_grid
    from .scoring import Forecast

    mems = members(fit, weights)
    cals = [m.fit.calibration for m in mems]
    if all(c is None for c in cals):
        raise BayescaleError("no calibration in the fit: run bayescale.calibrate(fit) first")
    if any(c is None for c in cals):
        raise BayescaleError("some fits of the mixture are calibrated and some are not; calibrate every fit")
    grid_inputs = {}
    for m in mems:
        g = prepare_grid(grid, m.fit.law)
        grid_inputs.update({k: g[k].to_numpy(float) for k in g.columns})
    probs = sorted({float(p) for p in np.atleast_1d(prob)})
    kinds = {link(m.fit.noise) for m in mems}
    if len(kinds) > 1:
        raise BayescaleError("calibrated bands of fits with different links (log, logit, identity) cannot be mixed")
    kind = kinds.pop()
    levels = [0.5] + [q for p in probs for q in ((1 - p) / 2, (1 + p) / 2)]
    if all(c.method == "inflation" for c in cals):
        if len(mems) > 1:
            raise BayescaleError("an inflation calibration applies to one fit; stack discrepancy calibrations")
        return _inflated(mems[0].fit, cals[0], grid_inputs, probs, levels, kind)
    if any(c.method != "discrepancy" for c in cals):
        raise BayescaleError("fits with different calibration methods cannot be mixed")
    draws, taus = [], []
    for m in mems:
        d = _Draws(m.fit, {k: grid_inputs[k] for k in m.fit.law.input_names}, m.weight)
        draws.append(d)
        cal = m.fit.calibration
        n_grid = len(next(iter(grid_inputs.values())))
        new = _new_runs(m.fit, runs, n_grid)
        dist = extrapolation_distance(m.fit, grid_inputs, cal.distance)
        if cal.distance == "log":       # a continued run: also how far beyond its own seen checkpoints
            dist = np.maximum(dist, _continuation_distance(m.fit, runs, grid_inputs))
        taus.append(_member_taus(cal, d.loc.shape[0], dist, new))
    q = _inverse_link(kind, _quantiles(draws, taus, levels))
    intervals = {p: (q[1 + 2 * i], q[2 + 2 * i]) for i, p in enumerate(probs)}
    noise = mems[0].fit.noise

    def logpdf(y):
        from scipy.special import logsumexp

        g, log_jac, inside = apply_link(noise, np.asarray(y, float))
        parts = [d.log_pdf_link(np.where(inside, g, 0.0), t) for d, t in zip(draws, taus)]
        out = logsumexp(np.stack(parts), axis=0) + log_jac
        return np.where(inside, out, -np.inf)

    def cdf(y):
        g, _, inside = apply_link(noise, np.asarray(y, float))
        below = np.asarray(y, float) <= 0
        val = sum(d.cdf(np.where(inside, g, 0.0), t) for d, t in zip(draws, taus))
        return np.where(inside, np.clip(val, 0, 1), np.where(below, 0.0, 1.0))

    label = cals[0].label if len(cals) == 1 else "calibrated predictive (stacked)"
    return Forecast(median=q[0], intervals=intervals, logpdf=logpdf, label=label,
                    info={"n": [c.n for c in cals]}, cdf=cdf)


def _inflated(fit, cal, grid_inputs, probs, levels, kind):
    from ..predict import predict
    from .scoring import Forecast, posterior_forecast

    k = float(cal.k)
    fit = replace(fit, calibration=None)          # the raw predictive
    inputs = {n: grid_inputs[n] for n in fit.law.input_names}
    pred = predict(fit, pd.DataFrame(inputs), prob=probs, warn_beyond=math.inf)
    m = apply_link(fit.noise, pred["pred_median"].to_numpy())[0]

    def widen(col):
        return _inverse_link(kind, m + k * (apply_link(fit.noise, pred[col].to_numpy())[0] - m))

    intervals = {p: (widen(f"pred_lower_{prob_label(p)}"), widen(f"pred_upper_{prob_label(p)}")) for p in probs}
    raw = posterior_forecast(fit, pd.DataFrame(inputs), probs)

    def logpdf(y):
        y = np.asarray(y, float)
        g, log_jac, inside = apply_link(fit.noise, y)
        back = _inverse_link(kind, m + (np.where(inside, g, m) - m) / k)   # the raw value mapped onto y
        _, log_jac_back, _ = apply_link(fit.noise, back)
        # p'(y) = p(back) |d back / d y| = p(back) |g'(y)| / (k |g'(back)|)
        out = raw.logpdf(back) + log_jac - log_jac_back - math.log(k)
        return np.where(inside, out, -np.inf)

    def cdf(y):
        from ..mixture import Member
        from ..predict import _Component

        y = np.asarray(y, float)
        g, _, inside = apply_link(fit.noise, y)
        back = _inverse_link(kind, m + (np.where(inside, g, m) - m) / k)
        val = _Component(Member(fit, 1.0), inputs).cdf(back)
        return np.where(inside, np.clip(val, 0, 1), np.where(y <= 0, 0.0, 1.0))

    return Forecast(median=pred["pred_median"].to_numpy(), intervals=intervals, logpdf=logpdf, label=cal.label,
                    info={"n": [cal.n]}, cdf=cdf)
