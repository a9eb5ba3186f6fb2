"""Shared fixtures.

``shared_datasets``: the project's real published datasets live in
``../shared/datasets`` beside the repository (they must not be copied into
it).  Tests that need them take this fixture.  Where the folder is missing
the test is skipped, except when ``BAYESCALE_REQUIRE_SHARED=1`` (set by
``.ci/run``): then it fails, so CI never passes by silently skipping them.
``BAYESCALE_SHARED`` points at the ``shared`` folder (absolute, or relative
to the repository root); by default it is the repository's sibling.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    root = os.environ.get("BAYESCALE_SHARED")
    if not root:
        return REPO.parent / "shared"
    path = Path(root)
    return path if path.is_absolute() else REPO / path


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """Path to ``shared/datasets``; skips (or fails under BAYESCALE_REQUIRE_SHARED=1) if absent."""
    path = shared_root() / "datasets"
    if not path.is_dir():
        message = (f"shared datasets not found at {path} (set BAYESCALE_SHARED to the folder "
                   "that holds datasets/)")
        if os.environ.get("BAYESCALE_REQUIRE_SHARED") == "1":
            pytest.fail(message + "; BAYESCALE_REQUIRE_SHARED=1 forbids skipping", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def epoch_runs(shared_datasets):
    """Epoch's 240 Chinchilla runs (outliers excluded), read in place."""
    import pandas as pd

    frame = pd.read_csv(shared_datasets / "chinchilla_epoch" / "chinchilla_epoch_tidy.csv")
    return frame[frame["epoch_outlier"] == 0].reset_index(drop=True)


@pytest.fixture(scope="session")
def epoch_fit(epoch_runs):
    """The default Chinchilla fit of Epoch's data, shared by every test that reads it (one NUTS run)."""
    import bayescale

    return bayescale.fit(epoch_runs, law="chinchilla", seed=0, progress=False)


@pytest.fixture(scope="session")
def epoch_memo(epoch_fit):
    """A decision memo for a Chinchilla-sized run from the shared Epoch fit (no new fits, no backtest)."""
    from bayescale.memo import build_memo

    return build_memo(fits=[epoch_fit], budget=5.88e23, plan={"N": 7e10, "D": 1.4e12}, target=1.95,
                      backtest=False, progress=False, command="tests: build_memo(fits=[epoch_fit], ...)")


def _quantile_z(a: np.ndarray, b: np.ndarray, probs) -> np.ndarray:
    """|difference| of quantiles of two samplers' draws (chains, draws) in units of their combined Monte
    Carlo standard error (ArviZ's quantile MCSE, which accounts for autocorrelation)."""
    import arviz as az

    out = []
    for q in probs:
        se = [float(az.mcse(az.convert_to_dataset(x[None] if x.ndim == 1 else x), method="quantile", prob=q)["x"])
              for x in (a, b)]
        out.append(abs(np.quantile(a, q) - np.quantile(b, q)) / np.hypot(*se))
    return np.asarray(out)


@pytest.fixture(scope="session")
def quantile_z():
    """:func:`_quantile_z`: two samplers' quantiles compared in Monte Carlo standard errors."""
    return _quantile_z
