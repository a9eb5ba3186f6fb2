"""Extrapolation-aware predictive bands, calibrated on the user's own runs.

The raw posterior predictive (parameters + run-to-run noise) assumes the law
is exactly right, so its band does not widen with the distance of the
extrapolation; measured on public data its 90% intervals cover 33-82% of the
larger runs (``benchmarks/calibration.py``).  A *calibration* corrects it from evidence inside the training
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
    points the prior dominates, with many the data.  ``distance="relative"``
    measures the distance per input in units of the log-range the runs span
    instead.  For a fit of *checkpoints* (a run column with several rows per
    run), a new run also gets an offset ``Normal(0, s0)`` (see
    :func:`calibrate`), since the noise scale then measures the scatter
    within a run.
``inflation``
    Split-conformal: ``k`` scales the predictive's deviations from its median
    on the link scale (``g(y') = g(m) + k (g(y) - g(m))``), ``k`` the
    conformal 90% quantile of the rollout points' standardised deviations
    (each one's distance from the median over its 90% half-width on that
    side).  Needs at least 9 points; ``k < 1`` (narrowing) only with 20 or
    more, else ``k`` is floored at 1.

The result is a frozen :class:`Calibration` (stored in the fit, saved with
it).  :func:`bayescale.evidence.calibrated.calibrated_forecast` gives the calibrated band and density;
:func:`bayescale.predict` adds it as ``cal_*`` columns *beside* the raw bands,
never replacing them.  The number of rollout points ``n`` is always
reported.

Student-t noise is handled as a scale mixture of normals
(``t_4 = Normal(0, sigma * sqrt(lambda))``, ``lambda ~ InvGamma(2, 2)``,
integrated on 24 fixed quantile nodes denser in the tail: CDF within 1e-3),
so that adding a normal discrepancy stays a mixture of normals; posterior draws are thinned to at most
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

__all__ = ["Calibration", "DEFAULT_FACTORS", "DEFAULT_S1_PRIOR", "MAX_DRAWS",
           "RELATIVE_S1_PRIOR", "calibrate", "calibration_from_points",
           "calibration_from_rollout", "extrapolation_distance", "extrapolation_factor",
           "rollout_points", "s1_log_likelihood"]

#: Prior on s1 (the discrepancy's sd per unit of log extrapolation factor, on log loss).
#: Learned from public data that no calibration protocol scores: see benchmarks/s1_prior.py.
DEFAULT_S1_PRIOR = "LogNormal(-4.40, 2.57)"
#: The same for distances measured in units of the runs' span (``distance="relative"``).
RELATIVE_S1_PRIOR = "LogNormal(-2.98, 3.25)"
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
    s0_prior: str | None = None
    s0_grid: tuple | None = None
    s0_weights: tuple | None = None
    n_offsets: int | None = None
    s0_carried: float = 0.0
    raw_coverage: dict = field(default_factory=dict)
    source: str = ""
    notes: tuple = ()

    def s1_quantiles(self, probs=(0.05, 0.5, 0.95)) -> np.ndarray | None:
        if self.s1_grid is None:
            return None
        cw = np.cumsum(self.s1_weights)
        return np.interp(probs, cw - 0.5 * np.asarray(self.s1_weights), self.s1_grid)

    def s0_quantiles(self, probs=(0.05, 0.5, 0.95)) -> np.ndarray | None:
        if self.s0_grid is None:
            return None
        cw = np.cumsum(self.s0_weights)
        return np.interp(probs, cw - 0.5 * np.asarray(self.s0_weights), self.s0_grid)

    @property
    def label(self) -> str:
        if self.method == "discrepancy":
            lo, med, hi = self.s1_quantiles()
            d = "log(extrapolation)" if self.distance == "log" else "relative extrapolation distance"
            what = f"discrepancy sd = s1 * {d}, s1 {med:.3g} [{lo:.3g}, {hi:.3g}]"
            if self.s0_grid is not None:
                lo0, med0, hi0 = self.s0_quantiles()
                what += (f"; a new run's offset sd {med0:.3g} [{lo0:.3g}, {hi0:.3g}] from {self.n_offsets} "
                         "runs' offsets")
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
        if self.s0_grid is not None:
            d.update(s0_prior=self.s0_prior, s0_grid=[float(v) for v in self.s0_grid],
                     s0_weights=[float(v) for v in self.s0_weights], n_offsets=self.n_offsets,
                     s0_carried=self.s0_carried,
                     s0_median=float(self.s0_quantiles([0.5])[0]))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        grid = d.get("s1_grid")
        g0 = d.get("s0_grid")
        return cls(s0_prior=d.get("s0_prior"), s0_grid=None if g0 is None else tuple(g0),
                   s0_weights=None if g0 is None else tuple(d["s0_weights"]), n_offsets=d.get("n_offsets"),
                   s0_carried=float(d.get("s0_carried", 0.0)),
                   method=d["method"], n=int(d["n"]), factors=tuple(d.get("factors", ())), prior=d.get("prior"),
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
    # (for rollout points and continued runs the calibration also takes the own-run distance,
    # log(D / the run's largest seen D), when it is larger)
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


def _own(p) -> np.ndarray:
    """A point set's own-run distances (zeros for ``(fit, inputs, y)`` triples)."""
    return np.asarray(p[3], float) if len(p) > 3 else np.zeros(len(p[2]))


def own_run_distance(progress, seen) -> np.ndarray:
    """``log(progress / seen)`` where a point continues a run seen up to ``seen`` (0 elsewhere, NaN seen)."""
    progress, seen = np.asarray(progress, float), np.asarray(seen, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.log(progress / seen)
    return np.where(np.isfinite(d), np.maximum(d, 0.0), 0.0)


def rollout_points(rollout) -> list[tuple]:
    """``(fit, inputs, y, own)`` per rollout fit from a Backtest of :func:`rollout_compute`; ``own`` is
    each scored run's own-curve distance (how far beyond its own seen checkpoints; 0 without runs)."""
    out = []
    table = rollout.table
    laws = list(dict.fromkeys(table["law"]))
    windows = list(dict.fromkeys(table["window"])) if "window" in table.columns else [None]
    fits = iter(rollout.fits)
    for w in windows:
        for law in laws:
            part = table[(table["law"] == law) & ((table["window"] == w) if w is not None else True)]
            fit = next(fits)
            own = (own_run_distance(part["progress"], part["seen_progress"]) if "seen_progress" in part.columns
                   else np.zeros(len(part)))
            out.append((fit, {k: part[k].to_numpy(float) for k in fit.law.input_names},
                        part["observed"].to_numpy(float), own))
    return out


def _s1_log_likelihood(points, grid, distance: str = "log") -> tuple[np.ndarray, int]:
    total, n = np.zeros(len(grid)), 0
    for p in points:
        fit, inputs, y = p[:3]
        d = _Draws(fit, inputs, max_draws=_LIKELIHOOD_DRAWS)
        dist = extrapolation_distance(fit, inputs, distance)
        if distance == "log":
            dist = np.maximum(dist, _own(p))
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
    for fit, inputs, y, *_ in points:
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
    """Learn a :class:`Calibration` from ``(fit, inputs, y[, own])`` (:func:`rollout_points`)."""
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
              distance: str = "log", new_run_offsets: bool = True, s0_prior: str | None = None,
              chains: int | None = None, warmup: int | None = None, draws: int | None = None,
              progress: bool = False):
    """Run a compute rollout on ``fit``'s own rows and return the fit with its calibration attached.

    The rollout refits the law (same noise model, seed and, unless given,
    sampler settings) on ``C < C_max / F`` for each factor (the factors' fits in one
    :func:`bayescale.fit_many` batch when there are two or more); with a run column
    recorded in ``fit.structure`` it scores each truncated run's final
    checkpoint.  The returned fit is ``fit`` with ``calibration`` set.

    With checkpoint data (a run column with several rows per run), the fit's
    noise scale measures the scatter *within* a run, not between runs, so a
    new run's predictive also gets an offset ``Normal(0, s0)``
    (``new_run_offsets``): s0's posterior from the training runs' mean
    residuals (``R - 3`` degrees of freedom for a law in N: the law fits any
    three runs' offsets exactly) and a prior (:data:`bayescale.evidence.offsets.DEFAULT_S0_PRIOR`); only
    the part of s0 that the noise scale does not already carry is added (with
    many runs whose offsets the law cannot absorb, the noise scale has grown
    to include them).
    Points of a training run (``runs=`` in :func:`calibrated_forecast` naming
    it) continue that run and get no offset.
    """
    from ..result import Fit
    from .offsets import DEFAULT_S0_PRIOR, learn_offset_sd
    from .rollout import rollout_compute

    if not isinstance(fit, Fit):
        raise BayescaleError(f"calibrate needs a Fit, got {type(fit).__name__}")
    if fit.settings.get("run_effects"):
        raise BayescaleError("calibrate does not take a fit with run effects: its rollout refits the law without "
                             "them, and a new run's offset is already in the fit (fit.group('new')); calibrate a "
                             "fit without run_effects")
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
    offsets = learn_offset_sd(fit, s0_prior) if method == "discrepancy" and new_run_offsets else None
    if offsets is not None:
        g0, w0, n_runs, carried = offsets
        cal = replace(cal, s0_prior=s0_prior or DEFAULT_S0_PRIOR, s0_grid=tuple(g0), s0_weights=tuple(w0),
                      n_offsets=n_runs, s0_carried=carried)
    return replace(fit, calibration=cal, timings={**fit.timings, "calibration_s": time.perf_counter() - t0})
