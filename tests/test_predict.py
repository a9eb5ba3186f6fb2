"""Predictions: the two bands, their coverage on held-out data, targets, extrapolation, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale as bs

TRUTH = dict(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)
SIGMA = 0.01  # Student-t(4) scale on log loss: twice the Epoch data's 0.0045, a noisy pilot study


def simulate(n, rng, c_range=(1e18, 1e22)):
    """Runs with log-uniform C and N (D = C / 6N) drawn from Chinchilla + Student-t(4) noise on log loss."""
    C = np.exp(rng.uniform(*np.log(c_range), n))
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), n))
    D = C / (6 * N)
    mu = TRUTH["E"] + TRUTH["A"] / N ** TRUTH["alpha"] + TRUTH["B"] / D ** TRUTH["beta"]
    loss = mu * np.exp(SIGMA * rng.standard_t(4, n))
    return pd.DataFrame({"N": N, "D": D, "loss": loss})


@pytest.fixture(scope="module")
def sim_fit():
    rng = np.random.default_rng(7)
    return bs.fit(simulate(80, rng), law="chinchilla", chains=2, warmup=500, draws=1000, seed=1,
                  progress=False)


def test_predictive_band_contains_law_band(epoch_fit):
    N = np.geomspace(1e7, 1e12, 60)
    grid = pd.DataFrame({"N": N, "D": 20 * N})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ExtrapolationWarning)
        p = bs.predict(epoch_fit, grid, prob=(0.5, 0.9))
    for lab in ("50", "90"):
        assert np.all(p[f"pred_lower_{lab}"] <= p[f"law_lower_{lab}"])
        assert np.all(p[f"pred_upper_{lab}"] >= p[f"law_upper_{lab}"])
    assert np.all(p["pred_lower_90"] <= p["pred_lower_50"])
    assert np.all(p["law_lower_90"] < p["median"]) and np.all(p["median"] < p["law_upper_90"])
    # the planned-run column reads in multiples of the largest run
    assert p["extrapolation"].iloc[-1] > 100


def test_predictive_coverage_on_held_out_runs(sim_fit):
    """n = 400 held-out runs from the generating law: the 90% predictive band should cover 90%;
    85-95% is +-3.4 binomial standard errors (sd = 0.015)."""
    held_out = simulate(400, np.random.default_rng(99))
    p = bs.predict(sim_fit, held_out[["N", "D"]], prob=(0.5, 0.9))
    y = held_out["loss"].to_numpy()
    cover90 = np.mean((p["pred_lower_90"] <= y) & (y <= p["pred_upper_90"]))
    cover50 = np.mean((p["pred_lower_50"] <= y) & (y <= p["pred_upper_50"]))
    print(f"coverage: 90% band {cover90:.3f}, 50% band {cover50:.3f} (n = 400)")
    assert 0.85 <= cover90 <= 0.95
    assert 0.43 <= cover50 <= 0.57   # +-2.8 standard errors (sd = 0.025)
    law_cover = np.mean((p["law_lower_90"] <= y) & (y <= p["law_upper_90"]))
    assert law_cover < cover90  # the law band alone ignores run-to-run noise


def test_target_probability_and_irreducible_warning(epoch_fit):
    grid = {"N": [7e10], "D": [1.4e12]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ExtrapolationWarning)
        probs = [bs.predict(epoch_fit, grid, target=t)["p_below_target"].iloc[0] for t in (1.9, 1.97, 2.05)]
    assert probs[0] < probs[1] < probs[2]
    assert 0.3 < probs[1] < 0.7
    with pytest.warns(UserWarning, match="below the irreducible loss"):
        p = bs.predict(epoch_fit, grid, target=1.5, warn_beyond=100)
    assert p["p_below_target"].iloc[0] < 1e-3


def test_extrapolation_warning_threshold(epoch_fit):
    grid = {"N": [7e10], "D": [1.4e12]}          # 45x beyond the largest run's compute
    with pytest.warns(bs.ExtrapolationWarning, match="45"):
        bs.predict(epoch_fit, grid)
    with warnings.catch_warnings():
        warnings.simplefilter("error", bs.ExtrapolationWarning)
        bs.predict(epoch_fit, grid, warn_beyond=100)


def test_derived_inputs_and_mixture(epoch_fit, sim_fit):
    by_c = bs.predict(epoch_fit, {"N": [1e9], "C": [6e19]})       # D derived as C / (6N)
    by_d = bs.predict(epoch_fit, {"N": [1e9], "D": [1e10]})
    np.testing.assert_allclose(by_c["median"], by_d["median"])
    grid = {"N": [1e9], "D": [1e10]}
    a = bs.predict(epoch_fit, grid)["median"].iloc[0]
    b = bs.predict(sim_fit, grid)["median"].iloc[0]
    both = bs.predict([epoch_fit, sim_fit], grid, weights=[0.5, 0.5])["median"].iloc[0]
    assert min(a, b) < both < max(a, b)


def test_bad_input(epoch_fit):
    with pytest.raises(bs.BayescaleError, match="prob must be"):
        bs.predict(epoch_fit, {"N": [1e9], "D": [1e10]}, prob=(0.9, 1.5))
    with pytest.raises(bs.DataError, match="column 'D'"):
        bs.predict(epoch_fit, {"N": [1e9]})
    with pytest.raises(bs.DataError, match="non-positive"):
        bs.predict(epoch_fit, {"N": [1e9, -1.0], "D": [1e10, 1e10]})
    with pytest.raises(bs.BayescaleError, match="weights must be"):
        bs.predict([epoch_fit, epoch_fit], {"N": [1e9], "D": [1e10]}, weights=[1.0])
    with pytest.raises(bs.BayescaleError, match="target must be"):
        bs.predict(epoch_fit, {"N": [1e9], "D": [1e10]}, target=float("nan"))
