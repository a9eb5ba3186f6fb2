"""The lockstep batch sampler (bayescale.inference.lockstep, .batch) and fit_many.

Tolerances, as in test_nuts.py: a posterior mean is off by its Monte Carlo
standard error sd / sqrt(ESS); we allow 4 such errors (a false failure about
1 in 16,000 per check at a fixed seed).  A variance has relative standard error
~ sqrt(2 / ESS) for near-Gaussian draws; again 4x.  Comparing two samplers, the
difference of two means has standard error sqrt(se_1^2 + se_2^2).
"""

import concurrent.futures as cf
import math
import multiprocessing as mp
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from conftest import check_correlated_gaussian, check_gamma_quantiles

import bayescale
from bayescale import diagnostics
from bayescale.diagnostics import ess_bulk, ess_tail, gate_statistics, rank_rhat
from bayescale.errors import BayescaleError, DataError, FitFileError
from bayescale.inference.fitset import load_fitset
from bayescale.inference.lockstep import lockstep_program, trajectory_steps
from bayescale.inference.many import group_seed, split_groups

SMALL = dict(chains=2, warmup=150, draws=150, progress=False, retry=False)   # 300 draws: the gate fails (ESS)


def curves(n_groups, seed=0, bad=()):
    """Simulated power-law-plus-constant curves, 10-30 runs each; groups in ``bad`` get a negative loss."""
    rng = np.random.default_rng(seed)
    parts = []
    for g in range(n_groups):
        n = int(rng.integers(10, 31))
        x = np.geomspace(1e6, 1e9, n) * np.exp(rng.normal(0, 0.05, n))
        e, alpha = rng.uniform(1, 3), rng.uniform(0.2, 0.6)
        a = rng.uniform(0.5, 2) * e * 1e7 ** alpha
        y = (e + a * x ** -alpha) * np.exp(rng.normal(0, 0.02, n))
        if g in bad:
            y[3] = -1.0
        parts.append(pd.DataFrame({"curve": f"c{g}", "x": x, "loss": y}))
    return pd.concat(parts, ignore_index=True)


def run_program(logp, d, chains=4, warmup=500, draws=1000, steps=8, dense=True):
    """The lockstep kernel for a target without data: (positions (chains, draws, d), stats, metric)."""
    first, advance = lockstep_program(lambda q, data: jax.value_and_grad(logp)(q), dim=d, warmup=warmup,
                                      draws=draws, target_accept=0.8, dense=dense)
    rng = np.random.default_rng(1)
    q0 = jnp.asarray(rng.uniform(-2, 2, (chains, d)), jnp.float32)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(7), jnp.arange(chains))
    data = jnp.zeros((chains, 1))
    state = jax.jit(first)(q0, data, keys)
    state, (q, stats) = jax.jit(advance)(state, data, keys, jnp.int32(0), trajectory_steps(0, warmup + draws, steps))
    pos = np.swapaxes(np.asarray(q)[warmup:], 0, 1).astype(float)
    stats = {k: np.swapaxes(np.asarray(v)[warmup:], 0, 1) for k, v in stats.items()}
    return pos, stats, np.asarray(state["minv"])


def test_trajectory_steps_are_jittered_around_the_mean_and_fixed_by_the_seed():
    steps = trajectory_steps(3, 4000, 8)
    assert steps.min() == 4 and steps.max() == 12 and abs(steps.mean() - 8) < 0.2
    assert np.array_equal(steps, trajectory_steps(3, 4000, 8))
    assert not np.array_equal(steps, trajectory_steps(4, 4000, 8))
    assert set(trajectory_steps(0, 100, 1)) == {1}


def test_gate_statistics_equal_the_single_fit_functions():
    """Vectorised R-hat / bulk / tail ESS equal rank_rhat / ess_bulk / ess_tail problem by problem:
    ties (a rejected proposal repeats a draw), constant and non-finite chains included."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4, 300)).cumsum(axis=2) * 0.05 + rng.normal(size=(8, 4, 300))
    x[1] = 1.0
    x[2, 1] = 5.0
    x[3, 0, 7] = np.nan
    x[4, :, 1::2] = x[4, :, 0::2]
    x[5] = np.round(x[5], 1)
    r, b, t = gate_statistics(x)
    with np.errstate(all="ignore"):
        one = np.array([[rank_rhat(xi), ess_bulk(xi), ess_tail(xi)] for xi in x])
    assert np.allclose(np.c_[r, b, t], one, rtol=1e-10, equal_nan=True)
    # more problems than a block (the statistics are computed block by block): the same values
    many = np.concatenate([x] * 9)                      # 72 problems: blocks of 32, 32 and 8
    assert len(many) > 2 * diagnostics._BLOCK
    assert np.allclose(np.c_[gate_statistics(many)], np.tile(one, (9, 1)), rtol=1e-10, equal_nan=True)


def test_lockstep_kernel_on_a_correlated_badly_scaled_gaussian():
    check_correlated_gaussian(lambda logp, d: run_program(logp, d), accept_max=0.999)


def test_lockstep_kernel_matches_a_skewed_targets_quantiles():
    check_gamma_quantiles(lambda logp, d: run_program(logp, d, dense=False))


def test_split_groups_and_bad_arguments():
    table = curves(3)
    groups, by = split_groups(table, "curve")
    assert [k for k, _ in groups] == ["c0", "c1", "c2"] and by == ("curve",)
    assert "curve" not in groups[0][1].columns
    two, by2 = split_groups(table.assign(arm=1), ["curve", "arm"])
    assert two[0][0] == ("c0", 1) and by2 == ("curve", "arm")
    assert [k for k, _ in split_groups([table, table])[0]] == [0, 1]
    assert [k for k, _ in split_groups({"a": table, "b": table})[0]] == ["a", "b"]
    with pytest.raises(DataError, match="no column 'task'"):
        split_groups(table, "task")
    holes = table.astype({"curve": object})
    holes.loc[4, "curve"] = None
    with pytest.raises(DataError, match="missing value at row 4"):
        split_groups(holes, "curve")
    with pytest.raises(BayescaleError, match="needs by="):
        bayescale.fit_many(table, "power_law_constant")
    with pytest.raises(BayescaleError, match="device must be"):
        bayescale.fit_many(table, "power_law_constant", by="curve", device="tpu")
    with pytest.raises(BayescaleError, match="threads"), cf.ThreadPoolExecutor(1) as pool:
        bayescale.fit_many(table, "power_law_constant", by="curve", executor=pool, **SMALL)
    with pytest.raises(BayescaleError, match="spawn"):
        with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as pool:
            bayescale.fit_many(table, "power_law_constant", by="curve", executor=pool, **SMALL)


@pytest.fixture(scope="module")
def small_set():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return curves(5, bad=(1,)), bayescale.fit_many(curves(5, bad=(1,)), "power_law_constant", by="curve",
                                                        **SMALL)


def test_fit_many_fits_every_valid_group_and_reports_the_bad_one(small_set):
    table, fs = small_set
    assert list(fs) == ["c0", "c2", "c3", "c4"] and len(fs) == 4
    assert fs.all_keys == ("c0", "c1", "c2", "c3", "c4")
    assert "column 'loss' has 1 non-positive value at row 3" in fs.errors["c1"]
    with pytest.raises(KeyError, match="was not fitted"):
        fs["c1"]
    summary = fs.summary()
    assert summary["curve"].tolist() == ["c0", "c1", "c2", "c3", "c4"]
    assert summary.loc[1, "status"] == "error" and set(summary["status"]) <= {"ok", "failed gate", "error"}
    for col in ("E", "E_lo", "E_hi", "alpha", "sigma", "r_hat_max", "ess_bulk_min", "divergences"):
        assert col in summary.columns
    f = fs["c3"]
    assert f.samples.posterior["E"].shape == (2, 150)
    assert f.log_likelihood.shape == (2, 150, (table["curve"] == "c3").sum())   # computed when first asked for
    assert f.settings["seed"] == group_seed(0, "c3") and f.settings["chains"] == 2
    assert f.settings["sampler"] == "bayescale.inference.lockstep"
    assert np.isfinite(f.diagnostics.as_dict()["r_hat_max"])
    assert "4 fitted" in str(fs)


def test_a_failed_fit_is_refitted_by_nuts_with_the_settings_its_failure_calls_for():
    """300 draws cannot give an ESS of 400: the gate fails at the first attempt and at the batched retry (3x the
    steps, the same draws), and each fit is redone once by NUTS (fit) with twice the warm-up, four times the
    draws and target acceptance 0.95 (retry_settings), its own seed."""
    table = curves(2)
    with pytest.warns(bayescale.FitRetried, match="2 of 2 fits.*3x the leapfrog steps; 2 that still failed"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.ConvergenceWarning)     # the last attempt's verdict is not tested
        fs = bayescale.fit_many(table, "power_law_constant", by="curve", **{**SMALL, "retry": True})
    for key in fs:
        f = fs[key]
        r = f.settings["retried"]
        assert r["changed"] == {"warmup": 300, "draws": 600, "target_accept": 0.95, "sampler": "bayescale.nuts"}
        assert r["first_attempt"]["sampler"] == "bayescale.inference.lockstep" and r["first_attempt"]["steps"] == 8
        assert any("effective sample size" in p for p in r["first_problems"])
        assert r["batched_retry"]["steps"] == 24
        assert any("effective sample size" in p for p in r["batched_retry"]["problems"])
        assert f.samples.posterior["E"].shape == (2, 600) and f.settings["sampler"] == "bayescale.nuts"
        assert f.settings["seed"] == group_seed(0, key)
    assert fs.summary()["retried"].tolist() == [True, True] and fs.timings["retried"] == 2
    assert fs.summary()["sampler"].tolist() == ["nuts", "nuts"]
    assert fs.timings["batch_retried"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        once = bayescale.fit_many(table, "power_law_constant", by="curve", **SMALL)
    assert all(once[k].settings["retried"] is None and once[k].settings["retry"] is False for k in once)


def test_a_fit_whose_trajectories_are_too_short_passes_the_batched_retry(capsys):
    """One leapfrog step per iteration mixes too slowly (the gate fails on R-hat and ESS); the batched retry
    with 3 steps passes, stays on the batch sampler, keeps the group's seed and records the first attempt;
    the progress bar says so."""
    table = curves(2)
    with pytest.warns(bayescale.FitRetried, match="2 of 2 fits.*; 0 that still failed.*2 of 2 then passed"):
        fs = bayescale.fit_many(table, "power_law_constant", by="curve", chains=2, warmup=300, draws=1000, steps=1)
    assert "2 of 2 fits failed the gate: sampling them again in one batch with 3x" in capsys.readouterr().err
    for key in fs:
        f = fs[key]
        assert f.diagnostics.passed and f.settings["sampler"] == "bayescale.inference.lockstep"
        assert f.settings["steps"] == 3 and f.settings["seed"] == group_seed(0, key)
        r = f.settings["retried"]
        assert r["first_attempt"] == {"steps": 1, "sampler": "bayescale.inference.lockstep"}
        assert r["changed"] == {"steps": 3} and any("R-hat" in p for p in r["first_problems"])
    assert fs.timings["batch_retried"] == 2 and fs.timings["retried"] == 0
    assert fs.summary()["sampler"].tolist() == ["batch", "batch"] and fs.summary()["retried"].all()


def test_fitset_small_multiples(small_set, tmp_path):
    _, fs = small_set
    fig = fs.plot(ncols=2)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(fs) == 4                     # the group that failed validation is not drawn
    assert all(ax.get_xscale() == "log" and ax.collections for ax in panels)
    assert "c0" in panels[0].get_title() and "4 of 4 fitted groups" in fig._suptitle.get_text()
    one = fs.plot(keys=["c3"])
    assert len([ax for ax in one.axes if ax.get_visible()]) == 1 and "c3" in one.axes[0].get_title()
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 1000
    with pytest.raises(bayescale.BayescaleError, match="no fit for group 'c1'"):
        fs.plot(keys=["c1"])
    with pytest.raises(bayescale.BayescaleError, match="ncols"):
        fs.plot(ncols=0)


def test_fitset_file_round_trip_and_export(small_set, tmp_path):
    _, fs = small_set
    path = fs.save(tmp_path / "set.nc")
    with pytest.raises(FitFileError, match="exists"):
        fs.save(path)
    back = load_fitset(path)
    assert back.all_keys == fs.all_keys and back.errors == fs.errors and back.by == fs.by
    for key in fs:
        a, b = fs[key], back[key]
        assert all(np.array_equal(a.samples.posterior[k], b.samples.posterior[k]) for k in a.samples.posterior)
        assert np.allclose(a.log_likelihood, b.log_likelihood)
        assert a.diagnostics == b.diagnostics and a.refs == b.refs
        pd.testing.assert_frame_equal(a.runs.table, b.runs.table)
    folder = fs.export(tmp_path / "fits")
    assert sorted(p.name for p in folder.iterdir()) == ["c0.nc", "c2.nc", "c3.nc", "c4.nc", "summary.csv"]
    one = bayescale.load_fit(folder / "c2.nc")
    assert np.array_equal(one.samples.posterior["alpha"], fs["c2"].samples.posterior["alpha"])


def test_a_set_with_fits_of_different_lengths_round_trips(small_set, tmp_path):
    """A NUTS refit has more draws than the batch's fits: the file pads them and restores each fit's own."""
    from dataclasses import replace

    _, fs = small_set
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        longer = bayescale.fit_many(curves(5, bad=(1,)), "power_law_constant", by="curve",
                                    **{**SMALL, "draws": 200})
    mixed = replace(fs, fits={**fs.fits, "c2": longer["c2"]})
    back = load_fitset(mixed.save(tmp_path / "mixed.nc"))
    assert back["c2"].samples.posterior["E"].shape == (2, 200) and back["c0"].samples.posterior["E"].shape == (2, 150)
    for key in mixed:
        assert np.array_equal(back[key].samples.posterior["alpha"], mixed[key].samples.posterior["alpha"])
        assert back[key].samples.sample_stats["diverging"].dtype == bool
        assert back[key].diagnostics == mixed[key].diagnostics


def test_cli_fit_by_writes_a_fit_set(small_set, tmp_path, capsys):
    import json

    from bayescale.cli import main

    table, fs = small_set
    table.to_csv(tmp_path / "curves.csv", index=False)
    code = main(["fit", str(tmp_path / "curves.csv"), "--law", "power_law_constant", "--by", "curve", "--chains",
                 "2", "--warmup", "150", "--draws", "150", "--no-retry", "--out", str(tmp_path / "set.nc"), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["groups"] == 5 and report["fitted"] == 4 and report["not_fitted"] == 1
    assert [row["curve"] for row in report["summary"]] == ["c0", "c1", "c2", "c3", "c4"]
    back = load_fitset(tmp_path / "set.nc")
    assert np.array_equal(back["c0"].samples.posterior["E"], fs["c0"].samples.posterior["E"])   # same seeds


class SerialExecutor:
    """A concurrent.futures-style executor that runs each task at once, in this process."""

    def submit(self, fn, *args):
        future = cf.Future()
        future.set_result(fn(*args))
        return future


def test_a_groups_draws_do_not_depend_on_the_split(small_set):
    """Batches of whole chunks, fitted one by one, give the in-process batch's draws bit for bit."""
    table, fs = small_set
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = bayescale.fit_many(table, "power_law_constant", by="curve", executor=SerialExecutor(),
                                   batch_size=1, **SMALL)
    assert split.timings["batches"] >= 2 and list(split) == list(fs) and split.errors.keys() == fs.errors.keys()
    for key in fs:
        assert np.array_equal(split[key].samples.posterior["E"], fs[key].samples.posterior["E"])


def test_batch_agrees_with_single_fits_within_monte_carlo_error():
    """Each group's posterior mean and sd from the batch vs from fit() (NUTS), default chains.

    Means: |difference| < 4 * sqrt(se_batch^2 + se_fit^2), se = sd / sqrt(ESS bulk).
    Standard deviations: relative difference < 4 * sqrt(2/ESS_batch + 2/ESS_fit).
    """
    table = curves(3, seed=4)
    settings = dict(chains=4, warmup=500, draws=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fs = bayescale.fit_many(table, "power_law_constant", by="curve", progress=False, **settings)
        singles = {k: bayescale.fit(g, "power_law_constant", seed=fs[k].settings["seed"], progress=False, **settings)
                   for k, g in split_groups(table, "curve")[0]}
    for key, single in singles.items():
        batch = fs[key]
        for name in ("E", "A", "alpha", "sigma"):
            xb, xs = batch.draws(name), single.draws(name)
            if name == "A":                        # log-normal-ish: compare on the log scale
                xb, xs = np.log(xb), np.log(xs)
            eb = ess_bulk(np.log(batch.samples.posterior[name]) if name == "A" else batch.samples.posterior[name])
            es = ess_bulk(np.log(single.samples.posterior[name]) if name == "A" else single.samples.posterior[name])
            se = math.sqrt(xb.var() / eb + xs.var() / es)
            assert abs(xb.mean() - xs.mean()) < 4 * se, (key, name)
            assert abs(xb.std() / xs.std() - 1) < 4 * math.sqrt(2 / eb + 2 / es), (key, name)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_local_batchs_draws():
    """Two Dask worker processes (spawned, XLA capped) reproduce the in-process batch bit for bit."""
    import distributed          # in the test extra: CI must run this, not skip it
    table = curves(6, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = bayescale.fit_many(table, "power_law_constant", by="curve", **SMALL)
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            remote = bayescale.fit_many(table, "power_law_constant", by="curve", executor=client, **SMALL)
    assert remote.timings["batches"] == 2 and list(remote) == list(local)
    for key in local:
        for name in local[key].samples.posterior:
            assert np.array_equal(remote[key].samples.posterior[name], local[key].samples.posterior[name])
        assert remote[key].diagnostics == local[key].diagnostics


@pytest.mark.slow
def test_batch_agrees_with_numpyros_nuts(quantile_z):
    """NumPyro's NUTS on the same NumPyro model (bayescale.model.make_model), the same data, against the
    lockstep batch at its defaults: 5 quantiles of E, log A, alpha and sigma of 3 simulated curves (60
    comparisons) in MCSE units.  For two exact samplers |z| > 4 has probability 6e-5 per comparison, so
    max |z| < 4 fails an agreeing pair with probability < 0.4%."""
    import jax
    from numpyro.infer import MCMC, NUTS

    from bayescale.model import make_model

    table = curves(3, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fs = bayescale.fit_many(table, "power_law_constant", by="curve", progress=False)
    zs = {}
    for key in fs:
        f = fs[key]
        assert f.diagnostics.passed, (key, f.diagnostics.problems)
        mcmc = MCMC(NUTS(make_model(f.law, f.noise), dense_mass=True), num_warmup=1000, num_samples=2000,
                    num_chains=4, chain_method="sequential", progress_bar=False)
        mcmc.run(jax.random.PRNGKey(0), {k: jnp.asarray(v, jnp.float32) for k, v in f.runs.input_arrays().items()},
                 {k: jnp.asarray(v, jnp.float32) for k, v in f.refs.items()},
                 loss=jnp.asarray(f.runs.response_array(), jnp.float32))
        theirs = {k: np.asarray(v, float) for k, v in mcmc.get_samples(group_by_chain=True).items()}
        for name in ("E", "A", "alpha", "sigma"):
            a, b = f.samples.posterior[name], theirs[name]
            if name == "A":
                a, b = np.log(a), np.log(b)
            zs[f"{key}:{name}"] = float(quantile_z(a, b, (0.05, 0.25, 0.5, 0.75, 0.95)).max())
    print("max |z| per quantity:", {k: round(v, 2) for k, v in zs.items()})
    assert max(zs.values()) < 4, zs
