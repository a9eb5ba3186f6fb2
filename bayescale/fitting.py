"""Fit a law to runs with NUTS.

Defaults that just work: 4 chains run in parallel over host CPU devices
(several chains per device in turn when there are fewer devices than
chains), 1000 warm-up + 1000 draws each, a dense mass matrix, every chain
started near a quick robust optimum (see
:mod:`bayescale.init`), a progress bar when stderr is a terminal.  The same
seed gives bit-identical draws.  The sampler is :mod:`bayescale.nuts` (Stan's
NUTS and warm-up) on the NumPyro model's density; the data are arguments of
the compiled program, so JAX's caches reuse it for any data of the same law
and shape (see :mod:`bayescale.sampler`).
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import replace
from importlib import metadata

import numpy as np

from .cards import resolve_law
from .checks import check_int
from .diagnostics import diagnose
from .errors import BayescaleError, ConvergenceWarning
from .init import quick_optimum
from .model import reference_points
from .noise import NOISE_MODELS, noise_location, noise_logpdf, noise_scale
from .result import Fit, Samples
from .runs import prepare_runs
from .sampler import run_chains

__all__ = ["fit"]

def _versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for pkg in ("bayescale", "numpyro", "jax", "jaxlib", "arviz", "numpy", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def pointwise_log_likelihood(law, noise: str, posterior: dict, inputs: dict, loss, refs: dict):
    """log p(loss_i | draw) of every run under every draw: array (chains, draws, runs), float64.

    The density of the raw response for every noise model (Jacobian included),
    the same as the NumPyro model's observed site, computed in numpy.
    """
    params = {k: np.asarray(v, float)[..., None] for k, v in posterior.items()}
    xs = {k: np.asarray(v, float) for k, v in inputs.items()}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        location = noise_location(noise, law, params, xs, xp="numpy")
        scale = noise_scale(noise, params["sigma"], refs["loss_ref"])
        return noise_logpdf(noise, np.asarray(loss, float), location, scale)


def fit(runs, law=None, *, formula=None, priors=None, card=None, noise=None, mapping=None,
        chains: int = 4, warmup: int = 1000, draws: int = 1000, seed: int = 0,
        target_accept: float = 0.8, dense_mass: bool = True, max_tree_depth: int = 10,
        progress: bool | None = None, run=None, group=None, checkpoints: str = "all") -> Fit:
    """Fit a scaling law by NUTS and return a frozen :class:`~bayescale.result.Fit`.

    ``runs``: a DataFrame or CSV path.  The law is one of ``law`` (a built-in
    name such as ``"chinchilla"`` or a :class:`~bayescale.cards.Law`),
    ``formula`` + ``priors`` (e.g. ``"E + A / N**alpha"`` and
    ``{"E": "LogNormal(0, 1)", ...}``) or ``card`` (a TOML file).  ``noise``
    overrides the card's noise model; ``mapping`` renames columns
    (``{"loss": "val_loss"}``).  ``run``: the column naming the training run
    of each row (checkpoints of one run), ``group``: column(s) of run groups,
    ``checkpoints``: ``"all"``, ``"final"`` or ``"logspaced:K"`` per run
    (see :mod:`bayescale.evidence.structure`; validated and thinned before
    the fit, recorded in ``fit.structure``).
    """
    t0 = time.perf_counter()
    law = resolve_law(law, formula=formula, priors=priors, card=card)
    noise = noise or law.noise
    if noise not in NOISE_MODELS:
        raise BayescaleError(f"noise must be one of {', '.join(NOISE_MODELS)}, got {noise!r}")
    chains = check_int("chains", chains, 1)
    warmup = check_int("warmup", warmup, 10)
    draws = check_int("draws", draws, 10)
    seed = check_int("seed", seed, 0, 2**32 - 1)
    max_tree_depth = check_int("max_tree_depth", max_tree_depth, 2, 15)
    if not (isinstance(target_accept, (int, float)) and 0 < target_accept < 1):
        raise BayescaleError(f"target_accept must be in (0, 1), got {target_accept!r}")
    structure = None
    if run is not None or group is not None or checkpoints != "all":
        from .evidence.structure import apply_structure

        frame, structure, source = apply_structure(runs, law, mapping=mapping, run=run, group=group,
                                                   checkpoints=checkpoints)
        table = replace(prepare_runs(frame, law, noise=noise), source=source)
    else:
        table = prepare_runs(runs, law, mapping=mapping, noise=noise)

    inputs = table.input_arrays()
    loss = table.response_array()
    refs = reference_points(law, inputs, loss)
    t_init = time.perf_counter()
    start = quick_optimum(law, noise, inputs, loss, refs, seed=seed)
    start.pop("_natural")
    t_init = time.perf_counter() - t_init

    if progress is None:
        progress = sys.stderr.isatty()

    t_mcmc = time.perf_counter()
    posterior, stats, method, t_chains = run_chains(
        law, noise, start, inputs, refs, loss, chains=chains, warmup=warmup, draws=draws, seed=seed,
        target_accept=float(target_accept), max_tree_depth=max_tree_depth, dense_mass=dense_mass,
        progress=progress)
    t_mcmc = time.perf_counter() - t_mcmc

    t_post = time.perf_counter()
    ll = pointwise_log_likelihood(law, noise, posterior, inputs, loss, refs)
    steps = stats["n_steps"]
    sample_stats = {
        "diverging": stats["diverging"],
        "n_steps": steps,
        "tree_depth": stats["tree_depth"],
        "energy": stats["energy"].astype(float),
        "acceptance_rate": stats["accept_prob"].astype(float),
        "step_size": stats["step_size"].astype(float),
    }
    var_names = list(law.param_names) + ["sigma"]
    diagnostics = diagnose(posterior, sample_stats, var_names, max_tree_depth)
    t_post = time.perf_counter() - t_post

    settings = {"chains": chains, "warmup": warmup, "draws": draws, "seed": seed,
                "target_accept": target_accept, "dense_mass": dense_mass,
                "max_tree_depth": max_tree_depth, "chain_method": method, "sampler": "bayescale.nuts",
                "mapping": dict(mapping or {}) if isinstance(mapping, dict) else list(mapping or [])}
    grads = int(steps.sum())
    timings = {"init_s": t_init, "mcmc_s": t_mcmc, **t_chains, "postprocess_s": t_post,
               "total_s": time.perf_counter() - t0, "gradients_sampling": grads,
               "ess_bulk_per_s": min(diagnostics.ess_bulk.values()) / max(t_chains["sampling_s"], 1e-9)}
    result = Fit(samples=Samples(posterior, ll, sample_stats), law=law, noise=noise, runs=table, refs=refs, settings=settings,
                 versions=_versions(), diagnostics=diagnostics, timings=timings, structure=structure)
    if not diagnostics.passed:
        warnings.warn(f"fit of {law.name!r} failed the diagnostics gate: "
                      + "; ".join(diagnostics.problems) + ". Try: " + "; ".join(diagnostics.advice),
                      ConvergenceWarning, stacklevel=2)
    return result
