"""Compare fits on the same runs: PSIS-LOO, WAIC, stacking weights.

For fits ``m = 1..M`` of the same runs ``y_1..y_n`` (different laws, or the
same law with different noise models):

* **elpd_loo** ``= sum_i log p(y_i | y_-i)``, the expected log predictive
  density of a new run, estimated by Pareto-smoothed importance sampling
  (Vehtari, Gelman & Gabry 2017) from the pointwise log-likelihood stored in
  each fit; ``se`` is ``sqrt(n var_i(elpd_i))``, ``p_loo`` the effective
  number of parameters.  Higher is better.
* **elpd_diff** to the best fit and its standard error
  ``dse = sqrt(n var_i(elpd_best,i - elpd_m,i))`` (paired over runs).  A
  difference under ~4, or under ~2 dse, does not separate the fits.
* **weight**: stacking weights (Yao, Vehtari, Simpson & Gelman 2018), the
  mixture of the fits' predictive distributions that maximises
  ``sum_i log sum_m w_m exp(elpd_m,i)``; they are what
  :func:`bayescale.predict.predict` uses to mix several fits.
* **WAIC** is reported as a secondary check only: LOO is the estimate to use.

PSIS is unreliable for runs whose Pareto shape ``k`` exceeds 0.7 (an
influential run: an outlier, or an extreme run that pins an exponent).  With
few such runs (``reloo``, on by default for at most 5 per fit) each is
replaced by an *exact* leave-one-out value: the law is refitted without run
``i`` (smaller sampler settings) and ``log mean_s p(y_i | theta_s)`` is
computed with the noise model's density.  A fit's refits run as one batch
(:func:`bayescale.fit_many`) when there are two or more.

Every noise model's likelihood is a density of the raw response (the
log-space models carry the Jacobian ``-log y``, see :mod:`bayescale.noise`),
so fits with different noise models are compared fairly.  Fits of different
runs, or of different response columns, are refused: their elpds are sums
over different observations.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import azstats
from .errors import BayescaleError, DataError, format_rows
from .mixture import warn_failed
from .noise import noise_location, noise_logpdf, noise_scale
from .result import Fit

__all__ = ["Comparison", "K_THRESHOLD", "check_comparable", "compare", "log_density", "stacking_weights"]

#: Pareto shape above which PSIS-LOO is unreliable for a run.
K_THRESHOLD = 0.7
#: Default sampler settings of the exact leave-one-out refits.
RELOO_SETTINGS = {"chains": 2, "warmup": 500, "draws": 500}
#: With ``reloo=None``, refit when a fit has at most this many bad runs.
RELOO_MAX_AUTO = 5


@dataclass(frozen=True)
class Comparison:
    """A LOO comparison of fits on the same runs; ``table`` is sorted best first."""

    table: pd.DataFrame
    pointwise: dict
    pareto_k: dict
    refitted: dict
    notes: tuple[str, ...]
    n_runs: int
    response: str
    k_threshold: float = K_THRESHOLD
    timings: dict = field(default_factory=dict)
    by: str | None = None        # the unit left out: None (a row), or "run", "group", a group column
    n_units: int | None = None

    @property
    def best(self) -> str:
        return str(self.table.index[0])

    @property
    def weights(self) -> dict:
        return {str(k): float(v) for k, v in self.table["weight"].items()}

    def verdict(self) -> str:
        """One sentence: which fit the data prefer, and how clearly."""
        if len(self.table) < 2:
            return f"only one fit: {self.best}"
        second = self.table.iloc[1]
        diff, dse = -float(second["elpd_diff"]), float(second["dse"])
        ratio = diff / dse if dse > 0 else math.inf
        head = (f"{self.best} has the highest elpd_loo; next is {self.table.index[1]} "
                f"by {diff:.1f} (SE of the difference {dse:.1f}, {ratio:.1f} SE)")
        if diff < 4 or ratio < 2:
            return head + ": not a clear difference, prefer stacking (weights) over picking one."
        return head + ": a clear difference."

    def as_dict(self) -> dict:
        """JSON-ready: one dict per fit (best first), the verdict, notes, refitted runs."""
        rows = []
        for name, row in self.table.iterrows():
            rows.append({"name": str(name), **{k: _jsonable(v) for k, v in row.items()}})
        return {"method": "PSIS-LOO (WAIC secondary)", "n_runs": self.n_runs, "response": self.response,
                "left_out": "row" if self.by is None else self.by, "n_units": self.n_units or self.n_runs,
                "k_threshold": self.k_threshold, "best": self.best, "verdict": self.verdict(),
                "fits": rows, "refitted_runs": {k: list(map(int, v)) for k, v in self.refitted.items()},
                "notes": list(self.notes), "timings": {k: float(v) for k, v in self.timings.items()}}

    def __str__(self) -> str:
        cols = ["law", "noise", "elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight",
                "n_pareto_k_bad", "n_refit", "elpd_waic"]
        shown = self.table[cols].rename(columns={"n_pareto_k_bad": f"k>{self.k_threshold:g}",
                                                 "elpd_waic": "waic*"})
        fmt = {c: (lambda v: f"{v:.2f}") for c in ("elpd_loo", "se", "p_loo", "elpd_diff", "dse", "waic*")}
        fmt["weight"] = lambda v: f"{v:.3f}"
        unit = "" if self.by is None else f", leaving out one {self.by} at a time ({self.n_units} of them)"
        lines = [f"Model comparison by PSIS-LOO on {self.n_runs} runs of {self.response!r}{unit} "
                 "(elpd: higher is better; weight: stacking)",
                 shown.to_string(formatters=fmt),
                 "* waic = elpd_waic, a secondary check; use elpd_loo.",
                 self.verdict()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


# --------------------------------------------------------------------------- inputs and guard


def _as_fits(fits) -> list:
    if isinstance(fits, Fit):
        fits = [fits]
    if isinstance(fits, dict):
        fits = list(fits.values())
    if not isinstance(fits, (list, tuple)) or not all(isinstance(f, Fit) for f in fits):
        raise BayescaleError("expected a list of Fit objects (from bayescale.fit or load_fit)")
    return list(fits)


def _names(fits, names) -> list[str]:
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(fits):
            raise BayescaleError(f"names has {len(names)} entries but {len(fits)} fits were given")
        if len(set(names)) != len(names):
            raise BayescaleError(f"names must be unique, got {names}")
        return names
    base = [f.law.name for f in fits]
    if len(set(base)) < len(base):
        base = [f"{f.law.name}/{f.noise}" for f in fits]
    out, seen = [], {}
    for b in base:
        seen[b] = seen.get(b, 0) + 1
        out.append(b if base.count(b) == 1 else f"{b}#{seen[b]}")
    return out


def check_comparable(fits, names=None) -> list[str]:
    """Raise unless ``fits`` are at least two fits of the same observations; return their names.

    Same observations means: the same response column, the same number of
    runs, identical response values in the same order, and identical values
    in every input column two fits share (laws may use different inputs of
    the same runs, e.g. a power law in N against Chinchilla in N and D).
    """
    fits = _as_fits(fits)
    if len(fits) < 2:
        raise BayescaleError(f"comparison needs at least two fits of the same runs, got {len(fits)}; "
                             "fit the competing laws (or noise models) to the same table first")
    names = _names(fits, names)
    ref, ref_name = fits[0], names[0]
    why = "LOO and stacking compare predictive densities of the same observations"
    for f, name in zip(fits[1:], names[1:]):
        if f.runs.response != ref.runs.response:
            raise DataError(f"fit {name!r} models column {f.runs.response!r} but fit {ref_name!r} models "
                            f"{ref.runs.response!r}; {why}, so the fits must share the response column")
        if len(f.runs) != len(ref.runs):
            raise DataError(f"fit {name!r} has {len(f.runs)} runs but fit {ref_name!r} has {len(ref.runs)} "
                            f"(runs hashes {f.runs.hash} vs {ref.runs.hash}); {why}: fit both to the same table")
        y, y0 = f.runs.response_array(), ref.runs.response_array()
        diff = np.flatnonzero(~np.isclose(y, y0, rtol=1e-9, atol=0))
        if len(diff):
            raise DataError(f"fits {name!r} and {ref_name!r} were made on different runs: column "
                            f"{f.runs.response!r} differs at {format_rows(diff)} (runs hashes {f.runs.hash} "
                            f"vs {ref.runs.hash}); {why}: fit both to the same table, in the same order")
        for col in sorted(set(f.runs.inputs) & set(ref.runs.inputs)):
            a, b = f.runs.table[col].to_numpy(float), ref.runs.table[col].to_numpy(float)
            diff = np.flatnonzero(~np.isclose(a, b, rtol=1e-9, atol=0))
            if len(diff):
                raise DataError(f"fits {name!r} and {ref_name!r} were made on different runs: input "
                                f"{col!r} differs at {format_rows(diff)}; {why}")
    return names


# --------------------------------------------------------------------------- densities and exact LOO


def log_density(fit: Fit, inputs: dict, y) -> np.ndarray:
    """``log p(y_j | theta_s)`` for every posterior draw s and run j: shape (S, n).

    The noise model's density of the raw response (the same quantity as the
    fit's stored log-likelihood), evaluated in float64 at any inputs, e.g.
    runs the fit did not see.
    """
    params = {k: fit.draws(k).astype(float)[:, None] for k in fit.var_names}
    x = {k: np.asarray(inputs[k], float).reshape(-1)[None, :] for k in fit.law.input_names}
    y = np.asarray(y, float).reshape(-1)[None, :]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        loc = noise_location(fit.noise, fit.law, params, x, xp="numpy")
        scale = noise_scale(fit.noise, params["sigma"], fit.refs["loss_ref"])
        out = noise_logpdf(fit.noise, y, np.asarray(loc, float), scale)
    out = np.broadcast_to(out, (params["sigma"].shape[0], y.shape[1]))
    return np.where(np.isnan(out), -np.inf, out)


def lpd(logp: np.ndarray) -> np.ndarray:
    """``log mean_s p_s`` along axis 0 (the log posterior predictive density)."""
    from scipy.special import logsumexp

    return logsumexp(logp, axis=0) - np.log(logp.shape[0])


def _reloo_settings(fit: Fit, settings: dict | None) -> dict:
    return {**RELOO_SETTINGS, "seed": int(fit.settings.get("seed", 0)),
            "target_accept": fit.settings.get("target_accept", 0.8),
            "dense_mass": fit.settings.get("dense_mass", True), **(settings or {})}


def _held_out_lpd(fit: Fit, refit: Fit, run: int) -> float:
    held = fit.runs.table.iloc[[run]]
    logp = log_density(refit, {k: held[k].to_numpy(float) for k in fit.law.input_names},
                       held[fit.runs.response].to_numpy(float))
    return float(lpd(logp)[0])


def exact_loo(fit: Fit, run: int, settings: dict | None = None) -> tuple[float, list[str]]:
    """Exact ``log p(y_i | y_-i)`` for one run: refit without it (NUTS, :func:`bayescale.fit`, with the
    fit's seed), score it.  Returns (value, problems)."""
    from .fitting import fit as fit_law

    table = fit.runs.table
    rest = table.drop(index=table.index[run]).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refit = fit_law(rest, law=fit.law, noise=fit.noise, progress=False, **_reloo_settings(fit, settings))
    return _held_out_lpd(fit, refit, run), list(refit.diagnostics.problems)


def exact_loo_many(fit: Fit, runs, settings: dict | None = None) -> list[tuple[float, list[str]]]:
    """:func:`exact_loo` of each of ``runs``; two or more refits run as one batch
    (:func:`bayescale.fit_many`: refit ``i`` gets the seed ``group_seed(seed, i)``, a refit that fails the
    gate is redone by NUTS), a single one by :func:`exact_loo`."""
    import inspect

    from .inference.many import fit_many

    runs = [int(i) for i in runs]
    batchable = set(settings or {}) <= set(inspect.signature(fit_many).parameters)
    if len(runs) < 2 or not batchable:          # a NUTS-only setting (max_tree_depth, ...): NUTS refits
        return [exact_loo(fit, i, settings) for i in runs]

    table = fit.runs.table
    rests = {i: table.drop(index=table.index[i]).reset_index(drop=True) for i in runs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refits = fit_many(rests, law=fit.law, noise=fit.noise, progress=False, **_reloo_settings(fit, settings))
    if refits.errors:
        raise DataError("exact leave-one-out: "
                        + "; ".join(f"leaving out run {i}: {e}" for i, e in refits.errors.items()))
    return [(_held_out_lpd(fit, refits[i], i), list(refits[i].diagnostics.problems)) for i in runs]


# --------------------------------------------------------------------------- compare


def _bad_note(name: str, bad, k, threshold: float, refit: bool, noise: str) -> str:
    runs = format_rows(bad)
    worst = float(np.max(k[bad]))
    one = len(bad) == 1
    count = f"{len(bad)} run" + ("" if one else "s")
    if refit:
        return (f"{name}: {count} had Pareto k > {threshold:g} ({runs}, max {worst:.2f}); "
                f"{'its PSIS value was' if one else 'their PSIS values were'} replaced by exact "
                "leave-one-out refits")
    robust = "" if noise == "student_t_log" else ", or a robust noise model (student_t_log)"
    return (f"{name}: {count} {'has' if one else 'have'} Pareto k > {threshold:g} ({runs}, max {worst:.2f}), "
            f"so PSIS-LOO is unreliable for {'it' if one else 'them'} (influential runs: outliers, or "
            "extreme runs that pin an exponent or a break). Try compare(..., reloo=True) (CLI: --reloo) for "
            f"exact leave-one-out refits of {'that run' if one else 'those runs'} (one refit each), "
            f"K-fold cross-validation{robust}")


def _unit_idata(fit, codes: np.ndarray, n_units: int):
    """An InferenceData whose log-likelihood is summed over the rows of each unit: (chain, draw, unit)."""
    ll = np.asarray(fit.log_likelihood, float)
    grouped = np.zeros(ll.shape[:2] + (n_units,))
    np.add.at(grouped, (slice(None), slice(None), codes), ll)
    return azstats.from_arrays({"sigma": np.asarray(fit.samples.posterior["sigma"], float)}, {"loss": grouped},
                               {"loss": np.zeros(n_units)}, {}, {}, attrs={})


def _units(fits, by: str):
    """Each row's unit code (0..U-1, in order of first appearance) for leaving out a whole ``by``."""
    labels = []
    for f in fits:
        if f.structure is None:
            raise BayescaleError(f"by={by!r} needs fits made with run=... or group=... (CLI --run/--group); "
                                 f"the fit of {f.law.name!r} has no run or group columns")
        labels.append(tuple(f.structure.labels(by)))
    if any(lab != labels[0] for lab in labels[1:]):
        raise BayescaleError(f"the fits do not assign the runs to the same {by}s; compare fits of the same table")
    codes, uniques = pd.factorize(pd.Series(labels[0]))
    return np.asarray(codes), len(uniques)


def compare(fits, *, names=None, reloo: bool | None = None, k_threshold: float = K_THRESHOLD,
            reloo_settings: dict | None = None, by: str | None = None) -> Comparison:
    """Compare two or more fits of the same runs by PSIS-LOO (see the module docstring).

    ``reloo``: replace PSIS values of runs with Pareto k > ``k_threshold`` by
    exact leave-one-out refits; ``None`` (default) does so when a fit has at
    most 5 such runs, ``True`` always, ``False`` never.  ``reloo_settings``
    overrides the refits' sampler settings (default 2 chains, 500 + 500).
    ``by``: leave out a whole unit at a time instead of a row: ``"run"`` (every checkpoint of one
    training run: pointwise LOO over checkpoints of one curve mostly measures interpolation along
    it), ``"group"`` (the fits' one group column: how well a new group is predicted) or a group
    column's name.  The log-likelihood is summed over each unit's rows and PSIS runs on those
    sums; exact refits are not made for units (a unit with Pareto k > ``k_threshold`` is noted).
    Fits pooled over groups (``vary=``) are compared this way too.
    """
    import time

    fits = _as_fits(fits)
    names = check_comparable(fits, names)
    warn_failed(fits)
    if not (isinstance(k_threshold, (int, float)) and 0 < k_threshold):
        raise BayescaleError(f"k_threshold must be a positive number, got {k_threshold!r}")
    if reloo not in (None, True, False):
        raise BayescaleError(f"reloo must be True, False or None (automatic), got {reloo!r}")
    t0 = time.perf_counter()
    rows, pointwise, kvals, refitted, notes = [], {}, {}, {}, []
    t_refit = 0.0
    codes, n_units = (None, None) if by is None else _units(fits, by)
    for f, name in zip(fits, names):
        data = f.idata if by is None else _unit_idata(f, codes, n_units)
        lo = azstats.loo(data)
        wa = azstats.waic(data)
        k = lo["pareto_k"]
        bad = np.flatnonzero(k > k_threshold)
        loo_i = lo["pointwise"].copy()
        # exact refits: one row at a time only, and not for a pooled fit (its refit would need the groups)
        can_refit = by is None and f.pooling is None
        do_refit = can_refit and len(bad) > 0 and (reloo is True or (reloo is None and len(bad) <= RELOO_MAX_AUTO))
        if do_refit:
            t1 = time.perf_counter()
            failed = []
            for i, (value, problems) in zip(bad, exact_loo_many(f, bad, reloo_settings)):
                loo_i[i] = value
                if problems:
                    failed.append(int(i))
            t_refit += time.perf_counter() - t1
            if failed:
                notes.append(f"{name}: {len(failed)} of {len(bad)} exact leave-one-out refits ({format_rows(failed)}) "
                             "failed the diagnostics gate, so those values are approximate; raise "
                             "reloo_settings draws for more precision")
            refitted[name] = tuple(int(i) for i in bad)
        if len(bad) and not can_refit:
            what = f"{by}s" if by is not None else "runs"
            notes.append(f"{name}: {len(bad)} {what} have Pareto k > {k_threshold:g} (max {float(k.max()):.2f}), so "
                         f"PSIS-LOO is unreliable for them; exact refits are not made "
                         + ("when leaving out whole units" if by is not None else "for a fit pooled over groups"))
        elif len(bad):
            notes.append(_bad_note(name, bad, k, k_threshold, do_refit, f.noise))
        if not f.diagnostics.passed:
            notes.append(f"{name}: the fit failed the diagnostics gate ({'; '.join(f.diagnostics.problems)}); "
                         "its elpd is computed from unreliable draws")
        elpd = float(loo_i.sum())
        n = len(loo_i)
        rows.append({"name": name, "law": f.law.name, "noise": f.noise, "elpd_loo": elpd,
                     "se": float(np.sqrt(n * loo_i.var())), "p_loo": lo["p"] + (lo["elpd"] - elpd),
                     "n_pareto_k_bad": int(len(bad)), "n_refit": int(len(refitted.get(name, ()))),
                     "max_pareto_k": float(k.max()), "elpd_waic": wa["elpd"], "se_waic": wa["se"],
                     "p_waic": wa["p"], "waic_warning": wa["warning"]})
        pointwise[name] = loo_i
        kvals[name] = k
    weights = azstats.stacking_weights(pointwise)
    table = pd.DataFrame(rows).set_index("name")
    table["weight"] = [weights[n] for n in table.index]
    table = table.sort_values("elpd_loo", ascending=False)
    best = pointwise[table.index[0]]
    table["elpd_diff"] = [float(pointwise[n].sum() - best.sum()) for n in table.index]
    table["dse"] = [float(np.sqrt(len(best) * np.var(best - pointwise[n]))) for n in table.index]
    table.insert(0, "rank", np.arange(len(table)))
    order = ["rank", "law", "noise", "elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight",
             "n_pareto_k_bad", "n_refit", "max_pareto_k", "elpd_waic", "se_waic", "p_waic", "waic_warning"]
    table = table[order]
    if table["waic_warning"].any():
        notes.append("WAIC flagged pointwise variances above 0.4 for some fits; WAIC is then unreliable "
                     "(use elpd_loo)")
    timings = {"total_s": time.perf_counter() - t0, "refit_s": t_refit}
    return Comparison(table=table, pointwise=pointwise, pareto_k=kvals, refitted=refitted,
                      notes=tuple(notes), n_runs=len(fits[0].runs), response=fits[0].runs.response,
                      k_threshold=float(k_threshold), timings=timings, by=by, n_units=n_units)


def stacking_weights(fits, names=None) -> np.ndarray:
    """Stacking weights of ``fits`` (in their order) from PSIS-LOO pointwise elpd, no refits.

    This is what :func:`bayescale.predict.predict` and ``optimal`` use when
    given several fits and no weights.  The fits must be of the same runs.
    """
    fits = _as_fits(fits)
    names = check_comparable(fits, names)
    pointwise = {n: azstats.loo(f.idata)["pointwise"] for f, n in zip(fits, names)}
    weights = azstats.stacking_weights(pointwise)
    w = np.clip(np.array([weights[n] for n in names], float), 0.0, None)
    return w / w.sum()
