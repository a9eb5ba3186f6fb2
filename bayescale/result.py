"""The frozen :class:`Fit` and its NetCDF file.

A fit holds the sampler's output as plain arrays (:class:`Samples`: posterior
draws, pointwise log-likelihood, sample statistics), the law card's text and
hash, the validated runs, the reference points, the settings, package
versions, timings and the diagnostics verdict.  ``fit.idata`` is the same
content as an ArviZ ``InferenceData`` (groups posterior, log_likelihood,
observed_data, constant_data, sample_stats, and posterior_predictive, prior,
prior_predictive from :mod:`bayescale.evidence.predictive`), built on first
use so that a fit which is never saved or compared does not pay ArviZ's
import time; the pointwise log-likelihood likewise is computed on first use.
``save`` writes one NetCDF file atomically with the stored groups (not the
predictive ones, which are rebuilt from them), the card and metadata in the
posterior group's attributes and a checksum; ``load_fit`` verifies it and
rebuilds the same object (see :mod:`bayescale.storage.fitfile`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import azstats
from .cards import Law
from .diagnostics import Diagnostics, diagnose, structure_advice
from .errors import FitFileError
from .runs import Runs
from .storage import read_fit_file, write_fit_file

__all__ = ["Fit", "Samples", "load_fit", "summary_table"]


@dataclass(frozen=True)
class Samples:
    """The sampler's output: arrays shaped (chains, draws[, runs]).  ``log_likelihood`` may be None:
    then :attr:`Fit.log_likelihood` computes it when first needed."""

    posterior: dict
    log_likelihood: np.ndarray | None
    sample_stats: dict


@dataclass(frozen=True)
class Fit:
    """A fitted law: posterior draws plus everything needed to reproduce them."""

    samples: Samples
    law: Law
    noise: str
    runs: Runs
    refs: dict
    settings: dict
    versions: dict
    diagnostics: Diagnostics
    timings: dict = field(default_factory=dict)
    structure: object = None     # bayescale.evidence.structure.RunStructure: run/group columns, thinning
    calibration: object = None   # bayescale.evidence.calibration.Calibration: the calibrated band's correction
    pooling: object = None       # bayescale.inference.pooling.Pooling: parameters that vary by group

    @cached_property
    def log_likelihood(self) -> np.ndarray:
        """log p(loss_i | draw) of every run under every draw, (chains, draws, runs).

        Computed on first use from the draws and the runs when the sampler did not store it
        (``samples.log_likelihood`` is None: it is a function of both, and for 10^5 runs it is
        gigabytes); float64, or float32 beyond :data:`~bayescale.storage.fitfile.STORED_LOG_LIKELIHOOD_MAX`
        values.
        """
        if self.samples.log_likelihood is not None:
            return self.samples.log_likelihood
        from .fitting import pointwise_log_likelihood

        return pointwise_log_likelihood(self.law, self.noise, self.samples.posterior, self.runs.input_arrays(),
                                        self.runs.response_array(), self.refs, pooling=self.pooling)

    @cached_property
    def _stored_idata(self):
        """The groups a fit file holds (posterior, log_likelihood, observed/constant data, sample_stats)."""
        return azstats.from_arrays(
            self.samples.posterior, {"loss": self.log_likelihood},
            {"loss": self.runs.response_array()}, self.runs.input_arrays(), self.samples.sample_stats,
            attrs={"inference_library": "numpyro", "bayescale_law": self.law.name})

    @cached_property
    def idata(self):
        """The fit as an ArviZ ``InferenceData`` (built once, on first use), with the posterior
        predictive, prior and prior predictive groups (:func:`bayescale.evidence.predictive.predictive_groups`)."""
        from .evidence.predictive import predictive_groups

        return azstats.with_groups(self._stored_idata, predictive_groups(self), len(self.runs))

    @property
    def card_text(self) -> str:
        return self.law.text

    @property
    def card_hash(self) -> str:
        return self.law.hash

    @property
    def var_names(self) -> list[str]:
        pooled = [] if self.pooling is None else list(self.pooling.site_names)
        return list(self.law.reported_names) + ["sigma"] + pooled

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups of a pooled fit (its :attr:`pooling`'s levels); empty for a fit without pooling."""
        return () if self.pooling is None else self.pooling.levels

    def group(self, level, seed: int | None = None) -> "Fit":
        """A pooled fit as the fit of one group: its draws of the law's parameters are that group's
        (the varying parameters with the group's offsets), its runs the group's runs.

        ``level``: one of :attr:`groups`, or ``"new"`` for a group not in the data (each draw a fresh
        offset from the group-scale posterior, seeded by ``seed``, default the fit's seed).  The
        result is a plain fit that ``predict``, ``optimal``, ``compare`` and the plots accept; its
        varying parameters, and the natural parameters derived from varying coordinates, are the
        group's (the group scales and offsets themselves are not in it).
        """
        from .errors import BayescaleError
        from .inference.pooling import group_params

        if self.pooling is None:
            raise BayescaleError("this fit has no groups (fit with group=... and vary=[...] to pool over groups)")
        p = self.pooling
        i = p.level_index(level)
        seed = int(self.settings.get("seed", 0) or 0) if seed is None else int(seed)
        params = group_params(p, self.law, self.samples.posterior, self.refs, level, seed=seed)
        posterior = {k: params[k] for k in list(self.law.reported_names) + ["sigma"]}
        rows = np.arange(len(self.runs)) if i is None else np.flatnonzero(np.asarray(p.index) == i)
        from dataclasses import replace as _replace

        runs = _replace(self.runs, table=self.runs.table.iloc[rows].reset_index(drop=True),
                        source=f"{self.runs.source} [{p.column} = {level}]")
        ll = None if i is None else self.log_likelihood[..., rows]
        samples = Samples(posterior=posterior, log_likelihood=ll, sample_stats=self.samples.sample_stats)
        settings = {**self.settings, "group": {"column": p.column, "level": str(level),
                                               "seed": seed if i is None else None}}
        return Fit(samples=samples, law=self.law, noise=self.noise, runs=runs, refs=self.refs, settings=settings,
                   versions=self.versions, diagnostics=self.diagnostics, timings=self.timings,
                   structure=self.structure, calibration=self.calibration)

    def draws(self, name: str) -> np.ndarray:
        """Posterior draws of one variable, flattened over chains: shape (S,), float64.

        NUTS stores float32; sums of squares of FLOP-sized parameters (C50 ~ 1e20)
        overflow float32, so the draws are widened here once for every consumer.
        """
        if name not in self.samples.posterior:
            raise KeyError(f"no variable {name!r} in the posterior; variables are {self.var_names}")
        return np.asarray(self.samples.posterior[name], dtype=np.float64).reshape(-1)

    def summary(self) -> pd.DataFrame:
        return summary_table(self)

    def save(self, path, force: bool = False) -> Path:
        """Write the fit to NetCDF (see :mod:`bayescale.storage.fitfile`); refuses to overwrite unless
        ``force``.  Atomic: ``path`` holds the old file or the complete new one, never a part."""
        path = Path(path)
        if path.is_dir():
            raise FitFileError(f"{str(path)!r} is a directory; give a file name such as fit.nc")
        if (path.exists() or path.is_symlink()) and not force:
            raise FitFileError(f"{str(path)!r} exists; pass force=True (CLI: --force) to overwrite it")
        if not path.parent.exists():
            raise FitFileError(f"directory {str(path.parent)!r} does not exist")
        return write_fit_file(self, path)

    def __str__(self) -> str:
        table = self.summary()
        lines = [f"{self.law.name}: {self.law.formula}   noise: {self.noise}   runs: {len(self.runs)}",
                 table.to_string(float_format=lambda v: f"{v:.4g}"), str(self.diagnostics)]
        lines += notes(self)
        return "\n".join(lines)


def notes(fit: Fit) -> list[str]:
    """Lines a reader of a summary must see: overridden priors, a fixed reference, an automatic refit."""
    out = [f"prior overridden: {name} ~ {new} (the card's prior: {old})" for name, old, new in fit.law.overridden]
    given = {k: v for k, v in fit.settings.get("reference", {}).items() if v == "given"}
    out += [f"reference point fixed: {k} = {fit.refs[k]:g}" for k in given]
    if getattr(fit, "pooling", None) is not None:
        out.append(fit.pooling.describe())
    level = fit.settings.get("group")
    if level:
        out.append(f"the fit of group {level['level']!r} of column {level['column']!r} (a view of a pooled fit)")
    retried = fit.settings.get("retried")
    if retried:
        changed = ", ".join(f"{k} {v}" for k, v in retried["changed"].items())
        out.append(f"refitted once automatically ({changed}) after the first attempt failed the gate: "
                   + "; ".join(retried["first_problems"]))
    return out


def summary_table(fit: Fit) -> pd.DataFrame:
    """Per variable: mean, sd, median, 5% and 95% quantiles, r_hat, ess_bulk, ess_tail."""
    d = fit.diagnostics
    rows = []
    for name in fit.var_names:
        x = fit.draws(name)
        q5, q50, q95 = np.quantile(x, [0.05, 0.5, 0.95])
        rows.append({"param": name, "mean": x.mean(), "sd": x.std(ddof=1), "median": q50,
                     "q5": q5, "q95": q95, "r_hat": d.r_hat.get(name, np.nan),
                     "ess_bulk": d.ess_bulk.get(name, np.nan), "ess_tail": d.ess_tail.get(name, np.nan)})
    return pd.DataFrame(rows).set_index("param")


def load_fit(path) -> Fit:
    """Read a fit written by :meth:`Fit.save`, verified (see :mod:`bayescale.storage.fitfile`):
    anything wrong with the file is a :class:`~bayescale.errors.FitFileError`."""
    parts = read_fit_file(path)
    law = parts["law"]
    pooling = parts["pooling"]
    var_names = list(law.reported_names) + ["sigma"] + ([] if pooling is None else list(pooling.site_names))
    samples = Samples(posterior=parts["posterior"], log_likelihood=parts["log_likelihood"],
                      sample_stats=parts["sample_stats"])
    diagnostics = structure_advice(diagnose(samples.posterior, samples.sample_stats, var_names,
                                            parts["settings"]["max_tree_depth"], noise=parts["noise"]),
                                   parts["structure"])
    return Fit(samples=samples, law=law, noise=parts["noise"], runs=parts["runs"], refs=parts["refs"],
               settings=parts["settings"], versions=parts["versions"], diagnostics=diagnostics,
               timings=parts["timings"], structure=parts["structure"],
               calibration=parts["calibration"], pooling=pooling)
