"""Model comparison: PSIS-LOO table, Jacobian-consistent likelihoods, stacking, guards, exact LOO.

The default suite uses three small fits of one simulated power-law-plus-constant
curve (the generating law, a plain power law, and the generating law with
Normal noise on the raw loss).  The slow tests run the acceptance checks:
LOO picks the generating law on simulated data from three laws, and the
Student-t-on-log vs Normal-on-raw comparison on Epoch's Chinchilla data.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayescale
from bayescale import azstats
from bayescale.compare import Comparison, check_comparable, compare, log_density, stacking_weights
from bayescale.errors import BayescaleError, DataError
from bayescale.runs import Runs

SMALL = {"chains": 2, "warmup": 400, "draws": 400, "progress": False}


def simulate(kind: str, seed: int) -> pd.DataFrame:
    """A noisy curve (1% log-normal scatter) from one of three laws with fixed parameters."""
    rng = np.random.default_rng(seed)
    if kind == "power_law_constant":
        x = np.geomspace(1e6, 1e10, 40)
        mu = 1.8 + 126.0 * x ** -0.3
        frame = pd.DataFrame({"x": x})
    elif kind == "bnsl1":
        x = np.geomspace(1e2, 1e5, 40)
        mu = 0.4 + 2.3 * x ** -0.05 * (1 + (x / 3000) ** (1 / 0.3)) ** (-1.5 * 0.3)
        frame = pd.DataFrame({"x": x})
    elif kind == "chinchilla":
        N, D = np.meshgrid(np.geomspace(1e7, 1e9, 8), np.geomspace(1e8, 1e10, 8))
        N, D = N.ravel(), D.ravel()
        mu = 1.8 + 480 / N ** 0.35 + 2000 / D ** 0.37
        frame = pd.DataFrame({"N": N, "D": D, "x": 6 * N * D})
    else:
        raise ValueError(kind)
    frame["loss"] = mu * np.exp(0.01 * rng.standard_normal(len(mu)))
    return frame


def _fit(runs, law, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
        return bayescale.fit(runs, law=law, **{**SMALL, "seed": 1, **kw})


@pytest.fixture(scope="module")
def runs():
    return simulate("power_law_constant", 3)[["x", "loss"]].iloc[::2].reset_index(drop=True)


@pytest.fixture(scope="module")
def fits(runs):
    """(generating law with Student-t on log, plain power law, generating law with Normal on raw)."""
    return (_fit(runs, "power_law_constant"), _fit(runs, "power_law"),
            _fit(runs, "power_law_constant", noise="normal_raw"))


@pytest.fixture(scope="module")
def comparison(fits):
    return compare(list(fits), reloo=False)


# --------------------------------------------------------------------------- likelihoods are densities of raw y


def _location(fit):
    params = {k: fit.draws(k).astype(float)[:, None] for k in fit.var_names}
    x = {"x": fit.runs.table["x"].to_numpy(float)[None, :]}
    if fit.noise == "normal_raw":
        return fit.law.mean(params, x, xp="numpy"), params["sigma"] * fit.refs["loss_ref"]
    return fit.law.log_mean(params, x, xp="numpy"), params["sigma"]


def _stored(fit):
    return np.asarray(fit.idata.log_likelihood["loss"]).reshape(-1, len(fit.runs))


def test_student_t_log_likelihood_carries_the_jacobian(fits):
    """Stored log-lik = StudentT(4) log-density of log y at the law's log mean, minus log y."""
    fit = fits[0]
    y = fit.runs.response_array()
    loc, scale = _location(fit)
    expected = stats.t.logpdf(np.log(y)[None, :], 4.0, loc, scale) \
        - np.log(y)[None, :]
    np.testing.assert_allclose(_stored(fit), expected, atol=5e-4)
    # without the Jacobian the two would differ by log y, far beyond float32 noise
    assert np.abs(np.log(y)).min() > 0.1


def test_normal_raw_likelihood_is_the_raw_density(fits):
    fit = fits[2]
    y = fit.runs.response_array()
    mu, scale = _location(fit)
    np.testing.assert_allclose(_stored(fit), stats.norm.logpdf(y[None, :], mu, scale), atol=5e-4)


@pytest.mark.parametrize("which", [0, 2])
def test_stored_log_likelihood_is_the_density_nuts_sampled(fits, which):
    """The stored values equal the NumPyro likelihood the posterior was sampled with (float32)."""
    from bayescale.noise import noise_distribution

    fit = fits[which]
    y = fit.runs.response_array()
    loc, scale = _location(fit)
    if fit.noise == "normal_raw":
        scale = scale / fit.refs["loss_ref"]  # the distribution takes sigma and loss_ref apart
    dist = noise_distribution(fit.noise, np.asarray(loc, np.float32), np.asarray(scale, np.float32),
                              fit.refs["loss_ref"])
    np.testing.assert_allclose(_stored(fit), np.asarray(dist.log_prob(y.astype(np.float32))), atol=2e-3)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_log_density_matches_the_stored_log_likelihood(fits, which):
    fit = fits[which]
    got = log_density(fit, fit.runs.input_arrays(), fit.runs.response_array())
    np.testing.assert_allclose(got, _stored(fit), atol=5e-4)


# --------------------------------------------------------------------------- the table


def test_table_columns_order_and_generating_law_first(comparison):
    t = comparison.table
    for col in ("elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight", "n_pareto_k_bad", "elpd_waic",
                "p_waic", "law", "noise", "rank"):
        assert col in t.columns
    assert list(t["rank"]) == [0, 1, 2]
    assert np.all(np.diff(t["elpd_loo"].to_numpy()) <= 0)
    assert t["elpd_diff"].iloc[0] == 0 and t["dse"].iloc[0] == 0
    assert t.loc["power_law/student_t_log", "rank"] == 2
    pl = t.loc["power_law/student_t_log"]
    assert pl["elpd_diff"] < -4 and -pl["elpd_diff"] > 2 * pl["dse"]
    assert t["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    assert t.loc["power_law/student_t_log", "weight"] < 0.05
    assert np.all(np.isfinite(t[["elpd_loo", "se", "p_loo", "elpd_waic"]].to_numpy(float)))
    assert np.all((t["p_loo"] > 0.5) & (t["p_loo"] < 10))
    assert comparison.best.startswith("power_law_constant/")


def test_elpd_matches_arviz_and_waic_is_close(fits, comparison):
    lo = azstats.loo(fits[0].idata)
    row = comparison.table.loc["power_law_constant/student_t_log"]
    assert row["elpd_loo"] == pytest.approx(lo["elpd"])
    assert row["se"] == pytest.approx(lo["se"], rel=1e-6)
    assert abs(row["elpd_waic"] - row["elpd_loo"]) < 2.0


def test_text_and_json(comparison):
    text = str(comparison)
    assert "PSIS-LOO" in text and "secondary" in text and "stacking" in text
    assert comparison.verdict() in text
    data = comparison.as_dict()
    json.dumps(data, allow_nan=False)
    assert [row["name"] for row in data["fits"]] == list(comparison.table.index)
    assert data["best"] == comparison.best


def test_names_default_and_custom(fits):
    c = compare([fits[0], fits[1]], names=["truth", "pl"], reloo=False)
    assert set(c.table.index) == {"truth", "pl"}
    assert c.best == "truth"
    c = compare([fits[0], fits[1]], reloo=False)
    assert set(c.table.index) == {"power_law_constant", "power_law"}
    with pytest.raises(BayescaleError, match="names has 1 entries"):
        compare([fits[0], fits[1]], names=["a"])
    with pytest.raises(BayescaleError, match="unique"):
        compare([fits[0], fits[1]], names=["a", "a"])


# --------------------------------------------------------------------------- stacking and mixtures


def test_stacking_weights_follow_the_fits_order(fits, comparison):
    w = stacking_weights(list(fits))
    assert w.shape == (3,) and w.sum() == pytest.approx(1.0)
    names = ["power_law_constant/student_t_log", "power_law/student_t_log", "power_law_constant/normal_raw"]
    np.testing.assert_allclose(w, [comparison.table.loc[n, "weight"] for n in names], atol=1e-6)
    assert w[1] < 0.05


def test_stacking_survives_very_negative_pointwise_elpd():
    """Shifting each run's values by their max keeps exp() from underflowing for every model."""
    base = np.array([-900.0, -2.0, -1.0, -1.5])
    w = azstats.stacking_weights({"a": base, "b": base - 5.0})
    assert w["a"] == pytest.approx(1.0, abs=1e-6)


def test_predict_with_several_fits_uses_stacking(fits):
    from bayescale.predict import predict

    grid = {"x": [1e10, 1e11]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mixed = predict([fits[0], fits[1]], grid)
        explicit = predict([fits[0], fits[1]], grid, weights=stacking_weights([fits[0], fits[1]]))
        alone = predict(fits[0], grid)
    pd.testing.assert_frame_equal(mixed, explicit)
    assert np.all(mixed["pred_lower_90"] < mixed["pred_median"])
    assert np.all(mixed["pred_median"] < mixed["pred_upper_90"])
    # the power law gets ~no weight, so the mixture is close to the generating law's prediction
    np.testing.assert_allclose(mixed["median"], alone["median"], rtol=0.02)


# --------------------------------------------------------------------------- guard


def test_refuses_one_fit(fits):
    with pytest.raises(BayescaleError, match="at least two fits"):
        compare([fits[0]])
    with pytest.raises(BayescaleError, match="at least two fits"):
        compare(fits[0])
    with pytest.raises(BayescaleError, match="list of Fit"):
        compare([fits[0], "fit.nc"])


def _with_table(fit, table, response=None):
    runs = Runs(table=table, inputs=fit.runs.inputs, response=response or fit.runs.response,
                source="other")
    return dataclasses.replace(fit, runs=runs)


def test_refuses_fits_on_different_runs(fits):
    table = fits[1].runs.table.copy()
    table.loc[3, "loss"] *= 1.01
    other = _with_table(fits[1], table)
    with pytest.raises(DataError, match=r"different runs.*'loss' differs at row 3.*same observations"):
        compare([fits[0], other])
    with pytest.raises(DataError, match="has 19 runs but fit"):
        compare([fits[0], _with_table(fits[1], table.iloc[1:].reset_index(drop=True))])
    table = fits[1].runs.table.copy()
    table.loc[[0, 5], "x"] *= 2
    with pytest.raises(DataError, match="input 'x' differs at rows 0, 5"):
        check_comparable([fits[0], _with_table(fits[1], table)])


def test_refuses_different_response_columns(fits):
    table = fits[1].runs.table.rename(columns={"loss": "error"})
    other = _with_table(fits[1], table, response="error")
    with pytest.raises(DataError, match="models column 'error' but .* models 'loss'.*response column"):
        compare([fits[0], other])


# --------------------------------------------------------------------------- Pareto k and exact LOO


def test_bad_pareto_k_gives_advice_without_refits(fits):
    k = azstats.loo(fits[0].idata)["pareto_k"]
    c = compare([fits[0], fits[1]], reloo=False, k_threshold=float(np.sort(k)[-3]) - 1e-9)
    row = c.table.loc["power_law_constant"]
    assert row["n_pareto_k_bad"] >= 3 and row["n_refit"] == 0
    note = next(n for n in c.notes if n.startswith("power_law_constant:"))
    assert "reloo=True" in note and "K-fold" in note


def test_exact_loo_replaces_the_bad_point(fits):
    """One refit (the run with the largest k): exact LOO agrees with PSIS where PSIS is fine."""
    a, b = fits[0], fits[1]
    ka, kb = azstats.loo(a.idata)["pareto_k"], azstats.loo(b.idata)["pareto_k"]
    threshold = max(ka.max(), kb.max()) - 1e-9
    target, name = (a, "power_law_constant") if ka.max() >= kb.max() else (b, "power_law")
    i = int(np.argmax(azstats.loo(target.idata)["pareto_k"]))
    plain = compare([a, b], reloo=False)
    c = compare([a, b], k_threshold=threshold)  # automatic: one bad run -> refit
    assert c.refitted == {name: (i,)}
    assert c.table.loc[name, "n_refit"] == 1
    psis, exact = plain.pointwise[name][i], c.pointwise[name][i]
    assert exact != psis and abs(exact - psis) < 0.5
    others = np.arange(len(a.runs)) != i
    np.testing.assert_array_equal(c.pointwise[name][others], plain.pointwise[name][others])
    # p_loo moves by exactly what elpd_loo loses
    d_elpd = c.table.loc[name, "elpd_loo"] - plain.table.loc[name, "elpd_loo"]
    assert c.table.loc[name, "p_loo"] - plain.table.loc[name, "p_loo"] == pytest.approx(-d_elpd)
    assert any("exact leave-one-out" in n for n in c.notes)
    assert c.timings["refit_s"] > 0


# --------------------------------------------------------------------------- saved fits, CLI, plot


@pytest.fixture(scope="module")
def saved(fits, tmp_path_factory):
    root = tmp_path_factory.mktemp("fits")
    paths = [root / "a.nc", root / "b.nc"]
    fits[0].save(paths[0])
    fits[1].save(paths[1])
    return paths


def test_compare_loaded_fits(fits, saved, comparison):
    loaded = [bayescale.load_fit(p) for p in saved]
    c = compare(loaded, reloo=False)
    assert c.table.loc["power_law_constant", "elpd_loo"] == pytest.approx(
        comparison.table.loc["power_law_constant/student_t_log", "elpd_loo"])
    compare([loaded[0], fits[1]], reloo=False)  # a loaded fit and a fresh one: same runs


def test_cli_compare_fit_files(saved, tmp_path, capsys):
    from bayescale.cli import main

    plot = tmp_path / "loo.png"
    assert main(["compare", str(saved[0]), str(saved[1]), "--json", "--no-reloo", "--plot", str(plot)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["best"] == "power_law_constant" and len(data["fits"]) == 2
    assert plot.stat().st_size > 1000
    before = plot.stat().st_mtime_ns
    assert main(["compare", str(saved[0]), str(saved[1]), "--no-reloo", "--plot", str(plot)]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err and err.count("\n") == 1
    assert plot.stat().st_mtime_ns == before                      # not overwritten
    assert main(["compare", str(saved[0]), str(saved[1]), "--no-reloo", "--plot", str(plot), "--force"]) == 0
    assert plot.stat().st_mtime_ns != before
    capsys.readouterr()
    assert main(["compare", str(saved[0]), "--json"]) == 2
    out = capsys.readouterr()
    assert "at least two fit files" in out.err and out.err.count("\n") == 1
    assert main(["compare", str(saved[0]), "runs.csv"]) == 2
    assert "not both" in capsys.readouterr().err


def test_plot_compare(comparison):
    from matplotlib.figure import Figure

    from bayescale.plots.compare import plot_compare

    fig = plot_compare(comparison)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.get_yticklabels()) == 3
    assert "PSIS-LOO" in ax.get_title()


# --------------------------------------------------------------------------- acceptance (slow)


CANDIDATES = {"power_law_constant": ["power_law", "power_law_constant", "bnsl1"],
              "bnsl1": ["power_law", "power_law_constant", "bnsl1"],
              "chinchilla": ["chinchilla", "kaplan", "power_law_constant"]}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(CANDIDATES))
def test_loo_ranks_the_generating_law_first(kind):
    """Acceptance: in at least 2 of 3 seeds (fixed) LOO ranks the generating law first.

    Measured (2 chains x 500 + 500): power_law_constant 2/3 (seed 0 goes to bnsl1,
    which nests it, by 0.6 +- 2.3), bnsl1 3/3, chinchilla 3/3; ~70 s per law.
    For Chinchilla data the power law + constant runs on x = C of the same runs.
    """
    wins = []
    for seed in (0, 1, 2):
        frame = simulate(kind, seed)
        fitted = [_fit(frame, law, seed=seed, warmup=500, draws=500) for law in CANDIDATES[kind]]
        c = compare(fitted)
        wins.append(c.best == kind)
    assert sum(wins) >= 2, wins


@pytest.mark.slow
def test_student_t_log_vs_normal_raw_on_epoch_data(epoch_runs, epoch_fit):
    """Acceptance: the Jacobian-consistent comparison of the two noise models runs and says which wins."""
    raw = _fit(epoch_runs, "chinchilla", noise="normal_raw", chains=4, warmup=1000, draws=1000, seed=0)
    c = compare([epoch_fit, raw])  # normal_raw has ~2 runs with k > 0.7: exact refits
    assert isinstance(c, Comparison) and c.n_runs == 240
    assert set(c.table["noise"]) == {"student_t_log", "normal_raw"}
    assert np.all(np.isfinite(c.table["elpd_loo"]))
    # Epoch's data have heavy-tailed residuals: the robust likelihood is preferred, clearly
    assert c.best == "chinchilla/student_t_log"
    assert -c.table["elpd_diff"].iloc[1] > 2 * c.table["dse"].iloc[1]
    print(c)


def test_several_exact_loo_refits_run_as_one_batch_and_agree_with_nuts_refits(fits):
    """Three bad runs: their refits are one fit_many batch (lockstep HMC); each exact value agrees with
    the NUTS refit of the same run within Monte Carlo error, and with PSIS where PSIS is fine."""
    from bayescale.compare import _reloo_settings, exact_loo_many, log_density, lpd

    a = fits[0]
    k = azstats.loo(a.idata)["pareto_k"]
    bad = [int(i) for i in np.argsort(k)[-3:]]
    plain = compare([a, fits[1]], reloo=False)
    c = compare([a, fits[1]], reloo=True, k_threshold=float(np.sort(k)[-3]) - 1e-9)
    assert set(c.refitted["power_law_constant"]) == set(bad)
    values = dict(zip(bad, exact_loo_many(a, bad)))
    table = a.runs.table
    rests = {i: table.drop(index=i).reset_index(drop=True) for i in bad}
    # what exact_loo_many runs: the refit settings with the fit's own seed, target acceptance (0.95 if the
    # fit itself needed the automatic refit) and metric
    settings = {**_reloo_settings(a, None), "progress": False}
    batch = bayescale.fit_many(rests, law=a.law, noise=a.noise, **settings)
    for i in bad:
        held = table.iloc[[i]]
        x, y = {"x": held["x"].to_numpy(float)}, held["loss"].to_numpy(float)
        logp_batch = log_density(batch[i], x, y)[:, 0]
        assert c.pointwise["power_law_constant"][i] == values[i][0] == pytest.approx(float(lpd(logp_batch[:, None])[0]))
        nuts = bayescale.fit(rests[i], law=a.law, noise=a.noise, **settings)
        logp_nuts = log_density(nuts, x, y)[:, 0]

        def se(logp):     # delta-method error of log mean exp, draws counted as half as many (autocorrelation)
            w = np.exp(logp - logp.max())
            return float(w.std() / w.mean() / np.sqrt(len(w) / 2))

        bound = 4 * np.hypot(se(logp_batch), se(logp_nuts))
        assert abs(values[i][0] - float(lpd(logp_nuts[:, None])[0])) < bound
        assert abs(values[i][0] - plain.pointwise["power_law_constant"][i]) < 0.5
    with pytest.raises(TypeError):       # a setting neither sampler knows is still refused
        exact_loo_many(a, bad, {"bogus": 1})
