"""Run effects, and group offsets of the loss's level integrated out of the likelihood.

``fit(runs, law, run="model", run_effects=True)`` gives each run a loss-level offset
``u ~ Normal(0, tau)`` on log loss (every checkpoint of the run shares it); ``offsets="marginal"``
does the same for the groups of ``group=`` with ``vary=["L_c"]``.  The offset moves the card's loss
at the centre ``L_c``, which every natural parameter is proportional to (:func:`level_parameter`
checks it), so with Normal noise on log loss (``normal_log``) group g's k log residuals
``r = log y - log mu`` are jointly Normal with covariance ``sigma^2 I + tau^2 11'``: the offsets
integrate out in closed form (:func:`marginal_log_likelihood`), the sampler sees the shared
parameters, sigma and tau only (no funnel, no dimension per group), and each draw's offsets follow
afterwards from their exact conditional (:func:`draw_marginal_offsets`)::

    u_g | rest ~ Normal(tau^2 S_g / (sigma^2 + k_g tau^2), tau^2 sigma^2 / (sigma^2 + k_g tau^2)),  S_g = sum r

The offsets are then posterior sites ``u_L_c_<i>`` like those of a centred
:class:`~bayescale.inference.pooling.Pooling` (``Pooling.marginal`` is True), so group views,
pointwise log-likelihoods and fit files work unchanged.  Run effects are refused where the runs do
not repeat a configuration (:func:`check_run_replicates`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..errors import BayescaleError
from .pooling import Pooling, apply_offsets, make_pooling

__all__ = ["MIN_REPLICATE_RUNS", "RUN_SCALE_PRIOR", "check_marginal", "check_run_replicates", "draw_marginal_offsets",
           "level_parameter", "marginal_log_likelihood", "run_pooling"]

#: the prior of the run scale of run effects (``fit(..., run_effects=True)``): between-run scatter of
#: final losses around the law, learned from Porian et al.'s setups (``benchmarks/s1_prior.py``: their
#: noise scales 0.013-0.062, median 0.031); the calibration's new-run offset ``s0`` has the same prior
RUN_SCALE_PRIOR = "LogNormal(-3.48, 0.75)"

#: runs beyond the number of distinct run configurations that run effects need (their scale is learned
#: from how runs of one configuration differ)
MIN_REPLICATE_RUNS = 2


def check_run_replicates(structure, inputs: dict) -> None:
    """Refuse run effects where a run's offset and the law's run-level terms are confounded.

    A run's *configuration* is its value of every input that is constant within each run (N for
    checkpoints of a model-size sweep).  With one run per configuration, what separates a run's offset
    from the law's size term is only the law's shape in N, and the run-level terms are then learned
    from each run's own curve along D.  Measured on Gemstones' 16 runs below 1B parameters (every run
    its own N; 560 checkpoints): the run scale came out at 0.17 (17% between runs), the floor at 0.59
    (0.14-1.03), and the ~2B runs were predicted 33-42% low (1.47-1.73 against 2.50-2.64, outside the 90%
    band); without run effects the same fit predicts them within 1%.  So run effects need at least
    :data:`MIN_REPLICATE_RUNS` runs more than configurations (seeds or repeats of one configuration),
    where the offsets' scale is learned from runs that differ in nothing else.
    """
    import pandas as pd

    per_run = pd.DataFrame({k: np.asarray(v, float) for k, v in inputs.items()}).groupby(
        np.asarray(structure.run_ids, dtype=object), sort=False)
    fixed = [k for k in inputs if bool((per_run[k].nunique() == 1).all())]
    configs = len(per_run.first()[fixed].drop_duplicates()) if fixed else 1
    runs = per_run.ngroups
    if runs - configs < MIN_REPLICATE_RUNS:
        what = f"{configs} distinct values of {', '.join(fixed)}" if fixed else "one configuration"
        raise BayescaleError(
            f"run effects need runs that repeat a configuration (seeds): column {structure.run!r} has {runs} runs "
            f"and {what}; with (almost) one run per configuration only the law's shape in "
            f"{'/'.join(fixed) or 'the run-level inputs'} tells a run's offset from the law (measured on Gemstones' "
            f"runs of distinct N: the offsets took up 17% between runs and larger runs were predicted 33-42% low). "
            f"Give at least "
            f"{MIN_REPLICATE_RUNS} runs more than configurations, or fit without run effects and calibrate "
            "(bayescale.calibrate: a new run's offset is learned there)")


def run_pooling(law, noise: str, natural: dict, inputs: dict, refs: dict, structure):
    """The run effects of ``fit(..., run_effects=True)``: the loss level varies by run, offsets integrated out."""
    level = level_parameter(law, noise, natural, inputs, refs)
    if level is None:
        raise BayescaleError(f"run effects move each run's loss by a factor: law {law.name!r} has no parameter "
                             "its loss is proportional to (the built-in cards' L_c); use a built-in card")
    check_run_replicates(structure, inputs)
    pooling = replace(make_pooling(law, structure.run_ids, {level: RUN_SCALE_PRIOR}, structure.run), marginal=True)
    check_marginal(pooling, law, noise, natural, inputs, refs)
    return pooling


def level_parameter(law, noise: str, natural: dict, inputs: dict, refs: dict) -> str | None:
    """The sampled coordinate the law's loss is proportional to (moving its log by 0.1 moves every run's
    log mean by 0.1, checked at ``natural`` on the runs' inputs), or None."""
    from ..noise import noise_location

    xs = {k: np.asarray(v, float) for k, v in inputs.items()}
    params = {k: np.asarray([v], float) for k, v in natural.items()}
    base = None
    for p in law.params:
        if not p.prior.positive or p.name not in law.coord_names:
            continue
        probe = make_pooling(law, ["a", "b"], [p.name], "_")
        with np.errstate(all="ignore"):
            if base is None:
                base = noise_location("normal_log", law, params, xs, xp="numpy")
            moved, _ = apply_offsets(probe, law, params, {}, refs, {p.name: 0.1}, np, "numpy")
            shifted = noise_location("normal_log", law, {**params, **moved}, xs, xp="numpy")
        if np.all(np.isfinite(shifted)) and np.allclose(shifted - base, 0.1, rtol=0, atol=1e-6):
            return p.name
    return None


def check_marginal(pooling: Pooling, law, noise: str, natural: dict, inputs: dict, refs: dict) -> None:
    """Refuse integrated-out offsets where they are not exact: the noise must be Normal on log loss and
    the one varying parameter must scale the whole loss (:func:`level_parameter`)."""
    level = level_parameter(law, noise, natural, inputs, refs)
    what = f"the parameter the loss is proportional to ({level!r} for law {law.name!r})" if level else \
        f"a parameter the loss is proportional to, and law {law.name!r} has none"
    if noise != "normal_log":
        raise BayescaleError(f"integrated-out offsets (offsets='marginal', run effects) need noise='normal_log' "
                             f"(Normal on log loss: the offsets then integrate out exactly), got noise={noise!r}")
    if len(pooling.vary) != 1 or pooling.vary[0] != level:
        raise BayescaleError(f"integrated-out offsets (offsets='marginal', run effects) move the loss's level: "
                             f"vary exactly one parameter, {what}; got vary={list(pooling.vary)}")


def _segment_sums(values, index, count: int, xp):
    if xp.__name__.startswith("jax"):
        import jax

        return jax.ops.segment_sum(values, index, num_segments=count)
    out = np.zeros(values.shape[:-1] + (count,))
    for g in range(count):
        out[..., g] = values[..., index == g].sum(axis=-1)
    return out


def marginal_log_likelihood(resid, log_y, weight, index, groups: int, sigma, tau, xp):
    """log p(y | shared parameters, sigma, tau) of Normal-on-log noise with every group's log-level
    offset ``u_g ~ Normal(0, tau)`` integrated out: the sum over groups of the k_g-variate Normal density
    of the log residuals ``resid`` (covariance sigma^2 I + tau^2 11'), with the log-normal Jacobian
    ``-log y``; ``weight`` (1 or 0 per row) leaves padded rows out.  The residual sum of squares is taken
    around each group's mean (two passes), which float32 keeps accurate."""
    k = _segment_sums(weight, index, groups, xp)
    s1 = _segment_sums(weight * resid, index, groups, xp)
    mean = s1 / xp.maximum(k, 1.0)
    within = _segment_sums(weight * (resid - mean[index]) ** 2, index, groups, xp)
    var, t2 = sigma * sigma, tau * tau
    quad = within / var + k * mean * mean / (var + k * t2)
    per_group = -k * (0.5 * math.log(2 * math.pi) + xp.log(sigma)) - 0.5 * xp.log1p(k * t2 / var) - 0.5 * quad
    return xp.sum(per_group) - xp.sum(weight * log_y)


def draw_marginal_offsets(pooling: Pooling, law, posterior: dict, inputs: dict, loss, refs: dict, seed: int) -> dict:
    """Each draw's group offsets ``u_<P>_<i>`` from their exact conditional given that draw's shared
    parameters, sigma and tau (the offsets a sampler of the latent-offset model would have drawn)."""
    from ..noise import noise_location

    name = pooling.vary[0]
    params = {k: np.asarray(v, float) for k, v in posterior.items()}
    shape = np.shape(params["sigma"])
    xs = {k: np.asarray(v, float) for k, v in inputs.items()}
    with np.errstate(all="ignore"):
        location = noise_location("normal_log", law, {k: v[..., None] for k, v in params.items()}, xs, xp="numpy")
    resid = np.log(np.asarray(loss, float)) - np.broadcast_to(location, shape + (len(loss),))
    index = np.asarray(pooling.index)
    groups = len(pooling.levels)
    k = np.bincount(index, minlength=groups).astype(float)
    s1 = _segment_sums(resid, index, groups, np)
    var, t2 = (params["sigma"] ** 2)[..., None], (params[pooling.tau(name)] ** 2)[..., None]
    mean = t2 * s1 / (var + k * t2)
    sd = np.sqrt(t2 * var / (var + k * t2))
    rng = np.random.default_rng([seed, 11])
    u = mean + sd * rng.standard_normal(mean.shape)
    return {pooling.u(name, i): u[..., i] for i in range(groups)}
