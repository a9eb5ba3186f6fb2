"""Argument validators shared by the public functions (one place, one wording).

Each returns the checked value (as a plain Python number) or raises
:class:`~bayescale.errors.BayescaleError` naming the argument and what was
expected.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import BayescaleError

__all__ = ["check_int", "positive_number"]


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
