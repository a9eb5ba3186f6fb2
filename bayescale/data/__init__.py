"""Data shipped with bayescale: a SIMULATED pilot study for the demo.

``pilot_chinchilla.csv`` is not a measurement: it is drawn from the Chinchilla
law at Epoch AI's published parameters with Student-t noise (see
``README.md`` here and ``make_pilot.py``, which generated it).
"""

from __future__ import annotations

from importlib import resources

__all__ = ["BUDGETS", "NOISE_DF", "NOISE_SCALE", "PILOT_TRUTH", "SIZES_PER_BUDGET",
           "pilot_chinchilla", "pilot_path"]

from .make_pilot import BUDGETS, NOISE_DF, NOISE_SCALE, SIZES_PER_BUDGET  # noqa: E402
from .make_pilot import TRUTH as PILOT_TRUTH  # noqa: E402  (the generating parameters)


def pilot_path():
    """A ``Traversable`` for the pilot CSV (a real file in wheel and editable installs)."""
    return resources.files(__name__) / "pilot_chinchilla.csv"


def pilot_chinchilla():
    """The simulated pilot study as a DataFrame (columns N, D, C, loss)."""
    import pandas as pd

    with resources.as_file(pilot_path()) as path:
        return pd.read_csv(path)
