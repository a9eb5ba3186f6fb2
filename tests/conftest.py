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


def check_correlated_gaussian(run_sampler, accept_max: float = 0.99) -> None:
    """A sampler on a correlated, badly scaled 3-d Gaussian: ``run_sampler(logp, dim)`` returns
    (positions (chains, draws, dim), stats, the adapted metric (chains, dim, dim)).

    Means within 4 Monte Carlo errors (sd / sqrt(ESS)), variances within 4 relative errors
    (sqrt(2 / ESS)), correlations to 0.06; the metric's last window (warm-up 500) holds 200 draws, so a
    standard deviation has a relative standard error of about 1 / sqrt(2 * 150) = 6% (ESS ~150): 30% is 5
    such errors, and a wrong metric (identity) would be off by 100x.
    """
    import math

    import jax.numpy as jnp

    from bayescale.diagnostics import ess_bulk, rank_rhat

    scales = np.array([1.0, 100.0, 0.01])
    corr = np.array([[1.0, 0.9, -0.5], [0.9, 1.0, -0.3], [-0.5, -0.3, 1.0]])
    cov = corr * np.outer(scales, scales)
    mean = np.array([1.0, -50.0, 0.02])
    prec = jnp.asarray(np.linalg.inv(cov), jnp.float32)
    mu = jnp.asarray(mean, jnp.float32)

    def logp(q):
        r = q - mu
        return -0.5 * r @ prec @ r

    pos, stats, minv = run_sampler(logp, 3)
    assert stats["diverging"].sum() == 0
    draws = pos.reshape(-1, 3)
    for i in range(3):
        x = pos[..., i]
        ess = ess_bulk(x)
        assert rank_rhat(x) < 1.01
        assert ess > 1000
        assert abs(draws[:, i].mean() - mean[i]) < 4 * scales[i] / math.sqrt(ess)
        assert abs(draws[:, i].var() / scales[i] ** 2 - 1) < 4 * math.sqrt(2 / ess)
    assert np.allclose(np.corrcoef(draws.T), corr, atol=0.06)
    assert np.allclose(np.sqrt(np.diagonal(minv, axis1=1, axis2=2)) / scales, 1, atol=0.3)
    assert 0.7 < stats["accept_prob"].mean() < accept_max


def check_gamma_quantiles(run_sampler) -> None:
    """A sampler on log of a Gamma(2, 1) variable (density exp(2z - exp(z))): ``run_sampler(logp, dim)``
    as above; the empirical CDF at the 5 true quantiles within 4 binomial errors at the draws' ESS."""
    import jax.numpy as jnp

    from bayescale.diagnostics import ess_bulk

    def logp(q):
        return 2 * q[0] - jnp.exp(q[0])

    pos, _, _ = run_sampler(logp, 1)
    x = np.exp(pos[..., 0])
    ess = ess_bulk(pos[..., 0])
    probs = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    # Gamma(2, 1) CDF: 1 - (1 + x) e^-x; the empirical CDF at the true quantiles
    true_q = np.array([0.35536, 0.96128, 1.67835, 2.69263, 4.74386])
    empirical = np.array([(x <= q).mean() for q in true_q])
    assert np.allclose(1 - (1 + true_q) * np.exp(-true_q), probs, atol=1e-4)
    assert np.all(np.abs(empirical - probs) < 4 * np.sqrt(probs * (1 - probs) / ess))
