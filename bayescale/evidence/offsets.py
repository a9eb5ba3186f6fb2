"""A new run's offset from the law, for a calibration learned on checkpoint data.

With checkpoints of a few runs, a fit's noise scale measures the scatter *within* a run, so a new
run's calibrated band (:func:`bayescale.evidence.calibration.calibrate`) also gets an offset
``Normal(0, s0)``: :func:`learn_offset_sd` gives s0's posterior on a grid from the training runs'
mean residuals and a prior (:data:`DEFAULT_S0_PRIOR`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..inference.run_effects import RUN_SCALE_PRIOR
from ..noise import apply_link, link
from .calibration import _S1_GRID, _prior_log_density

__all__ = ["DEFAULT_S0_PRIOR", "learn_offset_sd"]

#: Prior on s0, the sd of a *new* run's offset from the law (log loss) when the fit saw checkpoints of
#: its runs (their noise scale then measures the scatter within a run only).  From the noise scale of
#: Chinchilla fits to Porian et al.'s final-loss runs (benchmarks/s1_prior.py); the same prior as the
#: run scale of a fit with run effects.
DEFAULT_S0_PRIOR = RUN_SCALE_PRIOR


def _run_offsets(fit) -> tuple[np.ndarray, float, float] | None:
    """Per training run: the mean of its link-scale residuals from the posterior median law; the mean
    within-run variance of such a mean; and the between-run sd the fit's noise already carries
    (robust: the residuals' scale minus their scale within runs, in quadrature).  None without
    checkpoints (one row per run)."""
    st = fit.structure
    if st is None or st.run_ids is None or (st.max_checkpoints or 1) <= 1:
        return None
    from ..noise import noise_location

    params = {k: np.median(fit.draws(k)) for k in fit.var_names}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        loc = np.asarray(noise_location(fit.noise, fit.law, params, fit.runs.input_arrays(), xp="numpy"), float)
    g = apply_link(fit.noise, fit.runs.response_array())[0]
    e = pd.Series(g - loc)
    ids = np.asarray(st.run_ids)
    resid = e.groupby(ids).agg(["mean", "size"])
    scale = float(params["sigma"]) * (fit.refs["loss_ref"] if link(fit.noise) == "identity" else 1.0)

    def robust(x):
        x = np.asarray(x, float)
        return float(np.median(np.abs(x - np.median(x))) / 0.6745)

    within = robust(e - e.groupby(ids).transform("mean"))
    carried = math.sqrt(max(robust(e) ** 2 - within ** 2, 0.0))
    return resid["mean"].to_numpy(), float(np.mean(scale ** 2 / resid["size"].to_numpy())), carried


def _absorbed(fit) -> int:
    """How many runs' offsets the law can fit exactly: its level and N term (3), or its level (1)."""
    return 3 if any(spec.kind == "parameters" for spec in fit.law.inputs) else 1


def learn_offset_sd(fit, prior: str | None = None):
    """Posterior of s0 on a grid (``(grid, weights, n_runs, carried)``) or None without checkpoint data.

    With R runs the law absorbs ``_absorbed`` of their offsets, so ``sum b_r^2`` is
    ``(s0^2 + v) chi^2_{R - k}`` (REML-style); with R <= k the data say nothing and the prior stands.
    """
    got = _run_offsets(fit)
    if got is None:
        return None
    b, v, carried = got
    dof = max(len(b) - _absorbed(fit), 0)
    grid = _S1_GRID
    var = grid ** 2 + v
    loglik = -0.5 * dof * np.log(var) - 0.5 * float(np.sum(b ** 2)) / var if dof else np.zeros(len(grid))
    logpost = _prior_log_density(prior or DEFAULT_S0_PRIOR, grid) + loglik
    w = np.exp(logpost - logpost.max())
    return grid, w / w.sum(), len(b), carried
