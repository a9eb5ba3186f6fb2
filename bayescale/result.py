"""The frozen :class:`Fit` and its NetCDF file.

A fit holds the sampler's output as plain arrays (:class:`Samples`: posterior
draws, pointwise log-likelihood, sample statistics), the law card's text and
hash, the validated runs, the reference points, the settings, package
versions, timings and the diagnostics verdict.  ``fit.idata`` is the same
content as an ArviZ ``InferenceData`` (groups posterior, log_likelihood,
observed_data, constant_data, sample_stats), built on first use so that a fit
which is never saved or compared does not pay ArviZ's import time.  ``save``
writes one NetCDF file with the card and metadata in the posterior group's
attributes; ``load_fit`` rebuilds the same object from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import azstats
from .cards import Law, law_from_text
from .diagnostics import Diagnostics, diagnose
from .errors import FitFileError
from .runs import Runs

__all__ = ["Fit", "Samples", "load_fit", "summary_table"]

_META = "bayescale_meta"
_CARD = "bayescale_card"


@dataclass(frozen=True)
class Samples:
    """The sampler's output: arrays shaped (chains, draws[, runs])."""

    posterior: dict
    log_likelihood: np.ndarray
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

    @cached_property
    def idata(self):
        """The fit as an ArviZ ``InferenceData`` (built once, on first use)."""
        return azstats.from_arrays(
            self.samples.posterior, {"loss": self.samples.log_likelihood},
            {"loss": self.runs.response_array()}, self.runs.input_arrays(), self.samples.sample_stats,
            attrs={"inference_library": "numpyro", "bayescale_law": self.law.name})

    @property
    def card_text(self) -> str:
        return self.law.text

    @property
    def card_hash(self) -> str:
        return self.law.hash

    @property
    def var_names(self) -> list[str]:
        return list(self.law.param_names) + ["sigma"]

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
        """Write the fit to NetCDF; refuses to overwrite unless ``force``."""
        path = Path(path)
        if path.is_dir():
            raise FitFileError(f"{str(path)!r} is a directory; give a file name such as fit.nc")
        if path.exists() and not force:
            raise FitFileError(f"{str(path)!r} exists; pass force=True (CLI: --force) to overwrite it")
        if not path.parent.exists():
            raise FitFileError(f"directory {str(path.parent)!r} does not exist")
        meta = {"law": self.law.name, "law_source": self.law.source, "card_hash": self.card_hash,
                "noise": self.noise, "refs": self.refs, "settings": self.settings,
                "versions": self.versions, "timings": self.timings, "runs_source": self.runs.source,
                "runs_hash": self.runs.hash, "derived": list(self.runs.derived),
                "inputs": list(self.runs.inputs), "response": self.runs.response}
        if self.structure is not None:
            meta["structure"] = self.structure.as_dict()
        if self.calibration is not None:
            meta["calibration"] = self.calibration.as_dict()
        tmp = path.with_name(path.name + ".tmp")
        azstats.save_netcdf(self.idata, tmp, {_META: json.dumps(meta), _CARD: self.law.text})
        tmp.replace(path)
        return path

    def __str__(self) -> str:
        table = self.summary()
        lines = [f"{self.law.name}: {self.law.formula}   noise: {self.noise}   runs: {len(self.runs)}",
                 table.to_string(float_format=lambda v: f"{v:.4g}"), str(self.diagnostics)]
        return "\n".join(lines)


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
    """Read a fit written by :meth:`Fit.save`."""
    path = Path(path)
    if not path.is_file():
        raise FitFileError(f"fit file {str(path)!r} does not exist")
    try:
        idata = azstats.load_netcdf(path)
        meta = json.loads(idata.posterior.attrs[_META])
        text = idata.posterior.attrs[_CARD]
    except (OSError, KeyError, ValueError, AttributeError) as exc:
        raise FitFileError(f"{str(path)!r} is not a bayescale fit file ({type(exc).__name__}: {exc})") from None
    law = law_from_text(text, source=meta["law_source"])
    const, obs = idata.constant_data, idata.observed_data
    table = pd.DataFrame({k: np.asarray(const[k]) for k in meta["inputs"]})
    table[meta["response"]] = np.asarray(obs["loss"])
    runs = Runs(table=table, inputs=tuple(meta["inputs"]), response=meta["response"],
                source=meta["runs_source"], derived=tuple(meta["derived"]))
    var_names = list(law.param_names) + ["sigma"]
    samples = Samples(
        posterior={k: np.asarray(idata.posterior[k]) for k in var_names},
        log_likelihood=np.asarray(idata.log_likelihood["loss"]),
        sample_stats={k: np.asarray(v) for k, v in idata.sample_stats.data_vars.items()})
    diagnostics = diagnose(samples.posterior, samples.sample_stats, var_names,
                           meta["settings"]["max_tree_depth"])
    structure = None
    if meta.get("structure") is not None:
        from .evidence.structure import RunStructure

        structure = RunStructure.from_dict(meta["structure"])
    calibration = None
    if meta.get("calibration") is not None:
        from .evidence.calibration import Calibration

        calibration = Calibration.from_dict(meta["calibration"])
    fit = Fit(samples=samples, law=law, noise=meta["noise"], runs=runs, refs=meta["refs"],
              settings=meta["settings"], versions=meta["versions"], diagnostics=diagnostics,
              timings=meta["timings"], structure=structure, calibration=calibration)
    fit.__dict__["idata"] = idata   # keep the file's InferenceData (with its attributes)
    return fit
