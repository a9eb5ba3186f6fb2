"""Argument validators shared by the public functions (one place, one wording).

Each returns the checked value (as a plain Python number) or raises
:class:`~bayescale.errors.BayescaleError` naming the argument and what was
expected.  :func:`check_law_finite` checks a law where the sampler will
start: a law that is infinite (or beyond float32) at the data would
otherwise freeze every chain at its start with no clearer message than a
huge R-hat.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import BayescaleError, FormulaError, format_rows, plural

__all__ = ["check_int", "check_law_finite", "positive_number"]


def positive_number(name: str, value, allow_none: bool = True) -> float | None:
    """A positive finite number (``None`` passes through when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise BayescaleError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """An integer >= ``low`` (and <= ``high`` if given; booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low \
            or (high is not None and value > high):
        expected = f">= {low}" if high is None else f"in {low}..{high}"
        raise BayescaleError(f"{name} must be an integer {expected}, got {value!r}")
    return int(value)


def check_law_finite(law, noise: str, values: dict, inputs: dict, loss, refs: dict,
                     where: str = "the sampler's starting point") -> None:
    """Raise :class:`~bayescale.errors.FormulaError` naming the runs where the law (with parameter
    ``values``, natural units) or the density of the observed response is not finite in float32."""
    from .formula import FLOAT32_MAX
    from .noise import noise_location, noise_logpdf, noise_scale

    params = {k: np.asarray(v, float) for k, v in values.items()}
    xs = {k: np.asarray(v, float) for k, v in inputs.items()}
    n = len(loss)
    with np.errstate(all="ignore"):
        mu = np.broadcast_to(np.asarray(law.mean(params, xs, xp="numpy"), float), (n,))
        location = noise_location(noise, law, params, xs, xp="numpy")
        scale = noise_scale(noise, params["sigma"], refs["loss_ref"]) if "sigma" in params else 1.0
        logp = np.broadcast_to(noise_logpdf(noise, np.asarray(loss, float), location, scale), (n,))
    bad = np.flatnonzero(~np.isfinite(mu) | (np.abs(mu) > FLOAT32_MAX) | ~np.isfinite(logp))
    if len(bad):
        r = bad[0]
        at = ", ".join(f"{k}={xs[k][r]:g}" for k in law.input_names)
        if not np.isfinite(mu[r]) or abs(mu[r]) > FLOAT32_MAX:
            what = f"{mu[r]:g}" + (" (beyond float32)" if np.isfinite(mu[r]) else "")
        else:
            what = f"{mu[r]:g}, where the {law.response.name} {loss[r]:g} has zero density under the {noise} noise model"
        raise FormulaError(
            f"law {law.name!r} ({law.response.name} = {law.formula}) gives no finite likelihood at "
            f"{plural(len(bad), 'run')} ({format_rows(bad)}) at {where}: e.g. the law is {what} at {at}. "
            f"Check that the formula is defined for these inputs, inside the noise model's support, and "
            f"within float32 (|value| < 3.4e38)")
