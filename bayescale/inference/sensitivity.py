"""Prior sensitivity: refit with every prior widened and report how far the answers move.

:func:`widen` makes each prior ``factor`` times as wide on the quantity it is
stated on, keeping its centre and its support's structural bounds (an exponent
stays positive, a fraction stays in (0, 1)):

* ``Normal``, ``LogNormal``, ``StudentT``, ``TruncatedNormal``: scale x factor;
* ``HalfNormal``, ``HalfCauchy``: scale x factor; ``Exponential``: rate / factor;
* ``Gamma(a, b)``: ``Gamma(a / f^2, b / f^2)`` (the same mean, sd x factor);
* ``Beta(a, b)`` with a, b >= 1: ``Beta(1 + (a - 1) / f, 1 + (b - 1) / f)``, flatter
  towards the uniform (a Beta cannot be widened beyond (0, 1)); below 1: ``a / f, b / f``;
* ``Uniform(lo, hi)``: the upper side moved out, ``Uniform(lo, lo + f (hi - lo))``
  (the lower bounds of the cards' uniform priors are structural: 0 for exponents).

:func:`prior_sensitivity` refits the same runs with the same settings under the
widened priors (the sigma prior included) and tabulates, per natural parameter
and per extra quantity, the median and 90% interval under both, the shift of the
median in units of the original posterior sd, and the ratio of interval widths.
A shift below ~0.5 sd means the data, not the prior, decide that quantity.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..priors import Prior

__all__ = ["Sensitivity", "prior_sensitivity", "widen"]


def widen(prior: Prior, factor: float) -> Prior:
    """``prior`` made ``factor`` times as wide (see the module docstring)."""
    f, a = prior.family, prior.args
    k = float(factor)
    if f in ("Normal", "LogNormal"):
        return Prior(f, (a[0], a[1] * k))
    if f == "StudentT":
        return Prior(f, (a[0], a[1], a[2] * k))
    if f == "TruncatedNormal":
        return Prior(f, (a[0], a[1] * k, a[2], a[3]))
    if f in ("HalfNormal", "HalfCauchy"):
        return Prior(f, (a[0] * k,))
    if f == "Exponential":
        return Prior(f, (a[0] / k,))
    if f == "Gamma":
        return Prior(f, (a[0] / k**2, a[1] / k**2))
    if f == "Beta":
        if min(a) >= 1:
            return Prior(f, (1 + (a[0] - 1) / k, 1 + (a[1] - 1) / k))
        return Prior(f, (a[0] / k, a[1] / k))
    if f == "Uniform":
        return Prior(f, (a[0], a[0] + k * (a[1] - a[0])))
    raise ValueError(f"no widening rule for {f}")


@dataclass(frozen=True)
class Sensitivity:
    """Posterior summaries under the card's priors and under priors ``factor`` times as wide."""

    factor: float
    priors: dict             # name -> (card prior, widened prior)
    table: pd.DataFrame      # per quantity: median, q5, q95 (base and wide), shift_sd, width_ratio
    wide_fit: object

    def moved(self, threshold_sd: float = 0.5) -> list[str]:
        """The quantities whose median moved by more than ``threshold_sd`` original posterior sds."""
        return [name for name, row in self.table.iterrows() if abs(row["shift_sd"]) > threshold_sd]

    def __str__(self) -> str:
        head = (f"prior sensitivity: every prior {self.factor:g}x as wide; shift of the median in "
                f"posterior sds, ratio of 90% interval widths")
        return head + "\n" + self.table.to_string(float_format=lambda v: f"{v:.4g}")


def _summary(x: np.ndarray) -> tuple[float, float, float, float]:
    q5, q50, q95 = np.quantile(x, [0.05, 0.5, 0.95])
    return float(q50), float(q5), float(q95), float(np.std(x, ddof=1))


def prior_sensitivity(fit, factor: float = 2.0, quantities: dict | None = None, progress: bool = False) -> Sensitivity:
    """Refit ``fit``'s runs with every prior ``factor`` times as wide; see the module docstring.

    ``quantities``: name -> function(Fit) -> array of draws (e.g. a predicted loss at the plan),
    summarised beside the natural parameters.
    """
    from ..cards import with_priors
    from ..errors import BayescaleError
    from ..fitting import fit as fit_law

    if not (isinstance(factor, (int, float)) and factor > 1):
        raise BayescaleError(f"factor must be a number > 1, got {factor!r}")
    law = fit.law
    priors = {p.name: (p.prior, widen(p.prior, factor)) for p in law.params}
    priors["sigma"] = (law.sigma_prior, widen(law.sigma_prior, factor))
    wide_law = with_priors(law, {k: str(v[1]) for k, v in priors.items()})
    s = fit.settings
    runs = fit.runs.table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = {("loss" if k == "loss_ref" else k[:-4]): fit.refs[k]
                     for k, v in s.get("reference", {}).items() if v == "given"}
        wide = fit_law(runs, law=wide_law, noise=fit.noise, chains=s["chains"], warmup=s["warmup"],
                       draws=s["draws"], seed=s["seed"], target_accept=s["target_accept"],
                       dense_mass=s["dense_mass"], max_tree_depth=s["max_tree_depth"],
                       reference=reference or None, retry=s.get("retry", True), progress=progress)
    funcs = {name: (lambda f, n=name: f.draws(n)) for name in list(law.param_names) + ["sigma"]}
    funcs.update(quantities or {})
    rows = []
    for name, fn in funcs.items():
        b50, b5, b95, bsd = _summary(np.asarray(fn(fit), float).reshape(-1))
        w50, w5, w95, _ = _summary(np.asarray(fn(wide), float).reshape(-1))
        rows.append({"quantity": name, "median": b50, "q5": b5, "q95": b95, "median_wide": w50, "q5_wide": w5,
                     "q95_wide": w95, "shift_sd": (w50 - b50) / bsd if bsd > 0 else 0.0,
                     "width_ratio": (w95 - w5) / (b95 - b5) if b95 > b5 else np.nan})
    table = pd.DataFrame(rows).set_index("quantity")
    return Sensitivity(float(factor), {k: (str(a), str(b)) for k, (a, b) in priors.items()}, table, wide)
