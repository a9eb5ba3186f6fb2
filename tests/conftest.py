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
