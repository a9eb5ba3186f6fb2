"""The start point's optimiser (bayescale.init) against SciPy's robust least squares."""

import numpy as np
import pytest

from bayescale.init import robust_least_squares


@pytest.mark.parametrize("seed", range(4))
def test_soft_l1_optimum_matches_scipys(seed):
    from scipy.optimize import least_squares

    rng = np.random.default_rng(seed)
    x = np.linspace(0, 4, 80)
    truth = np.array([2.0, 1.3, 0.5])
    y = truth[0] * np.exp(-truth[1] * x) + truth[2] + rng.normal(0, 0.02, x.size)
    y[rng.choice(x.size, 8, replace=False)] += rng.normal(0, 1.0, 8)       # 10% gross outliers

    def residuals(p):
        return y - (p[0] * np.exp(-p[1] * x) + p[2])

    start = np.array([1.0, 0.5, 0.0])
    ours, cost = robust_least_squares(residuals, start, f_scale=0.05)
    ref = least_squares(residuals, start, loss="soft_l1", f_scale=0.05, xtol=1e-14, ftol=1e-14, gtol=1e-14)
    assert cost == pytest.approx(ref.cost, rel=1e-8)
    assert np.allclose(ours, ref.x, rtol=1e-5, atol=1e-7)
    assert np.allclose(ours, truth, atol=0.05)            # the outliers did not drag the fit


def test_stops_within_its_evaluation_budget():
    calls = []

    def residuals(p):
        calls.append(1)
        return np.array([p[0] - 1.0, 10.0 * (p[1] - p[0] ** 2)])      # Rosenbrock

    x, _ = robust_least_squares(residuals, np.array([-1.2, 1.0]), f_scale=1.0, max_evals=60)
    assert len(calls) <= 60
    x, cost = robust_least_squares(residuals, np.array([-1.2, 1.0]), f_scale=1.0)
    assert np.allclose(x, [1.0, 1.0], atol=1e-6) and cost < 1e-12
