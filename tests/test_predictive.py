"""Predictive groups of fit.idata (posterior predictive, prior, prior predictive) and the LOO-PIT check.

One fit of the shipped 40-run pilot study (4 chains x 1000 draws, ~3 s) is shared by the module.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.data import pilot_chinchilla
from bayescale.evidence.predictive import PRIOR_DRAWS, loo_pit, pit_check, prior_draws


@pytest.fixture(scope="module")
def pilot_fit():
    return bs.fit(pilot_chinchilla(), law="chinchilla", seed=3, progress=False)


@pytest.fixture(scope="module")
def az():
    import matplotlib

    matplotlib.use("Agg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def test_idata_has_every_group(pilot_fit):
    idata = pilot_fit.idata
    groups = set(idata.groups())
    assert {"posterior", "posterior_predictive", "log_likelihood", "sample_stats", "prior", "prior_predictive",
            "observed_data", "constant_data"} <= groups
    n = len(pilot_fit.runs)
    assert idata.posterior_predictive["loss"].shape == (4, 1000, n)
    assert idata.posterior_predictive["loss"].dims == ("chain", "draw", "run")
    assert idata.prior_predictive["loss"].shape == (1, PRIOR_DRAWS, n)
    assert set(idata.prior.data_vars) == set(pilot_fit.var_names)
    assert np.all(np.isfinite(idata.posterior_predictive["loss"].values))


def test_arviz_plots_run_on_the_fit(pilot_fit, az):
    """The acceptance: az.plot_ppc and az.plot_loo_pit (and plot_dist on the prior) on fit.idata."""
    from matplotlib import pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        axes = az.plot_ppc(pilot_fit.idata, num_pp_samples=50, random_seed=0)
        assert np.size(axes) >= 1
        ax = az.plot_loo_pit(pilot_fit.idata, y="loss")
        assert ax is not None
        az.plot_loo_pit(pilot_fit.idata, y="loss", ecdf=True)
        az.plot_ppc(pilot_fit.idata, group="prior", num_pp_samples=50, random_seed=0)
        az.plot_dist(pilot_fit.idata.prior["alpha"].values)
    plt.close("all")


def test_posterior_predictive_matches_the_exact_predictive_band(pilot_fit):
    """Simulated draws (noise_sample) and predict()'s exact mixture-CDF quantiles describe one distribution.

    Per run, the 5% and 95% quantiles of the 4000 simulated losses against predict()'s pred_lower_90 /
    pred_upper_90: the Monte Carlo SE of a 5% quantile of 4000 draws is sqrt(0.05 * 0.95 / 4000) / f(q),
    about 0.35% of the loss here (f the density at the quantile in relative units); 1.5% is > 4 SE.
    """
    sims = pilot_fit.idata.posterior_predictive["loss"].values.reshape(-1, len(pilot_fit.runs))
    q5, q95 = np.quantile(sims, [0.05, 0.95], axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        band = bs.predict(pilot_fit, pilot_fit.runs.table, prob=0.9)
    assert np.allclose(q5, band["pred_lower_90"], rtol=0.015)
    assert np.allclose(q95, band["pred_upper_90"], rtol=0.015)


def test_prior_draws_follow_the_card(pilot_fit):
    """alpha ~ the card's prior directly; L_c is scaled: log(L_c / loss_ref) ~ Normal(loc, scale) of its
    LogNormal; f_E ~ its Beta; the derived E is f_E * L_c, draw by draw.

    1000 draws: the SE of a mean is sd / sqrt(1000); 4 SE tolerances.
    """
    law = pilot_fit.law
    draws = prior_draws(law, pilot_fit.refs, 1000, seed=0)
    priors = {p.name: p for p in law.params}
    lc = priors["L_c"]
    assert lc.scale is not None and lc.prior.family == "LogNormal"
    log_lc = np.log(draws["L_c"] / pilot_fit.refs["loss_ref"])
    loc, scale = lc.prior.args
    assert abs(log_lc.mean() - loc) < 4 * scale / math.sqrt(1000)
    assert abs(log_lc.std() / scale - 1) < 4 * math.sqrt(0.5 / 1000)
    a, b = priors["f_E"].prior.args                         # Beta(a, b): mean a / (a + b), sd below
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    assert abs(draws["f_E"].mean() - a / (a + b)) < 4 * sd / math.sqrt(1000)
    np.testing.assert_allclose(draws["E"], draws["f_E"] * draws["L_c"], rtol=1e-6)
    a = priors["alpha"].prior
    lo, hi = a.bounds
    assert np.all((draws["alpha"] >= lo) & (draws["alpha"] <= hi))
    assert abs(np.median(draws["alpha"]) - a.median()) < 4 * (hi - lo) * 0.5 / math.sqrt(1000) + 0.05
    assert np.all(draws["sigma"] > 0)
    # reproducible: the same seed, the same draws; the group of idata is this
    again = prior_draws(law, pilot_fit.refs, 1000, seed=0)
    assert np.array_equal(draws["alpha"], again["alpha"])


def test_saved_file_has_no_predictive_groups_and_load_rebuilds_them(pilot_fit, tmp_path):
    import h5py

    path = pilot_fit.save(tmp_path / "fit.nc")
    with h5py.File(path, "r") as fh:
        stored = set(fh.keys())
    assert "posterior" in stored and not {"posterior_predictive", "prior", "prior_predictive"} & stored
    back = bs.load_fit(path)
    assert back.idata.posterior_predictive["loss"].shape == pilot_fit.idata.posterior_predictive["loss"].shape
    assert np.array_equal(back.idata.posterior_predictive["loss"].values,
                          pilot_fit.idata.posterior_predictive["loss"].values)   # same seed, same draws
    plain = az_read(path)                                           # the file's attributes, for ArviZ users
    assert "bayescale_meta" in plain.posterior.attrs and "bayescale_card" in plain.posterior.attrs


def az_read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz.from_netcdf(str(path))


def test_loo_pit_agrees_with_arviz(pilot_fit, az):
    """Exact LOO-PIT (PSIS weights x the noise CDF) against ArviZ's (PSIS weights x simulated draws).

    ArviZ's value is a weighted share of 4000 simulated draws below the observation: its Monte Carlo SE
    is at most sqrt(0.25 / S_eff); with PSIS effective sizes above ~1000 here that is 0.016; 0.06 is
    > 3.5 SE for the largest of 40 differences.
    """
    ours = loo_pit(pilot_fit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.asarray(az.loo_pit(pilot_fit.idata, y="loss"), float)
    assert ours.shape == theirs.shape == (len(pilot_fit.runs),)
    assert np.all((ours >= 0) & (ours <= 1))
    assert np.max(np.abs(ours - theirs)) < 0.06
    check = pit_check(ours)
    assert check.calibrated, check.verdict          # the pilot is simulated from the fitted law
    assert check.verdict.startswith("looks calibrated")


@pytest.mark.parametrize("draw, calibrated, words", [
    (lambda rng, n: rng.uniform(size=n), True, "looks calibrated"),
    (lambda rng, n: rng.beta(0.4, 0.4, size=n), False, "too narrow"),
    (lambda rng, n: rng.beta(6, 6, size=n), False, "too wide"),
    (lambda rng, n: rng.beta(4, 1.5, size=n), False, "above their predictions"),
])
def test_pit_check_names_the_shape(draw, calibrated, words):
    """Known shapes of 200 PIT values (fixed seed): uniform passes; U-shape, hump and skew are named."""
    check = pit_check(draw(np.random.default_rng(11), 200))
    assert check.calibrated is calibrated
    assert words in check.verdict, check.verdict


@pytest.mark.filterwarnings("ignore::bayescale.ConvergenceWarning")    # 100 draws: a plumbing check
def test_predictive_draws_of_a_bounded_metric_stay_inside_0_1():
    """normal_logit draws are pushed through the inverse logit: never outside (0, 1)."""
    rng = np.random.default_rng(0)
    x = np.geomspace(1e6, 1e9, 20)
    acc = 1 / (1 + np.exp(-(np.log(x) - 16))) * 0.9 + 0.05 + 0.01 * rng.standard_normal(20)
    fit = bs.fit(pd.DataFrame({"C": x * 1e12, "accuracy": np.clip(acc, 0.01, 0.99)}), law="sigmoid_metric",
                 chains=1, warmup=100, draws=100, progress=False, retry=False)
    assert fit.noise == "normal_logit"
    for group in ("posterior_predictive", "prior_predictive"):
        sims = getattr(fit.idata, group)["loss"].values
        assert np.all((sims > 0) & (sims < 1)), group
