"""Fit a law to runs with NUTS.

Defaults that just work: 4 chains run in parallel over host CPU devices
(several chains per device in turn when there are fewer devices than
chains), 1000 warm-up + 1000 draws each, a dense mass matrix, every chain
started near a quick robust optimum (see :mod:`bayescale.init`), moved
uniformly by up to 3 posterior standard deviations (its Gauss-Newton
estimate there) and at most 0.1 per unconstrained coordinate, progress on stderr (a bar with an ETA on a terminal,
plain log lines otherwise; see :mod:`bayescale.progress`).  The same
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
from .checks import check_int, check_law_finite
from .diagnostics import diagnose, structure_advice
from .errors import BayescaleError, ConvergenceWarning, FitRetried
from .init import quick_optimum
from .model import reference_points
from .noise import NOISE_MODELS, noise_location, noise_logpdf, noise_scale
from .result import Fit, Samples
from .runs import prepare_runs
from .sampler import run_chains

__all__ = ["fit", "retry_form", "retry_settings"]

START_JITTER = 0.1       # the widest start jitter per unconstrained coordinate


def _versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for pkg in ("bayescale", "numpyro", "jax", "jaxlib", "arviz", "numpy", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def pointwise_log_likelihood(law, noise: str, posterior: dict, inputs: dict, loss, refs: dict,
                             chunk: int = 2048, pooling=None):
    """log p(loss_i | draw) of every run under every draw: array (chains, draws, runs).

    The density of the raw response for every noise model (Jacobian included),
    the same as the NumPyro model's observed site, computed in numpy, ``chunk``
    runs at a time (so the temporaries stay small whatever the number of runs).
    float64, or float32 when there are more than
    :data:`~bayescale.storage.fitfile.STORED_LOG_LIKELIHOOD_MAX` values (10^5 runs
    would take 3.2 GB in float64).  ``pooling``: the varying parameters take each run's group's value.
    """
    from .storage.fitfile import STORED_LOG_LIKELIHOOD_MAX

    params = {k: np.asarray(v, float)[..., None] for k, v in posterior.items()}
    if pooling is not None:
        from .inference.pooling import run_params

        params = run_params(pooling, law, params, refs)     # the varying ones per run: (..., runs)
    xs = {k: np.asarray(v, float) for k, v in inputs.items()}
    loss = np.asarray(loss, float)
    n = len(loss)
    shape = np.shape(params["sigma"])[:-1] + (n,)
    out = np.empty(shape, np.float64 if np.prod(shape) <= STORED_LOG_LIKELIHOOD_MAX else np.float32)
    scale = noise_scale(noise, params["sigma"], refs["loss_ref"])
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            here = {k: (v[..., part] if np.shape(v)[-1] == n else v) for k, v in params.items()}
            location = noise_location(noise, law, here, {k: v[part] for k, v in xs.items()}, xp="numpy")
            out[..., part] = noise_logpdf(noise, loss[part], location, scale)
    return out


def _references(law, inputs: dict, loss, reference) -> tuple[dict, dict]:
    """The reference points (``<input>_ref``, ``loss_ref``) and where each came from."""
    refs = reference_points(law, inputs, loss)
    source = {k: "data" for k in refs}
    if not law.response.scale:
        source["loss_ref"] = "fixed (the response is not scaled)"
    if reference is None:
        return refs, source
    if not isinstance(reference, dict):
        raise BayescaleError(f"reference must be a dict such as {{'loss': 3.0}}, got {type(reference).__name__}")
    names = {"loss": "loss_ref", law.response.name: "loss_ref"} | {i: f"{i}_ref" for i in law.input_names}
    for key, value in reference.items():
        if key not in names:
            raise BayescaleError(f"reference {key!r} is not an input or the response of law {law.name!r}; "
                                 f"give one of {sorted(set(names))}")
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 3e38):
            raise BayescaleError(f"reference {key!r} must be a positive number below 3e38, got {value!r}")
        if names[key] == "loss_ref" and not law.response.scale:
            raise BayescaleError(f"law {law.name!r} does not scale its priors by the response; "
                                 f"reference {key!r} has no effect")
        refs[names[key]] = float(value)
        source[names[key]] = "given"
    return refs, source


def _pooling(law, frame, structure, vary, n_runs: int, offsets: str):
    """The :class:`~bayescale.inference.pooling.Pooling` of ``vary`` over the fit's one group column."""
    from .inference.pooling import make_pooling

    if structure is None or not structure.groups:
        raise BayescaleError("vary needs the column of the groups whose parameters differ: "
                             "group='family' (CLI --group COL)")
    if len(structure.groups) != 1:
        raise BayescaleError(f"vary pools over one group column; group names {list(structure.groups)}: "
                             "give one (combine columns into one label first if groups are crossed)")
    column = structure.groups[0]
    labels = frame[column]
    if len(labels) != n_runs:
        raise BayescaleError(f"internal: {len(labels)} group labels for {n_runs} runs")
    if offsets not in ("auto", "centred", "non-centred", "marginal"):
        raise BayescaleError(f"offsets must be 'auto', 'centred', 'non-centred' or 'marginal', got {offsets!r}")
    return make_pooling(law, labels.tolist(), vary, column, centred=offsets != "non-centred")


#: Divergences (share of the draws) below which a centred fit's retry keeps its form (smaller steps only)
FEW_DIVERGENCES = 0.01


def retry_form(pooling, diagnostics, draws: int):
    """The form of the group offsets for a second attempt: many divergences (at least
    :data:`FEW_DIVERGENCES` of the ``draws``) of a centred fit are the funnel between a small group scale
    and offsets the data do not pin down (non-centred removes it); a few are rare visits to the funnel's
    neck, which the retry's smaller steps (target acceptance 0.99) pass, so the form the data chose stays
    (measured on 4 simulated families whose offsets the data pin: 2 divergences in 4000 draws; switching
    to non-centred then saturated the tree depth in 1553 of 4000 draws, the centred form at 0.99 passed);
    slow mixing of a fit with non-centred offsets and no divergences is the reverse funnel of offsets the
    data do pin down (centred removes it).  Otherwise the same form; integrated-out offsets have no funnel
    and stay as they are."""
    if pooling.marginal:
        return pooling
    if diagnostics.divergences >= FEW_DIVERGENCES * draws and pooling.form != "non-centred":
        return pooling.with_form(False)
    if diagnostics.divergences == 0 and pooling.form != "centred":
        return pooling.with_form(True)
    return pooling


def _pooling_start(pooling) -> dict:
    """Start values of the pooled sites: no offsets, a small group scale (the offsets' sampler moves from there)."""
    out = {}
    for name, prior in pooling.priors().items():       # the sampled sites
        out[name] = min(0.1, float(prior.median())) if name.startswith("tau_") else 0.0
    return out


def retry_settings(diagnostics, run: dict) -> dict:
    """The sampler settings for a second attempt after a failed gate: what each failure calls for.

    Divergences: a target acceptance of 0.99 (smaller steps).
    A saturated tree depth: two more levels (at most 15).  R-hat or ESS: twice the warm-up,
    four times the draws and a target acceptance of at least 0.95 (a longer warm-up adapts
    the metric to a ridge better, ESS grows with the draws, and smaller steps follow a
    narrow ridge's curvature).  Measured on the 9 of 100 simulated Chinchilla pilots that
    failed the gate twice with twice the warm-up and draws alone: 9 of 9 pass with these.
    Divergences go straight to 0.99: the few that remain at 0.95 come from a flat direction
    ending in a steep wall (a sigmoid's floor meeting the data's lowest accuracies), which
    only small steps cross; SBC of ``sigmoid_metric``, 100 replications: 11 of 100 still fail
    after a 0.95 refit, 3 of 100 after a 0.99 one (2 x warm-up at 0.95: 8 of the 11 still fail).
    The gate itself is never changed.
    """
    again = dict(run)
    problems = " ".join(diagnostics.problems)
    if diagnostics.divergences > 0:
        again["target_accept"] = max(0.99, run["target_accept"])
    if diagnostics.saturated > 0:
        again["max_tree_depth"] = min(15, run["max_tree_depth"] + 2)
    if "R-hat" in problems or "effective sample size" in problems or again == run:
        again["warmup"] = 2 * run["warmup"]
        again["draws"] = 4 * run["draws"]
        again["target_accept"] = max(again["target_accept"], 0.95)
    return again


def _describe(changed: dict) -> str:
    names = {"target_accept": "target acceptance", "max_tree_depth": "max tree depth",
             "warmup": "warm-up", "draws": "draws per chain", "offsets": "group offsets"}
    return ", ".join(f"{names.get(k, k)} {v}" for k, v in changed.items())


def _sample(law, noise, start, inputs, refs, loss, run: dict, progress: bool, pooling=None, jitter=START_JITTER):
    """One NUTS run with the settings ``run``: (Samples, Diagnostics, chain method, timings)."""
    t_mcmc = time.perf_counter()
    posterior, stats, method, t_chains = run_chains(law, noise, start, inputs, refs, loss, progress=progress,
                                                    pooling=pooling, jitter=jitter, **run)
    if pooling is not None and pooling.marginal:
        from .inference.pooling import GROUP_INPUT
        from .inference.run_effects import draw_marginal_offsets

        law_inputs = {k: v for k, v in inputs.items() if k != GROUP_INPUT}
        posterior.update(draw_marginal_offsets(pooling, law, posterior, law_inputs, loss, refs, run["seed"]))
    t_mcmc = time.perf_counter() - t_mcmc
    t_post = time.perf_counter()
    steps = stats["n_steps"]
    sample_stats = {
        "diverging": stats["diverging"],
        "n_steps": steps,
        "tree_depth": stats["tree_depth"],
        "energy": stats["energy"].astype(float),
        "acceptance_rate": stats["accept_prob"].astype(float),
        "step_size": stats["step_size"].astype(float),
    }
    var_names = list(law.reported_names) + ["sigma"] + ([] if pooling is None else list(pooling.site_names))
    diagnostics = diagnose(posterior, sample_stats, var_names, run["max_tree_depth"], noise=noise)
    t_post = time.perf_counter() - t_post
    timings = {"mcmc_s": t_mcmc, **t_chains, "postprocess_s": t_post, "gradients_sampling": int(steps.sum()),
               "ess_bulk_per_s": min(diagnostics.ess_bulk.values()) / max(t_chains["sampling_s"], 1e-9)}
    return Samples(posterior, None, sample_stats), diagnostics, method, timings


def fit(runs, law=None, *, formula=None, priors=None, card=None, noise=None, mapping=None,
        chains: int = 4, warmup: int = 1000, draws: int = 1000, seed: int = 0,
        target_accept: float = 0.8, dense_mass: bool = True, max_tree_depth: int = 10,
        reference: dict | None = None, retry: bool = True, progress: bool | None = None, run=None, group=None,
        checkpoints: str = "all", vary=None, offsets: str = "auto", run_effects: bool = False) -> Fit:
    """Fit a scaling law by NUTS and return a frozen :class:`~bayescale.result.Fit`.

    ``runs``: a DataFrame or CSV path.  The law is one of ``law`` (a built-in
    name such as ``"chinchilla"`` or a :class:`~bayescale.cards.Law`),
    ``formula`` + ``priors`` (e.g. ``"E + A / N**alpha"`` and
    ``{"E": "LogNormal(0, 1)", ...}``) or ``card`` (a TOML file).  ``noise``
    overrides the card's noise model; ``mapping`` renames columns
    (``{"loss": "val_loss"}``).  ``reference`` fixes reference points that the
    card's priors are scaled by, e.g. ``{"loss": 3.0}`` or ``{"N": 1e8}``; by
    default each is the geometric mean of that column in the runs (for the
    response this is an empirical-Bayes choice; the fit records which).
    ``priors`` with ``law``/``card`` overrides the card's prior on the parameters it
    names (``{"alpha": "Uniform(0.4, 0.45)"}``; the fit records them).  A fit that fails
    the diagnostics gate is refitted once with the settings its failure calls for
    (:func:`retry_settings`), with a :class:`~bayescale.errors.FitRetried` warning;
    ``retry=False`` turns that off.
    ``progress``: on stderr, a bar with an ETA on a terminal and plain log lines
    otherwise (default); ``False`` silences it.
    ``run``: the column naming the training run
    of each row (checkpoints of one run), ``group``: column(s) of run groups,
    ``checkpoints``: ``"all"``, ``"final"`` or ``"logspaced:K"`` per run
    (see :mod:`bayescale.evidence.structure`; validated and thinned before
    the fit, recorded in ``fit.structure``).
    ``vary``: law parameters that differ between the groups of the one ``group`` column, partially
    pooled (``["E", "A"]``, or ``{"E": "HalfNormal(0.1)"}`` to state a group scale's prior; see
    :mod:`bayescale.inference.pooling`); the others are shared.  ``fit.group(level)`` is then the fit
    of one group, ``fit.group("new")`` that of a group not in the data.  ``offsets``: the group
    offsets' form, ``"centred"``, ``"non-centred"`` or ``"auto"`` (default: centred when the data pin
    the offsets down more tightly than their prior, see
    :func:`~bayescale.inference.pooling.data_pin_offsets`; a failed gate retries in the other form), or
    ``"marginal"`` (integrated out of the likelihood: one varying parameter that scales the whole loss,
    ``L_c``, with ``noise="normal_log"``).
    ``run_effects``: with ``run``, each run's loss level has its own offset ``u_r ~ Normal(0, tau)`` on
    log loss (the checkpoints of one run share it), ``tau ~ RUN_SCALE_PRIOR``, integrated out
    (Normal noise on log loss; :mod:`bayescale.inference.run_effects`): the law's N term is then learned
    from the differences between runs, not from the number of checkpoints.  ``fit.group("new")`` is a
    new run (a larger model), ``fit.group(run_id)`` the continuation of a fitted run.
    """
    t0 = time.perf_counter()
    law = resolve_law(law, formula=formula, priors=priors, card=card)
    noise = noise or ("normal_log" if run_effects else law.noise)
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
                                                   checkpoints=checkpoints, run_effects=bool(run_effects))
        table = replace(prepare_runs(frame, law, noise=noise), source=source)
    else:
        table = prepare_runs(runs, law, mapping=mapping, noise=noise)

    inputs = table.input_arrays()
    loss = table.response_array()
    pooling = None
    if run_effects and (run is None or vary is not None):
        raise BayescaleError("run_effects=True needs the run column (run='model', CLI --run COL)" if run is None else
                             "run effects and group pooling (vary=) in one fit are not supported yet: fit one or "
                             "the other")
    if vary is not None:
        pooling = _pooling(law, frame if structure is not None else None, structure, vary, len(table), offsets)
    refs, ref_source = _references(law, inputs, loss, reference)
    t_init = time.perf_counter()
    start = quick_optimum(law, noise, inputs, loss, refs, seed=seed)
    natural = start.pop("_natural")
    # each chain starts within +-3 posterior sd of the optimum (at most +-0.1): with 10^5 runs a fixed +-0.1
    # put a chain ~1000 sd away, where the warm-up adapted to the transient (step size 0.015, tree depth 10)
    jitter = {site: min(START_JITTER, 3.0 * sd) for site, sd in start.pop("_scale").items()}
    check_law_finite(law, noise, {**natural, "sigma": start["sigma"]}, inputs, loss, refs)
    if run_effects:
        from .inference.run_effects import run_pooling

        pooling = run_pooling(law, noise, natural, inputs, refs, structure)
    elif pooling is not None and offsets == "marginal":
        from .inference.run_effects import check_marginal

        pooling = replace(pooling, marginal=True)
        check_marginal(pooling, law, noise, natural, inputs, refs)
    if pooling is not None and offsets == "auto" and not pooling.marginal:
        from .inference.pooling import data_pin_offsets

        pooling = pooling.with_form(data_pin_offsets(pooling, law, noise, natural, inputs, loss, refs))
    t_init = time.perf_counter() - t_init

    progress = progress is not False
    run = dict(chains=chains, warmup=warmup, draws=draws, seed=seed, target_accept=float(target_accept),
               max_tree_depth=max_tree_depth, dense_mass=dense_mass)
    sample_inputs = inputs
    if pooling is not None:
        from .inference.pooling import GROUP_INPUT

        sample_inputs = {**inputs, GROUP_INPUT: np.asarray(pooling.index, float)}
        start.update(_pooling_start(pooling))
    samples, diagnostics, method, t_run = _sample(law, noise, start, sample_inputs, refs, loss, run, progress,
                                                  pooling, jitter)
    retried = None
    if not diagnostics.passed and retry:
        again = retry_settings(diagnostics, run)
        first = diagnostics
        form = pooling
        if pooling is not None:
            form = retry_form(pooling, diagnostics, run["chains"] * run["draws"])
            start = {k: v for k, v in start.items() if k not in pooling.priors()} | _pooling_start(form)
        samples, diagnostics, method, t_run = _sample(law, noise, start, sample_inputs, refs, loss, again, progress,
                                                      form, jitter)
        retried = {"first_attempt": {k: run[k] for k in again}, "first_problems": list(first.problems),
                   "changed": {k: again[k] for k in again if again[k] != run[k]}}
        if form is not pooling:
            retried["first_attempt"]["offsets"] = pooling.form
            retried["changed"]["offsets"] = form.form
        run, pooling = again, form
        warnings.warn(f"the first fit of {law.name!r} failed the diagnostics gate ({'; '.join(first.problems)}); "
                      f"refitted once with {_describe(retried['changed'])}: "
                      + ("passed" if diagnostics.passed else "failed again"), FitRetried, stacklevel=2)

    settings = {**run, "chain_method": method, "sampler": "bayescale.nuts", "reference": ref_source,
                "retry": retry, "retried": retried, "run_effects": bool(run_effects),
                "priors_overridden": {n: {"card": old, "used": new} for n, old, new in law.overridden},
                "mapping": dict(mapping or {}) if isinstance(mapping, dict) else list(mapping or [])}
    timings = {"init_s": t_init, **t_run, "total_s": time.perf_counter() - t0}
    diagnostics = structure_advice(diagnostics, structure)
    result = Fit(samples=samples, law=law, noise=noise, runs=table, refs=refs, settings=settings,
                 versions=_versions(), diagnostics=diagnostics, timings=timings, structure=structure,
                 pooling=pooling)
    if not diagnostics.passed:
        warnings.warn(f"fit of {law.name!r} failed the diagnostics gate"
                      + (" after one automatic refit" if retried else "") + ": "
                      + "; ".join(diagnostics.problems) + ". Try: " + "; ".join(diagnostics.advice),
                      ConvergenceWarning, stacklevel=2)
    return result
