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


def _plc_problem(n: int, seed: int = 0):
    import bayescale
    from bayescale.model import reference_points

    law = bayescale.load_law("power_law_constant")
    rng = np.random.default_rng(seed)
    x = np.tile(np.logspace(6, 8.5, 20), n // 20)
    loss = (1.7 + 40.0 * x ** -0.3) * np.exp(0.02 * rng.standard_normal(x.size))
    inputs = {"x": x}
    return law, inputs, loss, reference_points(law, inputs, loss)


def test_posterior_scale_at_the_optimum_shrinks_as_one_over_root_n():
    """The start jitter's scale: the Gauss-Newton sd at the optimum falls as 1/sqrt(runs) where the data
    identify a coordinate (100x the runs: 10x smaller, within 10%), and sigma's log coordinate has
    ~1/sqrt(2 runs)."""
    from bayescale.init import quick_optimum

    scales = {}
    for n in (200, 20_000):
        law, inputs, loss, refs = _plc_problem(n)
        scales[n] = quick_optimum(law, "student_t_log", inputs, loss, refs)["_scale"]
    assert set(scales[200]) == {"L_c_hat", "f_E", "alpha", "sigma"}
    for site in ("L_c_hat", "f_E", "alpha", "sigma"):
        assert scales[200][site] / scales[20_000][site] == pytest.approx(10.0, rel=0.1), site
        assert 0 < scales[20_000][site] < 0.05, site
    assert scales[20_000]["sigma"] == pytest.approx(1 / np.sqrt(2 * 20_000), rel=0.01)
