"""Simulation-based calibration (Talts, Betancourt, Simpson, Vehtari, Gelman 2018).

For a law, a noise model and a fixed design (the inputs of the runs), each
replication draws every sampled coordinate and sigma from its prior, simulates
the responses from the model, fits them with the package's own ``fit`` and
records the rank of the true value of every reported parameter among
``thin`` equally spaced posterior draws.  If the sampler returns the exact
posterior, every rank is uniform on ``0 .. thin``; deviations show a biased or
over/under-dispersed posterior, and truths beyond all draws (rank 0 or
``thin``) show tails the sampler does not reach.

Validity needs a prior that does not look at the data.  The cards scale
their priors by reference points: the inputs' geometric means are functions
of the design (fixed here, so they are constants), and ``loss_ref`` is fixed
by ``reference={"loss": loss_ref}`` in both the simulation and the fits (by
default a fit sets it from the data, an empirical-Bayes step; a fixed value
makes the model a fixed-prior one, which is what SBC tests).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model import natural_values, reference_points
from ..noise import noise_location, noise_sample, noise_scale

__all__ = ["SBC", "catalogue_design", "rank_uniformity", "sbc", "simulate"]


def catalogue_design(card: str) -> pd.DataFrame:
    """The fixed inputs the SBC of a built-in card simulates at: what a small pilot study has.

    One-variable loss laws: 20 log-spaced x over 2.5 decades.  Laws in N and D: the 40 runs
    of the built-in simulated pilot (N 3.4e7-1.7e10, D 8e8-3.6e11; M = D / N for the
    over-training law; for the data-constrained law every fifth and tenth run repeats its
    unique data 2, 4 or 8 times).  ``downstream_error``: 20 losses in 2.2-4.0;
    ``sigmoid_metric``: 20 log-spaced C over 1e18-1e22.
    """
    from importlib import resources

    x = np.logspace(6, 8.5, 20)
    if card in ("power_law", "power_law_constant", "bnsl1", "bnsl2"):
        return pd.DataFrame({"x": x})
    if card == "downstream_error":
        return pd.DataFrame({"L": np.linspace(2.2, 4.0, 20)})
    if card == "sigmoid_metric":
        return pd.DataFrame({"C": np.logspace(18, 22, 20)})
    with resources.files("bayescale.data").joinpath("pilot_chinchilla.csv").open() as fh:
        pilot = pd.read_csv(fh)
    if card in ("chinchilla", "kaplan"):
        return pilot[["N", "D"]]
    if card == "overtraining":
        return pd.DataFrame({"N": pilot["N"], "M": pilot["D"] / pilot["N"]})
    if card == "data_constrained":
        epochs = np.resize([1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 4.0, 1.0, 8.0, 1.0], len(pilot))
        return pd.DataFrame({"N": pilot["N"], "D": pilot["D"], "U": pilot["D"] / epochs})
    raise KeyError(f"no SBC design for {card!r}; give a table of the law's inputs")


def simulate(law, noise: str, inputs: dict, refs: dict, rng: np.random.Generator, pooling=None):
    """One draw of (truth, responses) from the prior predictive of ``law`` with ``noise``.

    ``truth``: every sampled coordinate (site name), every natural parameter and sigma, and with a
    ``pooling`` (:class:`~bayescale.inference.pooling.Pooling`, whose ``index`` gives each run's
    group) its group scales and offsets; the runs' parameters are then their groups'.
    """
    from ..sampler import latent_sites

    sites = latent_sites(law) | ({} if pooling is None else pooling.prior_sites())
    values = {name: float(prior.sample(rng)) for name, prior in sites.items()}
    if pooling is not None:
        values = pooling.from_standard(values)
    z = [sites[name].unconstrain(values[name]) for name in list(sites)[:len(law.params)]]
    natural = {k: float(v) for k, v in natural_values(law, z, refs).items()}
    params = dict(natural)
    if pooling is not None:
        from .pooling import run_params

        params = run_params(pooling, law, {k: np.asarray([v], float) for k, v in {**values, **natural}.items()}, refs)
    xs = {k: np.asarray(v, float) for k, v in inputs.items()}
    with np.errstate(all="ignore"):
        location = noise_location(noise, law, params, xs, xp="numpy")
        scale = noise_scale(noise, values["sigma"], refs["loss_ref"])
        y = noise_sample(noise, np.broadcast_to(location, next(iter(xs.values())).shape), scale, rng)
    return {**values, **natural}, np.asarray(y, float)


def rank_uniformity(ranks: np.ndarray, thin: int, bins: int) -> float:
    """p-value of Pearson's chi-square test that ``ranks`` (0..thin) are uniform, in ``bins`` equal bins."""
    from scipy.special import gammaincc

    ranks = np.asarray(ranks, int)
    edges = np.linspace(0, thin + 1, bins + 1)
    counts = np.histogram(ranks, bins=edges)[0]
    expected = len(ranks) * np.diff(edges) / (thin + 1)
    stat = float(np.sum((counts - expected) ** 2 / expected))
    return float(gammaincc((bins - 1) / 2, stat / 2))


@dataclass(frozen=True)
class SBC:
    """The result of :func:`sbc`: one row per replication in ``table``."""

    law: str
    noise: str
    thin: int
    table: pd.DataFrame          # rep, passed, first_passed, sampler, seconds, ess_bulk_per_s, problems,
    #                              first_problems, rank_<p>, true_<p>
    params: tuple[str, ...]
    problems: tuple[str, ...]    # per failed replication: its gate problems

    @property
    def pass_rate(self) -> float:
        """Share of replications whose fit passed the gate (after the automatic refit, if any)."""
        return float(self.table["passed"].mean())

    @property
    def first_pass_rate(self) -> float:
        """Share of replications whose first attempt passed the gate."""
        return float(self.table["first_passed"].mean())

    def retries(self) -> str:
        """For a batch SBC: how many replications the batched retry settled and how many NUTS refitted."""
        t = self.table
        if "sampler" not in t or not (t["sampler"] == "bayescale.inference.lockstep").any():
            return ""
        from .many import RETRY_STEPS

        again = ~t["first_passed"]
        nuts = int((again & (t["sampler"] == "bayescale.nuts")).sum())
        return (f"; retried {int(again.sum())}: {int(again.sum()) - nuts} in the batch ({RETRY_STEPS}x steps), "
                f"{nuts} by NUTS")

    def p_values(self, bins: int = 10) -> dict:
        return {p: rank_uniformity(self.table[f"rank_{p}"], self.thin, bins) for p in self.params}

    def outside(self) -> dict:
        """Per parameter: (replications with truth below all draws, above all draws)."""
        return {p: (int((self.table[f"rank_{p}"] == 0).sum()), int((self.table[f"rank_{p}"] == self.thin).sum()))
                for p in self.params}

    def failures(self, min_pass: float = 0.95, p_min: float = 0.001, tail_max: int = 5, bins: int = 10) -> list:
        """What fails the SBC criteria (empty if none): a gate pass rate below ``min_pass``, a parameter
        whose rank-uniformity p-value is below ``p_min``, more than ``tail_max`` truths beyond all draws
        on one side of a parameter."""
        out = []
        if self.pass_rate < min_pass:
            out.append(f"gate pass rate {self.pass_rate:.2f} < {min_pass}: " + " | ".join(self.problems[:5]))
        bad = {p: round(v, 5) for p, v in self.p_values(bins=bins).items() if v < p_min}
        if bad:
            out.append(f"rank uniformity p < {p_min} for {bad}")
        tails = {p: v for p, v in self.outside().items() if max(v) > tail_max}
        if tails:
            out.append(f"truths beyond all draws (below, above) {tails}, expected {self.expected_outside():.1f}")
        return out

    def expected_outside(self) -> float:
        """Expected count of truths beyond all draws on one side: reps / (thin + 1)."""
        return len(self.table) / (self.thin + 1)

    def __str__(self) -> str:
        pv, out = self.p_values(), self.outside()
        lines = [f"SBC of {self.law} ({self.noise}): {len(self.table)} replications, "
                 f"gate pass rate {self.pass_rate:.3f} (first attempt {self.first_pass_rate:.3f}{self.retries()}), "
                 f"expected beyond all draws per side {self.expected_outside():.1f}"]
        lines += [f"  {p:<10} rank p = {pv[p]:.3f}   below/above all draws {out[p][0]}/{out[p][1]}"
                  for p in self.params]
        return "\n".join(lines)


def sbc(law, design: pd.DataFrame, *, reps: int = 100, seed: int = 0, loss_ref: float = 3.0,
        noise: str | None = None, thin: int = 99, progress: bool = False, group: str | None = None,
        vary=None, sampler: str = "nuts", **fit_kwargs) -> SBC:
    """Simulation-based calibration of ``law`` on the fixed ``design`` (a table of its inputs).

    Each replication ``r`` simulates with ``numpy.random.default_rng([seed, r])`` and fits
    with ``seed=r`` and ``reference={"loss": loss_ref}``; ``fit_kwargs`` go to
    :func:`bayescale.fit` (default settings otherwise).  ``group`` (a column of ``design``) and
    ``vary``: the partially pooled model (:mod:`bayescale.inference.pooling`), simulated and fitted
    with those parameters varying by group; the group scales and offsets are ranked too.
    ``sampler="batch"``: every replication fitted in one :func:`bayescale.fit_many` call (the
    lockstep batch sampler; replication ``r`` is the group keyed ``r``, its seed
    ``group_seed(seed, r)``), which is what tests that sampler; ``fit_kwargs`` then go to ``fit_many``.
    """
    if sampler not in ("nuts", "batch"):
        raise ValueError(f"sampler must be 'nuts' or 'batch', got {sampler!r}")
    from ..cards import resolve_law
    from ..errors import ConvergenceWarning, FitRetried
    from ..fitting import fit

    law = resolve_law(law)
    noise = noise or law.noise
    inputs = {k: design[k].to_numpy(float) for k in law.input_names}
    refs = reference_points(law, inputs, np.ones(1))
    refs["loss_ref"] = float(loss_ref) if law.response.scale else 1.0
    pooling = None
    if vary is not None:
        from .pooling import make_pooling

        pooling = make_pooling(law, design[group].astype(str).tolist(), vary, group)
        fit_kwargs = {**fit_kwargs, "group": group, "vary": vary}
    params = tuple(law.reported_names) + ("sigma",) + (() if pooling is None else pooling.site_names)
    rows, problems = [], []
    simulated = []
    for r in range(reps):
        rng = np.random.default_rng([seed, r])
        truth, y = simulate(law, noise, inputs, refs, rng, pooling)
        runs = pd.DataFrame({**inputs, law.response.name: y})
        if pooling is not None:
            runs[group] = design[group].astype(str).to_numpy()
        simulated.append((truth, runs))
    reference = {"loss": loss_ref} if law.response.scale else None
    fits, seconds = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FitRetried)
        if sampler == "batch":
            if pooling is not None:
                raise ValueError("sampler='batch' fits independent groups; it has no pooled model")
            from .many import fit_many

            t0 = time.perf_counter()
            batch = fit_many({r: runs for r, (_, runs) in enumerate(simulated)}, law=law, noise=noise, seed=seed,
                             progress=progress, reference=reference, **fit_kwargs)
            fits = dict(batch.fits)
            seconds = {r: (time.perf_counter() - t0) / reps for r in fits}
    for r, (truth, runs) in enumerate(simulated):
        t0 = time.perf_counter()
        if sampler == "nuts":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", FitRetried)
                f = fit(runs, law=law, noise=noise, seed=r, progress=False, reference=reference, **fit_kwargs)
            seconds[r] = time.perf_counter() - t0
        else:
            f = fits[r]
        retried = f.settings.get("retried")
        row = {"rep": r, "passed": f.diagnostics.passed, "first_passed": retried is None,
               "sampler": f.settings["sampler"],
               "seconds": seconds[r],
               "ess_bulk_per_s": f.timings.get("ess_bulk_per_s", math.nan),
               "problems": "; ".join(f.diagnostics.problems),
               "first_problems": "; ".join(retried["first_problems"]) if retried else ""}
        for p in params:
            d = f.draws(p).reshape(-1)
            picks = d[np.linspace(0, d.size - 1, thin).round().astype(int)]
            row[f"rank_{p}"] = int(np.sum(picks < truth[p]))
            row[f"true_{p}"] = truth[p]
        rows.append(row)
        if not f.diagnostics.passed:
            problems.append(f"rep {r}: " + "; ".join(f.diagnostics.problems))
        if progress and sampler == "nuts":
            print(f"sbc {law.name}: {r + 1}/{reps} fits, {sum(x['passed'] for x in rows)} passed", flush=True)
    return SBC(law.name, noise, thin, pd.DataFrame(rows), params, tuple(problems))
