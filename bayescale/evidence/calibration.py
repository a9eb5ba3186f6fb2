"""Extrapolation-aware predictive bands, calibrated on the user's own runs.

The raw posterior predictive (parameters + run-to-run noise) assumes the law
is exactly right, so its band does not widen with the distance of the
extrapolation; measured on public data its 90% intervals cover 33-60% of the
larger runs.  A *calibration* corrects it from evidence inside the training
data: a compute rollout (:func:`~bayescale.evidence.rollout.rollout_compute`:
fit ``C < C_max / F``, score each truncated run's final loss) shows how wrong
the raw band is at a known extrapolation factor.  Two corrections:

``discrepancy`` (default)
    The law is off by a model-discrepancy term that grows with the distance
    of the extrapolation: on the noise model's link scale (log loss),
    ``g(y) = g(mu) + delta + noise`` with ``delta ~ Normal(0, tau)`` and
    ``tau = s1 * log(f)``, ``f`` the extrapolation factor of the point (the
    largest ratio of its inputs and its compute to the fitted runs' maxima;
    0 inside the observed range).  ``s1`` has a prior (by default one learned
    from public data: :data:`DEFAULT_S1_PRIOR`) and its posterior given the
    rollout's scored runs is computed on a grid, each run's likelihood
    integrating over the rollout fit's posterior and the noise.  The
    calibrated predictive averages over that posterior.  With few rollout
    points the prior dominates, with many the data.
``inflation``
    Split-conformal: ``k`` scales the predictive's deviations from its median
    on the link scale (``g(y') = g(m) + k (g(y) - g(m))``), ``k`` the
    conformal 90% quantile of the rollout points' standardised deviations
    (each one's distance from the median over its 90% half-width on that
    side).  Needs at least 9 points; ``k < 1`` (narrowing) only with 20 or
    more, else ``k`` is floored at 1.

The result is a frozen :class:`Calibration` (stored in the fit, saved with
it).  :func:`calibrated_forecast` gives the calibrated band and density;
:func:`bayescale.predict` adds it as ``cal_*`` columns *beside* the raw bands,
never replacing them.  The number of rollout points ``n`` is always
reported.

Student-t noise is handled exactly as a scale mixture of normals
(``t_4 = Normal(0, sigma * sqrt(lambda))``, ``lambda ~ InvGamma(2, 2)``,
integrated on fixed quantile nodes), so that adding a normal discrepancy
stays a mixture of normals; posterior draws are thinned to at most
:data:`MAX_DRAWS` evenly spaced ones for the calibrated band.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ..errors import BayescaleError
from ..noise import STUDENT_T_DF, apply_link, link
from ..predict import prob_label

__all__ = ["Calibration", "DEFAULT_FACTORS", "DEFAULT_S1_PRIOR", "MAX_DRAWS", "calibrate",
           "calibrated_forecast", "calibration_from_points", "calibration_from_rollout", "extrapolation_distance",
           "extrapolation_factor", "rollout_points", "s1_log_likelihood"]

#: Prior on s1 (the discrepancy's sd per unit of log extrapolation factor, on log loss).
#: Learned from public data that no calibration protocol scores: see benchmarks/s1_prior.py.
DEFAULT_S1_PRIOR = "LogNormal(-4.43, 2.59)"
#: The same for distances measured in units of the runs' span (``distance="relative"``).
RELATIVE_S1_PRIOR = "LogNormal(-3.0, 3.27)"
#: Compute-rollout factors used by :func:`calibrate` by default.
DEFAULT_FACTORS = (2.0, 4.0)
#: Posterior draws used for the calibrated band (evenly thinned).
MAX_DRAWS = 500
#: Fewest rollout points for a conformal k, and for a k below 1.
MIN_CONFORMAL, MIN_SHRINK = 9, 20
_METHODS = ("discrepancy", "inflation")
_S1_GRID = np.geomspace(1e-4, 1.0, 161)
_CONFORMAL_LEVEL = 0.9
_LIKELIHOOD_DRAWS = 200      # draws per rollout fit in the likelihood of s1 (161 grid values)


def _lambda_nodes(noise: str, n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of lambda with t_nu = Normal(0, sqrt(lambda)); (1, 1) for normal noise."""
    if noise != "student_t_log":
        return np.ones(1), np.ones(1)
    from scipy.stats import invgamma

    edges = 1.0 - (1.0 - np.arange(n + 1) / n) ** 3          # denser towards the heavy tail
    mids = 0.5 * (edges[1:] + edges[:-1])
    lam = invgamma(STUDENT_T_DF / 2, scale=STUDENT_T_DF / 2).ppf(mids)
    return lam, np.diff(edges)


@dataclass(frozen=True)
class Calibration:
    """A learned correction of the predictive band (module docstring)."""

    method: str
    n: int
    factors: tuple
    prior: str | None = None
    s1_grid: tuple | None = None
    s1_weights: tuple | None = None
    k: float | None = None
    k_conformal: float | None = None
    distance: str = "log"
    raw_coverage: dict = field(default_factory=dict)
    source: str = ""
    notes: tuple = ()

    def s1_quantiles(self, probs=(0.05, 0.5, 0.95)) -> np.ndarray | None:
        if self.s1_grid is None:
            return None
        cw = np.cumsum(self.s1_weights)
        return np.interp(probs, cw - 0.5 * np.asarray(self.s1_weights), self.s1_grid)

    @property
    def label(self) -> str:
        if self.method == "discrepancy":
            lo, med, hi = self.s1_quantiles()
            d = "log(extrapolation)" if self.distance == "log" else "relative extrapolation distance"
            what = f"discrepancy sd = s1 * {d}, s1 {med:.3g} [{lo:.3g}, {hi:.3g}]"
        else:
            what = f"inflation k = {self.k:.3g}" + (f" (conformal {self.k_conformal:.3g})"
                                                     if self.k_conformal not in (None, self.k) else "")
        return f"calibrated predictive ({what}; n = {self.n} rollout runs)"

    def as_dict(self) -> dict:
        d = {"method": self.method, "n": self.n, "factors": list(self.factors), "prior": self.prior,
             "k": self.k, "k_conformal": self.k_conformal, "distance": self.distance,
             "raw_coverage": {str(k): float(v) for k, v in self.raw_coverage.items()},
             "source": self.source, "notes": list(self.notes), "label": self.label}
        if self.s1_grid is not None:
            d["s1_grid"] = [float(v) for v in self.s1_grid]
            d["s1_weights"] = [float(v) for v in self.s1_weights]
            d["s1_median"] = float(self.s1_quantiles([0.5])[0])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        grid = d.get("s1_grid")
        return cls(method=d["method"], n=int(d["n"]), factors=tuple(d.get("factors", ())), prior=d.get("prior"),
                   s1_grid=None if grid is None else tuple(grid),
                   s1_weights=None if grid is None else tuple(d["s1_weights"]), k=d.get("k"),
                   k_conformal=d.get("k_conformal"), distance=d.get("distance", "log"),
                   raw_coverage={float(k): float(v) for k, v in d.get("raw_coverage", {}).items()},
                   source=d.get("source", ""), notes=tuple(d.get("notes", ())))


# --------------------------------------------------------------------------- draws on a grid


def extrapolation_factor(fit, grid_inputs: dict) -> np.ndarray:
    """Per point: the largest ratio of its inputs (and compute) to the fit's observed maxima, >= 1."""
    from ..predict import _extrapolation

    return np.maximum(_extrapolation(grid_inputs, [fit]), 1.0)


def extrapolation_distance(fit, grid_inputs: dict, scale: str = "log") -> np.ndarray:
    """Per point, how far it lies beyond the fitted runs (0 inside their range).

    ``"log"``: ``log f`` with ``f`` the :func:`extrapolation_factor`.
    ``"relative"``: the same distance per input (and for compute) in units of
    the log-range the runs span in it, ``log(x / x_max) / log(x_max / x_min)``,
    the largest over inputs: going 2x beyond two model sizes 2x apart is
    distance 1, going 2x beyond sizes spanning 1000x is 0.1.
    """
    if scale == "log":
        return np.log(extrapolation_factor(fit, grid_inputs))
    if scale != "relative":
        raise BayescaleError(f"distance scale must be 'log' or 'relative', got {scale!r}")
    observed = dict(fit.runs.input_arrays())
    points = {k: np.asarray(grid_inputs[k], float) for k in observed}
    if fit.law.cost is not None:
        observed["C"] = np.asarray(fit.law.compute(fit.runs.input_arrays()), float)
        points["C"] = np.asarray(fit.law.compute(points), float)
    out = np.zeros(len(next(iter(points.values()))))
    for k, obs in observed.items():
        span = math.log(obs.max() / obs.min()) if obs.min() > 0 else 0.0
        beyond = np.log(np.maximum(points[k] / obs.max(), 1.0))
        if span <= 1e-9:
            continue                # an input the runs do not vary (e.g. one model size): not scaled by it
        out = np.maximum(out, beyond / span)
    return out


class _Draws:
    """One fit's (thinned) draws at grid points: link-scale location (S, G), noise scale (S, 1)."""

    def __init__(self, fit, grid_inputs: dict, weight: float = 1.0, max_draws: int = MAX_DRAWS):
        from ..mixture import Member
        from ..predict import _Component

        comp = _Component(Member(fit, 1.0), grid_inputs)
        S = comp.loc.shape[0]
        keep = np.unique(np.linspace(0, S - 1, min(S, max_draws)).round().astype(int))
        self.loc = comp.loc[keep]
        self.scale = comp.scale[keep]
        self.w = np.full(len(keep), weight / len(keep))
        self.noise = fit.noise
        self.link = link(fit.noise)
        self.lam, self.lam_w = _lambda_nodes(fit.noise)
        self.unit = fit.refs["loss_ref"] if self.link == "identity" else 1.0
        self.median_link = None

    def sd(self, tau):
        """(S, G, L) standard deviations of the normal mixture for discrepancy sd ``tau`` (S or 1, G)."""
        tau = np.asarray(tau, float) * self.unit
        return np.sqrt(self.scale[:, :, None] ** 2 * self.lam[None, None, :] + (tau ** 2)[..., None])

    def cdf(self, g, tau):
        from scipy.special import ndtr

        z = (np.asarray(g)[None, :, None] - self.loc[:, :, None]) / self.sd(tau)
        return np.einsum("s,sgl,l->g", self.w, ndtr(z), self.lam_w)

    def log_pdf_link(self, g, tau):
        """log density of the link-scale value g (G,) (no Jacobian)."""
        from scipy.special import logsumexp

        sd = self.sd(tau)
        z = (np.asarray(g)[None, :, None] - self.loc[:, :, None]) / sd
        terms = -0.5 * z * z - np.log(sd) - 0.5 * math.log(2 * math.pi)
        logw = np.log(self.w)[:, None, None] + np.log(self.lam_w)[None, None, :]
        return logsumexp(terms + logw, axis=(0, 2))


def _inverse_link(kind: str, g):
    if kind == "log":
        return np.exp(g)
    if kind == "logit":
        return 1.0 / (1.0 + np.exp(-g))
    return g


def _bracket(draws: list, tau_max) -> tuple[np.ndarray, np.ndarray]:
    lo = np.min([(d.loc - 60 * d.scale).min(axis=0) for d in draws], axis=0)
    hi = np.max([(d.loc + 60 * d.scale).max(axis=0) for d in draws], axis=0)
    spread = 12 * np.max([np.asarray(t, float).max(axis=0) * d.unit for d, t in zip(draws, tau_max)], axis=0)
    return lo - spread, hi + spread


def _quantiles(draws: list, taus: list, levels, iters: int = 48) -> np.ndarray:
    """(len(levels), G) quantiles on the link scale of the mixture of discrepancy-widened members."""
    lo0, hi0 = _bracket(draws, taus)
    out = np.empty((len(levels), lo0.size))
    for i, q in enumerate(levels):
        lo, hi = lo0.copy(), hi0.copy()
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            below = sum(d.cdf(mid, t) for d, t in zip(draws, taus)) < q
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        out[i] = 0.5 * (lo + hi)
    return out


# --------------------------------------------------------------------------- learning


def rollout_points(rollout) -> list[tuple]:
    """(fit, inputs, y) per rollout fit from a Backtest of :func:`rollout_compute`."""
    out = []
    table = rollout.table
    laws = list(dict.fromkeys(table["law"]))
    windows = list(dict.fromkeys(table["window"])) if "window" in table.columns else [None]
    fits = iter(rollout.fits)
    for w in windows:
        for law in laws:
            part = table[(table["law"] == law) & ((table["window"] == w) if w is not None else True)]
            fit = next(fits)
            out.append((fit, {k: part[k].to_numpy(float) for k in fit.law.input_names},
                        part["observed"].to_numpy(float)))
    return out


def _s1_log_likelihood(points, grid, distance: str = "log") -> tuple[np.ndarray, int]:
    total, n = np.zeros(len(grid)), 0
    for fit, inputs, y in points:
        d = _Draws(fit, inputs, max_draws=_LIKELIHOOD_DRAWS)
        dist = extrapolation_distance(fit, inputs, distance)
        g, _, inside = apply_link(fit.noise, y)
        if not inside.all():
            raise BayescaleError(f"calibration: observed values outside the support of {fit.noise}")
        for s1 in range(len(grid)):
            tau = np.broadcast_to(grid[s1] * dist[None, :], (1, len(y)))
            total[s1] += d.log_pdf_link(g, tau).sum()
        n += len(y)
    return total, n


def _prior_log_density(prior: str, grid: np.ndarray) -> np.ndarray:
    """log prior density of s1 on the grid, per unit log s1 (the grid is log-spaced)."""
    import jax.numpy as jnp

    from ..priors import parse_prior

    p = parse_prior(prior, "s1 prior")
    lo, hi = p.bounds
    if lo < 0:
        raise BayescaleError(f"the s1 prior must be on positive values (e.g. LogNormal, HalfNormal), got {prior}")
    logp = np.asarray(p.dist().log_prob(jnp.asarray(grid)), float) + np.log(grid)
    return np.where(np.isfinite(logp), logp, -np.inf)


def _standardised(points, level: float = _CONFORMAL_LEVEL) -> tuple[np.ndarray, dict]:
    """Each rollout point's |g(y) - g(median)| over the raw ``level`` half-width on its side, and raw coverage."""
    from ..predict import predict

    r, hits = [], {0.5: [], 0.9: []}
    for fit, inputs, y in points:
        pred = predict(fit, pd.DataFrame(inputs), prob=(0.5, level), warn_beyond=math.inf)
        g = apply_link(fit.noise, y)[0]
        m = apply_link(fit.noise, pred["pred_median"].to_numpy())[0]
        lab = prob_label(level)
        lo = apply_link(fit.noise, pred[f"pred_lower_{lab}"].to_numpy())[0]
        hi = apply_link(fit.noise, pred[f"pred_upper_{lab}"].to_numpy())[0]
        r.append(np.where(g >= m, (g - m) / (hi - m), (m - g) / (m - lo)))
        for p in (0.5, 0.9):
            lp = prob_label(p)
            hits[p].append((pred[f"pred_lower_{lp}"].to_numpy() <= y) & (y <= pred[f"pred_upper_{lp}"].to_numpy()))
    return np.concatenate(r), {p: float(np.concatenate(h).mean()) for p, h in hits.items()}


def calibration_from_rollout(rollout, method: str = "discrepancy", prior: str | None = None,
                             source: str = "", distance: str = "log") -> Calibration:
    """Learn a :class:`Calibration` from a compute-rollout :class:`~bayescale.backtest.Backtest`."""
    factors = tuple(sorted({float(f) for f in rollout.table.get("factor", pd.Series(dtype=float))}))
    return calibration_from_points(rollout_points(rollout), method=method, prior=prior, source=source,
                                   distance=distance, factors=factors)


def s1_log_likelihood(points, distance: str = "log") -> tuple[np.ndarray, np.ndarray]:
    """``(grid, log p(points | s1))`` over the s1 grid (no prior): for deriving priors from public data."""
    return _S1_GRID.copy(), _s1_log_likelihood(points, _S1_GRID, distance)[0]


def calibration_from_points(points, method: str = "discrepancy", prior: str | None = None, source: str = "",
                            distance: str = "log", factors=()) -> Calibration:
    """Learn a :class:`Calibration` from ``(fit, inputs, y)`` triples (:func:`rollout_points`)."""
    if method not in _METHODS:
        raise BayescaleError(f"calibration method must be one of {', '.join(_METHODS)}, got {method!r}")
    r, raw = _standardised(points)
    n = len(r)
    notes = []
    if method == "discrepancy":
        prior = prior or DEFAULT_S1_PRIOR
        loglik, _ = _s1_log_likelihood(points, _S1_GRID, distance)
        logpost = _prior_log_density(prior, _S1_GRID) + loglik
        w = np.exp(logpost - logpost.max())
        w /= w.sum()
        return Calibration(method=method, n=n, factors=factors, prior=prior, s1_grid=tuple(_S1_GRID),
                           s1_weights=tuple(w), distance=distance, raw_coverage=raw, source=source,
                           notes=tuple(notes))
    if n < MIN_CONFORMAL:
        raise BayescaleError(f"a conformal inflation factor at 90% needs at least {MIN_CONFORMAL} rollout runs, "
                             f"the rollout scored {n}; use method='discrepancy' (its prior carries small samples)")
    rank = min(n, math.ceil((n + 1) * _CONFORMAL_LEVEL))
    k_conf = float(np.sort(r)[rank - 1])
    k = k_conf if n >= MIN_SHRINK else max(1.0, k_conf)
    if k != k_conf:
        notes.append(f"conformal k {k_conf:.3g} < 1 from {n} < {MIN_SHRINK} runs: kept at 1 (never narrower "
                     "than the raw band on so few runs)")
    return Calibration(method=method, n=n, factors=factors, k=k, k_conformal=k_conf, raw_coverage=raw,
                       source=source, notes=tuple(notes))


def calibrate(fit, *, factors=DEFAULT_FACTORS, method: str = "discrepancy", prior: str | None = None,
              distance: str = "log", chains: int | None = None, warmup: int | None = None, draws: int | None = None,
              progress: bool = False):
    """Run a compute rollout on ``fit``'s own rows and return the fit with its calibration attached.

    The rollout refits the law (same noise model, seed and, unless given,
    sampler settings) on ``C < C_max / F`` for each factor; with a run column
    recorded in ``fit.structure`` it scores each truncated run's final
    checkpoint.  The returned fit is ``fit`` with ``calibration`` set.
    """
    from ..result import Fit
    from .rollout import rollout_compute

    if not isinstance(fit, Fit):
        raise BayescaleError(f"calibrate needs a Fit, got {type(fit).__name__}")
    t0 = time.perf_counter()
    table = fit.runs.table.copy()
    run = None
    if fit.structure is not None and fit.structure.run_ids is not None:
        run = "_run_"
        while run in table.columns:
            run += "_"
        table[run] = list(fit.structure.run_ids)
    s = fit.settings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        roll = rollout_compute(table, fit.law, factors, run=run, noise=fit.noise,
                               chains=chains or s.get("chains", 4), warmup=warmup or s.get("warmup", 1000),
                               draws=draws or s.get("draws", 1000), seed=s.get("seed", 0),
                               target_accept=s.get("target_accept", 0.8), progress=progress)
    what = f"{fit.structure.n_runs} runs" if run else f"{len(table)} runs"
    source = (f"compute rollout on the fit's {len(table)} rows ({what}), F = "
              + ", ".join(f"{f:g}" for f in sorted(set(np.atleast_1d(factors).tolist()))))
    cal = calibration_from_rollout(roll, method=method, prior=prior, source=source, distance=distance)
    cal = replace(cal, notes=cal.notes + tuple(roll.notes))
    return replace(fit, calibration=cal, timings={**fit.timings, "calibration_s": time.perf_counter() - t0})


# --------------------------------------------------------------------------- applying


def _member_taus(cal: Calibration, d: _Draws, dist: np.ndarray, rng_seed: int = 0):
    """Discrepancy sd per (draw, point): s1 drawn from its posterior (stratified, fixed permutation)."""
    if cal.method != "discrepancy":
        return np.zeros((1, len(dist)))
    S = d.loc.shape[0]
    u = (np.arange(S) + 0.5) / S
    cw = np.cumsum(cal.s1_weights)
    idx = np.minimum(np.searchsorted(cw, u), len(cw) - 1)
    s1 = np.asarray(cal.s1_grid)[idx]
    s1 = np.random.default_rng(rng_seed).permutation(s1)
    return s1[:, None] * dist[None, :]


def calibrated_forecast(fit, grid, prob=(0.5, 0.9), weights=None):
    """The calibrated predictive of ``fit`` (or fits, stacked) at ``grid`` as a
    :class:`~bayescale.evidence.scoring.Forecast`; raises if no member is calibrated."""
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
        taus.append(_member_taus(cal, d, extrapolation_distance(m.fit, grid_inputs, cal.distance)))
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
