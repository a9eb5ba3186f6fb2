"""Small helpers shared by the memo's builder modules."""

from __future__ import annotations

import math

import numpy as np

from ..errors import BayescaleError
from ..mixture import weighted_quantile
from .model import LEVELS, Estimate

__all__ = ["_allocatable", "_caught", "_estimate", "_fit_names"]


def _estimate(values, weights=None) -> Estimate:
    values = np.asarray(values, float).reshape(-1)
    w = np.full(values.size, 1.0 / values.size) if weights is None else np.asarray(weights, float)
    ok = np.isfinite(values)
    if not ok.any():
        return Estimate(*(math.nan,) * 5)
    return Estimate.from_quantiles(weighted_quantile(values[ok][:, None], w[ok], LEVELS)[:, 0])


def _caught(records) -> list[str]:
    """Caught warnings as caveat texts; a failed fit's warning is left to the diagnostics banner."""
    from ..errors import ConvergenceWarning

    return [" ".join(str(w.message).split()) for w in records
            if not issubclass(w.category, (FutureWarning, DeprecationWarning, ConvergenceWarning))]


def _fit_names(fits) -> list[str]:
    from ..compare import _names

    return _names(fits, None)


def _allocatable(fits) -> bool:
    from ..optimal import allocation_law_inputs

    try:
        for f in fits:
            allocation_law_inputs(f.law)
    except BayescaleError:
        return False
    return True


# --------------------------------------------------------------------------- the steps
