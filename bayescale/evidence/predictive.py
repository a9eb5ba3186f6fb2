"""Predictive draws of a fit and its LOO-PIT calibration check.

:func:`predictive_groups` gives the three ArviZ groups that ``fit.idata``
adds to what a fit file stores (built in numpy when ``fit.idata`` is first
used, never saved: they are reproducible from the fit):

* ``posterior_predictive``: one simulated loss per posterior draw and run,
  from the draw's law value and noise (shape (chains, draws, runs), like the
  pointwise log-likelihood);
* ``prior``: :data:`PRIOR_DRAWS` draws of every parameter and sigma from the
  card's priors, on their natural scale (a scaled prior is drawn on the
  dimensionless value and mapped exactly as the sampler maps its draws);
* ``prior_predictive``: one simulated loss per prior draw and run.

With them ``az.plot_ppc(fit.idata)``, ``az.plot_ppc(fit.idata, group="prior")``,
``az.plot_loo_pit(fit.idata, y="loss")`` and ``az.plot_dist`` work.

:func:`loo_pit` is the leave-one-out probability integral transform of every
run: ``P(y_new <= y_i)`` under the posterior predictive of run ``i`` fitted
without it, from PSIS-LOO weights and the noise model's exact CDF (no
simulation noise).  If the fit's predictive distributions are calibrated the
values are close to uniform on (0, 1); :func:`pit_check` says in words whether
they are, and how they are not (too narrow, too wide, biased).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PRIOR_DRAWS", "PitCheck", "loo_pit", "pit_check", "predictive_groups", "prior_draws"]

#: Draws in the ``prior`` and ``prior_predictive`` groups (one chain).
PRIOR_DRAWS = 1000


def prior_draws(law, refs: dict, size: int = PRIOR_DRAWS, seed: int = 0, pooling=None) -> dict:
    """``size`` draws of every parameter and sigma (and a ``pooling``'s sites) from the priors, natural
    scale: name -> (size,)."""
    from ..sampler import constrained_draws, latent_sites

    rng = np.random.default_rng([seed, 2])
    positions = []
    for prior in latent_sites(law).values():
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            positions.append(prior.unconstrain(prior.sample(rng, size)))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        draws = constrained_draws(law, np.stack(positions, axis=-1), refs)
    if pooling is not None:
        draws.update(pooling.from_standard({name: prior.sample(rng, size) for name, prior in pooling.prior_sites().items()}))
    return draws


def _simulate(law, noise: str, params: dict, inputs: dict, refs: dict, rng, pooling=None) -> np.ndarray:
    """One loss per draw and run: params name -> (..., ) arrays; returns (..., runs)."""
    from ..noise import noise_location, noise_sample, noise_scale

    draws = {k: np.asarray(v, float)[..., None] for k, v in params.items()}
    if pooling is not None:
        from ..inference.pooling import run_params

        draws = run_params(pooling, law, draws, refs)
    xs = {k: np.asarray(v, float) for k, v in inputs.items()}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        location = noise_location(noise, law, draws, xs, xp="numpy")
        scale = noise_scale(noise, draws["sigma"], refs["loss_ref"])
        return noise_sample(noise, location, scale, rng)


def predictive_groups(fit) -> dict:
    """``{"posterior_predictive": {"loss": ...}, "prior": {...}, "prior_predictive": {"loss": ...}}``."""
    seed = int(fit.settings.get("seed", 0) or 0)
    inputs = fit.runs.input_arrays()
    posterior = {k: np.asarray(fit.samples.posterior[k], float) for k in fit.var_names}
    pooling = getattr(fit, "pooling", None)
    post = _simulate(fit.law, fit.noise, posterior, inputs, fit.refs, np.random.default_rng([seed, 3]), pooling)
    prior = {k: v[None, :] for k, v in prior_draws(fit.law, fit.refs, PRIOR_DRAWS, seed, pooling).items()}
    prior_pred = _simulate(fit.law, fit.noise, prior, inputs, fit.refs, np.random.default_rng([seed, 4]), pooling)
    return {"posterior_predictive": {"loss": post}, "prior": prior, "prior_predictive": {"loss": prior_pred}}


# --------------------------------------------------------------------------- LOO-PIT


def _psis_weights(log_lik: np.ndarray) -> np.ndarray:
    """Normalised PSIS-LOO weights (draws, runs) from the pointwise log-likelihood (chains, draws, runs)."""
    import warnings

    from ..azstats import _az

    ll = np.asarray(log_lik, float).reshape(-1, log_lik.shape[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log_w, _ = _az().psislw(-ll.T)          # (runs, draws), normalised in log space
    w = np.exp(np.asarray(log_w, float).T)
    return w / w.sum(axis=0, keepdims=True)


def loo_pit(fit) -> np.ndarray:
    """LOO-PIT value of every run: shape (runs,), in [0, 1] (see the module docstring)."""
    from ..noise import noise_cdf, noise_location, noise_scale

    params = {k: fit.draws(k)[:, None] for k in fit.var_names}
    xs = {k: np.asarray(v, float)[None, :] for k, v in fit.runs.input_arrays().items()}
    y = fit.runs.response_array()[None, :]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        location = noise_location(fit.noise, fit.law, params, xs, xp="numpy")
        scale = noise_scale(fit.noise, params["sigma"], fit.refs["loss_ref"])
        cdf = np.asarray(noise_cdf(fit.noise, y, location, scale), float)
    w = _psis_weights(fit.log_likelihood)
    return np.clip(np.nansum(w * cdf, axis=0), 0.0, 1.0)


@dataclass(frozen=True)
class PitCheck:
    """Whether LOO-PIT values look uniform, with the numbers behind the words."""

    n: int
    ks: float             # sup |ECDF(u) - u|
    ks_bound: float       # its approximate 95% bound under uniformity for n values
    outside_90: float     # share of runs outside their central 90% LOO predictive interval (0.10 expected)
    inside_50: float      # share inside the central 50% interval (0.50 expected)
    mean: float           # mean PIT (0.5 expected; above: runs above their predictions)
    calibrated: bool
    verdict: str          # one sentence


def _ks_bound(n: int) -> float:
    """Approximate 95% critical value of the one-sample Kolmogorov-Smirnov distance (Stephens 1970)."""
    return 1.358 / (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n))


def pit_check(pit) -> PitCheck:
    """Judge LOO-PIT values: uniform (calibrated) unless the KS distance exceeds its 95% bound.

    The bound treats the values as independent, which leave-one-out values
    are only approximately: read the verdict as a screen, not a test.
    """
    u = np.sort(np.asarray(pit, float))
    n = u.size
    grid = np.arange(1, n + 1) / n
    ks = float(max(np.max(grid - u), np.max(u - (grid - 1.0 / n))))
    bound = _ks_bound(n)
    outside = float(np.mean((u < 0.05) | (u > 0.95)))
    inside = float(np.mean((u >= 0.25) & (u <= 0.75)))
    mean = float(u.mean())
    calibrated = ks <= bound
    numbers = (f"{100 * outside:.0f}% of the {n} runs outside their 90% leave-one-out interval (10% expected), "
               f"{100 * inside:.0f}% inside their 50% interval (50% expected)")
    if calibrated:
        verdict = (f"looks calibrated: the LOO-PIT values are consistent with uniform (KS distance {ks:.2f}, "
                   f"below its 95% bound {bound:.2f}); {numbers}.")
    else:
        how = []
        if outside > 0.10 + 2 * math.sqrt(0.09 / n):
            how.append("predictive intervals too narrow (too many runs in the tails)")
        if inside < 0.5 - 2 * math.sqrt(0.25 / n) and not how:
            how.append("predictive intervals too narrow")
        if inside > 0.5 + 2 * math.sqrt(0.25 / n):
            how.append("predictive intervals too wide (runs bunched in the middle)")
        if abs(mean - 0.5) > 2 * math.sqrt(1 / 12 / n):
            how.append("runs mostly " + ("above" if mean > 0.5 else "below") + " their predictions (biased)")
        shape = "; ".join(how) if how else "a non-uniform shape"
        verdict = (f"does not look calibrated: the LOO-PIT values depart from uniform (KS distance {ks:.2f} "
                   f"> 95% bound {bound:.2f}): {shape}; {numbers}.")
    return PitCheck(n=n, ks=ks, ks_bound=bound, outside_90=outside, inside_50=inside, mean=mean,
                    calibrated=calibrated, verdict=verdict)
