"""The compute rollout and the calibrated predictive band (bayescale.evidence).

Fits are small (2 chains x 300 draws) and shared through module fixtures: the statements tested
are about the band's construction given whatever posterior the fit has, not about the posterior.
Tolerances: the calibrated mixture is integrated on fixed nodes (24 scale-mixture nodes for the
Student-t, 500 thinned draws), so its quantiles are checked against 400,000 simulated draws of
the same model to 0.5% of the interval's width (Monte Carlo SE of a 5% quantile with 4e5 draws
is ~0.1% of it), and its density integrates to 1 within 0.5%.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale import BayescaleError
from bayescale.evidence import calibrate, calibrated_forecast, posterior_forecast, rollout_compute
from bayescale.evidence.calibration import (Calibration, _S1_GRID, calibration_from_points,
                                            extrapolation_distance)
from bayescale.evidence.rollout import compute_cut

SMALL = {"chains": 2, "warmup": 300, "draws": 300}


def curves(n_runs: int = 5, n_ckpt: int = 12, seed: int = 0, bend: float = 0.0) -> pd.DataFrame:
    """Learning curves of a Chinchilla law; ``bend`` adds a log-quadratic misspecification in D."""
    rng = np.random.default_rng(seed)
    rows = []
    for r, N in enumerate(np.geomspace(2e7, 8e8, n_runs)):
        for D in np.geomspace(2e9, 8e10, n_ckpt):
            loss = (1.8 + 480 / N**0.34 + 2000 / D**0.36) * np.exp(bend * np.log(D / 2e9) ** 2
                                                                   + 0.004 * rng.standard_normal())
            rows.append({"model": f"m{r}", "N": N, "D": D, "loss": loss})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayescale.fit(curves(), law="chinchilla", run="model", **SMALL)


def point_mass(s1: float, distance: str = "log") -> Calibration:
    w = np.zeros(len(_S1_GRID))
    w[np.argmin(np.abs(_S1_GRID - s1))] = 1.0
    return Calibration(method="discrepancy", n=10, factors=(2.0,), prior="test", s1_grid=tuple(_S1_GRID),
                       s1_weights=tuple(w), distance=distance)


def test_compute_cut_scores_each_truncated_run_at_its_final_checkpoint():
    C = np.array([1, 2, 4, 8, 1, 2, 3, 10.0])
    runs = np.array(["a", "a", "a", "a", "b", "b", "b", "c"])
    train, test = compute_cut(C, 2.0, runs, progress=C)
    assert train.tolist() == [True, True, True, False, True, True, True, False]
    assert np.flatnonzero(test).tolist() == [3, 7]          # a's last row; c (entirely above the cut)
    train, test = compute_cut(C, 2.0)                     # no runs: every row above the cut
    assert np.flatnonzero(test).tolist() == [3, 7]
    train, test = compute_cut(C, 4.0, runs, progress=C)
    assert np.flatnonzero(test).tolist() == [3, 6, 7] and train.sum() == 4   # b now truncated at C = 3


def test_rollout_compute_on_checkpoints():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = rollout_compute(curves(), "chinchilla", [2, 4], run="model", **SMALL)
    assert set(bt.table["window"]) == {0, 1} and set(bt.table["factor"]) == {2.0, 4.0}
    final = curves().groupby("model")["D"].max().iloc[0]
    assert np.allclose(bt.table["D"], final)              # every scored row is a run's final checkpoint
    assert bt.table["extrapolation"].min() >= 1.0
    # each scored run's own curve: seen up to the cut (or not at all: NaN), scored at its final D
    assert set(bt.table["run_id"]) <= set(curves()["model"])
    seen = bt.table["seen_progress"].to_numpy()
    assert np.all(np.isnan(seen) | (seen < bt.table["progress"].to_numpy()))
    from bayescale.evidence.calibration import own_run_distance, rollout_points
    pts = rollout_points(bt)
    assert len(pts) == 2 and all(len(p) == 4 for p in pts)
    np.testing.assert_allclose(pts[0][3], own_run_distance(bt.table["progress"][bt.table["window"] == 0],
                                                           bt.table["seen_progress"][bt.table["window"] == 0]))
    assert own_run_distance([4.0, 4.0, 1.0], [1.0, np.nan, 2.0]).tolist() == [np.log(4.0), 0.0, 0.0]
    with pytest.raises(BayescaleError, match="rollout factor must be > 1"):
        rollout_compute(curves(), "chinchilla", 1.0, run="model")


def test_discrepancy_band_matches_simulation(fit):
    """Quantiles of the calibrated mixture = those of simulated log y = loc_s + s1 * d * z + sigma_s * t4."""
    grid = pd.DataFrame({"N": [3e9, 8e8], "D": [3e11, 8e10]})
    s1 = 0.02
    cal_fit = replace(fit, calibration=point_mass(s1))
    fc = calibrated_forecast(cal_fit, grid, (0.5, 0.9))
    d = extrapolation_distance(fit, {"N": grid["N"].to_numpy(), "D": grid["D"].to_numpy()})
    assert d[0] > 1.0 and d[1] == 0.0                      # the second point is the largest run: inside
    rng = np.random.default_rng(1)
    params = {k: fit.draws(k) for k in fit.var_names}
    S = len(params["sigma"])
    idx = rng.integers(0, S, 400_000)
    p = {k: v[idx][:, None] for k, v in params.items()}
    log_mu = np.log(fit.law.mean(p, {"N": grid["N"].to_numpy()[None], "D": grid["D"].to_numpy()[None]},
                                 xp="numpy"))
    sim = np.exp(log_mu + s1 * d[None] * rng.standard_normal(log_mu.shape)
                 + p["sigma"] * rng.standard_t(4, log_mu.shape))
    for prob, (lo, hi) in fc.intervals.items():
        qlo, qhi = np.quantile(sim, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        np.testing.assert_allclose(lo, qlo, atol=0.005 * float(np.max(qhi - qlo)))
        np.testing.assert_allclose(hi, qhi, atol=0.005 * float(np.max(qhi - qlo)))
    raw = posterior_forecast(fit, grid, (0.5, 0.9))
    w_raw = raw.intervals[0.9][1] - raw.intervals[0.9][0]
    w_cal = fc.intervals[0.9][1] - fc.intervals[0.9][0]
    assert w_cal[0] > 1.5 * w_raw[0]                       # far out: much wider
    assert w_cal[1] == pytest.approx(w_raw[1], rel=0.03)   # inside the runs: the raw band


@pytest.mark.parametrize("cal", [point_mass(0.02), Calibration(method="inflation", n=30, factors=(2.0,), k=2.0)],
                         ids=["discrepancy", "inflation"])
def test_calibrated_density_integrates_to_one_and_matches_the_cdf(fit, cal):
    grid = pd.DataFrame({"N": [3e9], "D": [3e11]})
    fc = calibrated_forecast(replace(fit, calibration=cal), grid)
    lo, hi = fc.intervals[0.9]
    y = np.linspace(lo[0] * 0.8, hi[0] * 1.25, 4001)
    dens = np.exp(np.array([fc.logpdf(np.array([v]))[0] for v in y]))
    assert np.trapezoid(dens, y) == pytest.approx(1.0, abs=0.005)
    assert fc.cdf(lo)[0] == pytest.approx(0.05, abs=0.002) and fc.cdf(hi)[0] == pytest.approx(0.95, abs=0.002)


def test_inflation_scales_log_deviations(fit):
    grid = pd.DataFrame({"N": [3e9, 8e8], "D": [3e11, 8e10]})
    raw = posterior_forecast(fit, grid)
    one = calibrated_forecast(replace(fit, calibration=Calibration("inflation", 30, (2.0,), k=1.0)), grid)
    two = calibrated_forecast(replace(fit, calibration=Calibration("inflation", 30, (2.0,), k=2.0)), grid)
    for p in (0.5, 0.9):
        np.testing.assert_allclose(one.intervals[p], raw.intervals[p], rtol=1e-9)
        np.testing.assert_allclose(np.log(two.intervals[p][1] / two.median),
                                   2 * np.log(raw.intervals[p][1] / raw.median), rtol=1e-9)


def test_conformal_k_is_floored_at_one_on_fewer_than_20_runs(fit):
    grid = {"N": np.geomspace(1e9, 3e9, 25), "D": np.full(25, 1e11)}
    med = posterior_forecast(fit, pd.DataFrame(grid)).median
    close = med * np.exp(0.0005 * np.linspace(-1, 1, 25))       # well inside the raw band
    few = calibration_from_points([(fit, {k: v[:12] for k, v in grid.items()}, close[:12])], method="inflation")
    assert few.k == 1.0 and few.k_conformal < 1 and "kept at 1" in few.notes[0] and few.n == 12
    many = calibration_from_points([(fit, grid, close)], method="inflation")
    assert many.k == many.k_conformal < 1 and many.n == 25
    with pytest.raises(BayescaleError, match="needs at least 9 rollout runs"):
        calibration_from_points([(fit, {k: v[:5] for k, v in grid.items()}, close[:5])], method="inflation")


def test_discrepancy_posterior_follows_the_rollout_errors(fit):
    """Rollout points off by a few % at a known distance pull s1 up; points on the median pull it down."""
    grid = {"N": np.geomspace(1e9, 3e9, 12), "D": np.full(12, 2e11)}
    med = posterior_forecast(fit, pd.DataFrame(grid)).median
    sign = np.where(np.arange(12) % 2, 1.0, -1.0)
    far = calibration_from_points([(fit, grid, med * np.exp(0.04 * sign))])
    near = calibration_from_points([(fit, grid, med)])
    assert far.s1_quantiles([0.5])[0] > 5 * near.s1_quantiles([0.5])[0]
    d = extrapolation_distance(fit, grid)
    # the learned tau at these points is about the 4% error they show
    assert 0.02 < far.s1_quantiles([0.5])[0] * np.median(d) < 0.08


def test_calibrate_end_to_end_predict_and_save(fit, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = calibrate(fit, factors=(2, 4), chains=2, warmup=300, draws=300)
    c = cal.calibration
    assert c.method == "discrepancy" and c.n >= 2 and c.factors == (2.0, 4.0)
    assert "5 runs" in c.source and "n = " in c.label
    assert fit.calibration is None                         # the original fit is unchanged
    table = bayescale.predict(cal, {"N": [3e9, 8e8], "D": [3e11, 8e10]}, target=2.6, warn_beyond=100)
    for col in ("cal_median", "cal_lower_90", "cal_upper_90", "cal_lower_50", "cal_upper_50", "cal_p_below_target",
                "pred_lower_90", "law_lower_90"):
        assert col in table.columns
    assert table.attrs["calibration"] == c.label
    assert (table["cal_upper_90"] >= table["pred_upper_90"] * (1 - 1e-3)).all()
    assert "cal_median" not in bayescale.predict(fit, {"N": [3e9], "D": [3e11]}, warn_beyond=100).columns
    alloc = bayescale.optimal(cal, [1e21, 1e22])
    summary = alloc.summary()
    assert alloc.calibration == c.label and alloc.loss_calibrated.shape == alloc.loss.shape
    assert (summary["loss_cal_upper_90"] - summary["loss_cal_lower_90"]
            >= summary["loss_upper_90"] - summary["loss_lower_90"]).all()
    assert bayescale.optimal(fit, [1e21]).loss_calibrated is None
    back = bayescale.load_fit(cal.save(tmp_path / "cal.nc"))
    assert back.calibration == c
    np.testing.assert_allclose(bayescale.predict(back, {"N": [3e9], "D": [3e11]}, warn_beyond=100)["cal_upper_90"],
                               table["cal_upper_90"].iloc[:1], rtol=1e-9)


def test_calibration_errors(fit):
    grid = pd.DataFrame({"N": [3e9], "D": [3e11]})
    with pytest.raises(BayescaleError, match="no calibration in the fit"):
        calibrated_forecast(fit, grid)
    with pytest.raises(BayescaleError, match="calibration method must be one of"):
        calibration_from_points([(fit, {"N": np.array([1e9]), "D": np.array([1e11])}, np.array([2.5]))],
                                method="magic")
    with pytest.raises(BayescaleError, match="calibrate needs a Fit"):
        calibrate("fit.nc")
    with pytest.raises(BayescaleError, match="distance scale must be"):
        extrapolation_distance(fit, {"N": np.array([1e9]), "D": np.array([1e11])}, "far")
    assert math.isclose(float(extrapolation_distance(fit, {"N": np.array([8e8]), "D": np.array([8e10])})[0]), 0.0)


def offset_curves(n_runs: int = 12, sd: float = 0.02, seed: int = 3) -> pd.DataFrame:
    """Runs of a Chinchilla law, each shifted by its own offset ~ Normal(0, sd) on log loss."""
    rng = np.random.default_rng(seed)
    rows = []
    for r, N in enumerate(np.geomspace(2e7, 8e8, n_runs)):
        b = sd * rng.standard_normal()
        for D in np.geomspace(2e9, 8e10, 8):
            loss = (1.8 + 480 / N**0.34 + 2000 / D**0.36) * np.exp(b + 0.002 * rng.standard_normal())
            rows.append({"model": f"m{r}", "N": N, "D": D, "loss": loss})
    return pd.DataFrame(rows)


def test_new_run_offset_sd_is_learned_from_the_runs():
    """12 runs with offsets of sd 2%: the s0 posterior (9 degrees of freedom) must bracket 0.02 within
    its 90% interval; the fit's noise scale has absorbed those offsets (every row counts as a run), so
    nearly all of s0 is carried already and a new run's band is barely wider than a continuation's."""
    from bayescale.evidence.offsets import learn_offset_sd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(offset_curves(), law="chinchilla", run="model", **SMALL)
    grid, w, n, carried = learn_offset_sd(fit)
    assert n == 12 and 0.01 < carried < 0.03
    cw = np.cumsum(w)
    lo, hi = np.interp([0.05, 0.95], cw - 0.5 * w, grid)
    assert lo < 0.02 < hi and hi / lo < 4
    cal = replace(point_mass(1e-4), s0_prior="test", s0_grid=tuple(grid), s0_weights=tuple(w), n_offsets=n,
                  s0_carried=carried)
    at = pd.DataFrame({"N": [8e8], "D": [8e10]})
    new = np.diff(calibrated_forecast(replace(fit, calibration=cal), at).intervals[0.9], axis=0)[0, 0]
    same = np.diff(calibrated_forecast(replace(fit, calibration=cal), at, runs=["m11"]).intervals[0.9],
                   axis=0)[0, 0]
    assert same <= new < 1.5 * same
    assert "new run's offset sd" in cal.label and "from 12 runs" in cal.label


def test_two_runs_carry_no_offset_evidence_so_the_prior_widens_new_runs():
    """Two runs: the law fits both runs' offsets exactly, so s0 is its prior and none of it is carried by
    the noise; a new run's band is then much wider than a continuation of a training run's."""
    from bayescale.evidence.offsets import DEFAULT_S0_PRIOR, learn_offset_sd

    data = offset_curves(n_runs=12)
    data = data[data["model"].isin(["m3", "m9"])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(data, law="chinchilla", run="model", **SMALL)
    grid, w, n, carried = learn_offset_sd(fit)
    assert n == 2 and carried < 0.002
    cal = replace(point_mass(1e-4), s0_prior=DEFAULT_S0_PRIOR, s0_grid=tuple(grid), s0_weights=tuple(w),
                  n_offsets=n, s0_carried=carried)
    n9 = float(data.loc[data["model"] == "m9", "N"].iloc[0])
    table = bayescale.predict(replace(fit, calibration=cal), {"N": [n9, n9], "D": [1.6e11, 1.6e11],
                                                               "model": ["m9", "new"]})
    widths = (table["cal_upper_90"] - table["cal_lower_90"]).to_numpy()
    assert widths[1] > 3 * widths[0]


def test_no_offset_term_without_checkpoints():
    from bayescale.evidence.offsets import learn_offset_sd

    finals = offset_curves().groupby("model").tail(1).copy()
    finals["D"] = np.geomspace(2e9, 8e10, len(finals))          # final-loss data: D must vary
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(finals, law="chinchilla", run="model", **SMALL)
    assert fit.structure.max_checkpoints == 1 and learn_offset_sd(fit) is None
