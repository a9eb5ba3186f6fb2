"""Compute-optimal allocation: closed form as oracle, real data, constraints, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.optimal import allocate

CHINCHILLA = bs.load_law("chinchilla")


def closed_form(E, A, B, alpha, beta, C):
    """Hoffmann et al. 2022: optimum of E + A/N^alpha + B/D^beta under C = 6ND (float64)."""
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    return G * (C / 6) ** a, (C / 6) ** b / G


def test_closed_form_matches_numeric_over_budgets():
    budgets = np.logspace(18, 27, 37)
    params = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    got = allocate(CHINCHILLA, params, budgets)
    N, D = closed_form(**params, C=budgets)
    np.testing.assert_allclose(got["N"][0], N, rtol=1e-4)
    np.testing.assert_allclose(got["D"][0], D, rtol=1e-4)
    np.testing.assert_allclose(6 * got["N"] * got["D"], budgets[None, :], rtol=1e-10)


def test_closed_form_property_random_parameters():
    """500 random valid parameter sets (fixed seed) x 10 budgets: all within 1e-4 relative."""
    rng = np.random.default_rng(20261122)
    S = 500
    params = dict(E=rng.uniform(0.5, 3.0, S), A=np.exp(rng.uniform(np.log(10), np.log(1e4), S)),
                  B=np.exp(rng.uniform(np.log(10), np.log(1e4), S)), alpha=rng.uniform(0.1, 0.9, S),
                  beta=rng.uniform(0.1, 0.9, S))
    budgets = np.logspace(18, 27, 10)
    got = allocate(CHINCHILLA, params, budgets)
    N, D = closed_form(*(params[k][:, None] for k in ("E", "A", "B", "alpha", "beta")), C=budgets[None, :])
    assert np.max(np.abs(got["N"] / N - 1)) < 1e-4
    assert np.max(np.abs(got["D"] / D - 1)) < 1e-4


def test_epoch_allocation_matches_published(epoch_fit):
    """Epoch's point estimate gives D*/N* = 18.4 at 5.88e23 by the closed form; a = 0.513 (SE 0.020)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ExtrapolationWarning)
        alloc = bs.optimal(epoch_fit, [5.88e23])
    row = alloc.summary(0.9).iloc[0]
    print(f"D*/N* at 5.88e23: median {row.ratio_median:.2f}, 90% [{row.ratio_lower_90:.2f}, "
          f"{row.ratio_upper_90:.2f}]")
    assert 15 <= row.ratio_median <= 22
    assert row.ratio_lower_90 < row.ratio_median < row.ratio_upper_90
    a = alloc.exponents().loc["a", "median"]
    assert 0.49 <= a <= 0.54
    # numeric per-draw optimum equals each draw's closed form
    draws = {k: epoch_fit.draws(k).astype(float) for k in ("E", "A", "B", "alpha", "beta")}
    N, _ = closed_form(**draws, C=5.88e23)
    assert np.max(np.abs(alloc.N[:, 0] / N - 1)) < 1e-4


def test_token_cap_binds(epoch_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ExtrapolationWarning)
        free = bs.optimal(epoch_fit, [5.88e23])
        cap = 0.5 * free.D.min()
        capped = bs.optimal(epoch_fit, [5.88e23], max_tokens=cap)
    np.testing.assert_allclose(capped.D, cap, rtol=1e-9)
    assert np.all(capped.at_token_cap)
    assert np.all(capped.N > free.N)
    np.testing.assert_allclose(6 * capped.N * capped.D, 5.88e23, rtol=1e-9)
    assert np.all(capped.loss >= free.loss - 1e-12)


def test_n_bounds_and_inference_tokens(epoch_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ExtrapolationWarning)
        free = bs.optimal(epoch_fit, [5.88e23])
        bounded = bs.optimal(epoch_fit, [5.88e23], n_bounds=(None, 3e10))
        serving = bs.optimal(epoch_fit, [5.88e23], inference_tokens=2e12)
    assert np.all(bounded.N <= 3e10 * (1 + 1e-9)) and bounded.at_n_bound.mean() > 0.99
    # Sardana et al.: with inference demand the optimum trains a smaller model on more tokens
    assert np.median(serving.N) < np.median(free.N)
    assert np.median(serving.D / serving.N) > np.median(free.D / free.N)
    total = 6 * serving.N * serving.D + 2 * serving.N * 2e12
    np.testing.assert_allclose(total, 5.88e23, rtol=1e-9)


def test_data_constrained_cap_repeats_epochs():
    """With unique data U capped, the data-constrained law trains past U (repeats) but less than
    the fresh-data optimum would."""
    law = bs.load_law("data_constrained")
    params = dict(E=np.exp(0.6254804), A=np.exp(6.255414), B=np.exp(7.3049974), alpha=0.3526596,
                  beta=0.3526596, R_D_star=15.387756, R_N_star=5.309743)
    C = 1e22
    fresh = allocate(law, params, [C])
    U = fresh["D"][0, 0] / 8
    capped = allocate(law, params, [C], max_tokens=U)
    assert capped["D"][0, 0] > U                     # repeats epochs
    assert capped["loss"][0, 0] > fresh["loss"][0, 0]  # repeated tokens are worth less
    np.testing.assert_allclose(6 * capped["N"] * capped["D"], C, rtol=1e-9)


def test_choose_and_plan_regret(epoch_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ExtrapolationWarning)
        alloc = bs.optimal(epoch_fit, [5.88e23])
        choice = bs.choose_allocation(epoch_fit, 5.88e23, utility="mean")
        risky = bs.choose_allocation(epoch_fit, 5.88e23, utility="cvar", q=0.9)
        good = bs.plan_regret(epoch_fit, 7e10, 1.4e12)
        bad = bs.plan_regret(epoch_fit, 2.8e11, 3.5e11)
    lo, hi = np.quantile(alloc.N[:, 0], [0.05, 0.95])
    assert lo < choice.N < hi and lo < risky.N < hi
    np.testing.assert_allclose(6 * choice.N * choice.D, 5.88e23, rtol=1e-9)
    assert choice.expected_regret >= 0
    # Hoffmann's plan is near-optimal under Epoch's fit; a 4x oversized model wastes compute
    assert good.efficiency_median > 0.95 and good.p_within > 0.9
    assert bad.efficiency_median < 0.8 and bad.regret_mean > good.regret_mean


def test_compute_for_loss_inverts_optimal(epoch_fit):
    C, N, D, w = bs.compute_for_loss(epoch_fit, 1.95)
    assert np.all(np.isfinite(C))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ExtrapolationWarning)
        check = bs.optimal(epoch_fit, [float(np.median(C))])
    assert abs(np.median(check.loss) - 1.95) < 0.01


def test_bad_input(epoch_fit):
    with pytest.raises(bs.BayescaleError, match="positive FLOP counts"):
        bs.optimal(epoch_fit, [1e21, 0.0])
    with pytest.raises(bs.BayescaleError, match="positive FLOP counts"):
        bs.optimal(epoch_fit, [-5.0])
    with pytest.raises(bs.BayescaleError, match="max_tokens must be a positive"):
        bs.optimal(epoch_fit, [1e21], max_tokens=-1)
    # a cap below the smallest feasible D: with N <= 1e9, spending 5.88e23 FLOPs needs D >= 9.8e13
    with pytest.raises(bs.BayescaleError, match="no feasible allocation"):
        bs.optimal(epoch_fit, [5.88e23], max_tokens=1e12, n_bounds=(None, 1e9))
    with pytest.raises(bs.BayescaleError, match="n_bounds: low"):
        bs.optimal(epoch_fit, [1e21], n_bounds=(1e10, 1e9))
    # target below the irreducible loss: explained, not a crash
    with pytest.warns(UserWarning, match="irreducible loss"):
        C, *_ = bs.compute_for_loss(epoch_fit, 1.5)
    assert np.all(np.isnan(C))


@pytest.mark.filterwarnings("ignore::bayescale.ConvergenceWarning")
def test_law_without_n_and_d_is_refused():
    x = np.geomspace(1e3, 1e6, 30)
    rng = np.random.default_rng(0)
    runs = pd.DataFrame({"x": x, "loss": (1.0 + 5 * x**-0.3) * np.exp(rng.normal(0, 0.01, x.size))})
    fit = bs.fit(runs, law="power_law_constant", chains=2, warmup=200, draws=200, progress=False,
                 retry=False)
    with pytest.raises(bs.BayescaleError, match="needs a law of N and D"):
        bs.optimal(fit, [1e21])
