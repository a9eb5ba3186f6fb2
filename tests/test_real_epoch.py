"""Real data: Epoch AI's reconstruction of Hoffmann et al.'s Chinchilla runs.

The default fit (``bayescale.fit(df, law="chinchilla")``, seed 0) of the 240 runs Epoch used
(``epoch_outlier == 0``) must land inside Epoch's published 95% bootstrap intervals and pass
the diagnostics gate.  The file also covers what a fit must preserve: bit-identical draws for
a seed, and a NetCDF round trip that keeps the posterior, the card, the runs and the settings.

The data are read in place from ``../shared/datasets`` (the ``epoch_runs`` / ``epoch_fit``
session fixtures in conftest.py); they are never copied into the repository.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale import FitFileError, load_fit

# shared/datasets/chinchilla_epoch/SOURCE.md: Epoch's 95% bootstrap intervals (4000 refits)
EPOCH_95 = {"E": (1.769, 1.871), "alpha": (0.317, 0.373), "beta": (0.331, 0.415)}
# ... and their point estimates, for a looser check of the weakly identified coefficients
EPOCH_A_95 = (285.2, 743.6)
EPOCH_B_95 = (1042.4, 5810.3)


def test_epoch_table_is_the_240_runs(epoch_runs):
    assert len(epoch_runs) == 240
    assert (epoch_runs["epoch_outlier"] == 0).all()
    # D was derived by Epoch as C / (6 N)
    np.testing.assert_allclose(epoch_runs["D"], epoch_runs["C"] / (6 * epoch_runs["N"]), rtol=1e-6)


def test_default_fit_reproduces_epoch(epoch_fit):
    fit = epoch_fit
    assert fit.law.name == "chinchilla" and fit.noise == "student_t_log"
    assert fit.settings["chains"] == 4 and fit.settings["draws"] == 1000  # the defaults
    assert len(fit.runs) == 240
    for name, (lo, hi) in EPOCH_95.items():
        median = float(np.median(fit.draws(name)))
        assert lo < median < hi, f"{name}: posterior median {median:.4f} outside Epoch's 95% CI ({lo}, {hi})"
    for name, (lo, hi) in (("A", EPOCH_A_95), ("B", EPOCH_B_95)):
        median = float(np.median(fit.draws(name)))
        assert lo < median < hi, f"{name}: posterior median {median:.1f} outside ({lo}, {hi})"
    d = fit.diagnostics
    assert max(d.r_hat.values()) <= 1.01, d.r_hat
    assert d.divergences == 0
    assert d.passed, str(d)
    assert min(d.ess_bulk.values()) >= 400


def test_compute_optimal_exponent_matches_epoch(epoch_fit):
    """a = beta / (alpha + beta): Epoch 0.513 (SE 0.020)."""
    a = epoch_fit.draws("beta") / (epoch_fit.draws("alpha") + epoch_fit.draws("beta"))
    assert abs(float(np.median(a)) - 0.513) < 2 * 0.020


def test_inference_data_has_every_group(epoch_fit):
    idata = epoch_fit.idata
    for group in ("posterior", "log_likelihood", "observed_data", "constant_data", "sample_stats"):
        assert hasattr(idata, group), group
    assert idata.posterior.sizes["chain"] == 4 and idata.posterior.sizes["draw"] == 1000
    assert idata.log_likelihood["loss"].shape == (4, 1000, 240)
    assert np.all(np.isfinite(idata.log_likelihood["loss"].values))
    np.testing.assert_array_equal(idata.observed_data["loss"].values, epoch_fit.runs.response_array())
    summary = epoch_fit.summary()
    assert list(summary.index) == ["E", "A", "B", "alpha", "beta", "L_c", "f_E", "g_N", "sigma"]
    assert list(summary.columns) == ["mean", "sd", "median", "q5", "q95", "r_hat", "ess_bulk", "ess_tail"]
    assert np.all(np.isfinite(summary.to_numpy()))
    assert "diagnostics: PASS" in str(epoch_fit)


# --------------------------------------------------------------------------- save / load


def test_save_load_round_trip(epoch_fit, tmp_path):
    path = epoch_fit.save(tmp_path / "fit.nc")
    assert path == tmp_path / "fit.nc" and path.is_file()
    assert not (tmp_path / "fit.nc.tmp").exists()
    loaded = load_fit(path)
    for name in epoch_fit.var_names:
        np.testing.assert_array_equal(np.asarray(loaded.idata.posterior[name]),
                                      np.asarray(epoch_fit.idata.posterior[name]))
    # stored in float32 (see bayescale.storage.fitfile): equal to the fit's values rounded once
    np.testing.assert_array_equal(loaded.idata.log_likelihood["loss"].values,
                                  epoch_fit.idata.log_likelihood["loss"].values.astype(np.float32))
    np.testing.assert_array_equal(loaded.idata.sample_stats["diverging"].values,
                                  epoch_fit.idata.sample_stats["diverging"].values)
    # the card
    assert loaded.card_text == epoch_fit.card_text
    assert loaded.card_hash == epoch_fit.card_hash
    assert loaded.law == epoch_fit.law
    # the runs
    pd.testing.assert_frame_equal(loaded.runs.table, epoch_fit.runs.table)
    assert loaded.runs.hash == epoch_fit.runs.hash
    assert (loaded.runs.inputs, loaded.runs.response, loaded.runs.source, loaded.runs.derived) == (
        epoch_fit.runs.inputs, epoch_fit.runs.response, epoch_fit.runs.source, epoch_fit.runs.derived)
    # settings, provenance and the verdict
    assert loaded.settings == epoch_fit.settings
    assert loaded.noise == epoch_fit.noise
    assert loaded.refs == epoch_fit.refs
    assert loaded.versions == epoch_fit.versions
    assert loaded.timings == epoch_fit.timings
    assert loaded.diagnostics == epoch_fit.diagnostics
    pd.testing.assert_frame_equal(loaded.summary(), epoch_fit.summary())
    # the metadata travels in the file itself
    import arviz as az

    meta = json.loads(az.from_netcdf(str(path)).posterior.attrs["bayescale_meta"])
    assert meta["card_hash"] == epoch_fit.card_hash and meta["law"] == "chinchilla"


def test_save_refuses_to_overwrite(epoch_fit, tmp_path):
    path = tmp_path / "fit.nc"
    path.write_text("precious")
    with pytest.raises(FitFileError, match=r"'.*fit\.nc' exists; pass force=True \(CLI: --force\) to overwrite it"):
        epoch_fit.save(path)
    assert path.read_text() == "precious"
    epoch_fit.save(path, force=True)
    np.testing.assert_array_equal(load_fit(path).draws("alpha"), epoch_fit.draws("alpha"))
    with pytest.raises(FitFileError, match="exists"):
        epoch_fit.save(path)


def test_save_into_a_missing_directory(epoch_fit, tmp_path):
    with pytest.raises(FitFileError, match=r"directory '.*nowhere' does not exist"):
        epoch_fit.save(tmp_path / "nowhere" / "fit.nc")


def test_load_errors(tmp_path):
    with pytest.raises(FitFileError, match=r"fit file '.*absent\.nc' does not exist"):
        load_fit(tmp_path / "absent.nc")
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    with pytest.raises(FitFileError, match=r"'.*junk\.nc' cannot be used: it is not a bayescale fit file"):
        load_fit(junk)


def test_plain_arviz_file_is_not_a_fit(epoch_fit, tmp_path):
    """An InferenceData without bayescale's metadata is refused with a clear message."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bare = az.from_dict(posterior={"alpha": np.asarray(epoch_fit.idata.posterior["alpha"])})
    bare.to_netcdf(str(tmp_path / "bare.nc"))
    with pytest.raises(FitFileError, match=r"'.*bare\.nc' cannot be used: it has no bayescale checksum"):
        load_fit(tmp_path / "bare.nc")


# --------------------------------------------------------------------------- reproducibility


def _small_table():
    """40 simulated Chinchilla runs (Epoch's point estimate, 1% Student-t noise): small and quick."""
    rng = np.random.default_rng(11)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), 40))
    D = np.exp(rng.uniform(np.log(1e8), np.log(1e11), 40))
    loss = (1.82 + 482 / N**0.348 + 2085 / D**0.366) * np.exp(0.01 * rng.standard_t(4, 40))
    return pd.DataFrame({"N": N, "D": D, "loss": loss})


def test_same_seed_gives_bit_identical_draws():
    table = _small_table()
    kwargs = dict(law="chinchilla", chains=2, warmup=200, draws=200, progress=False, retry=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
        first = bayescale.fit(table, seed=7, **kwargs)
        second = bayescale.fit(table, seed=7, **kwargs)
        other = bayescale.fit(table, seed=8, **kwargs)
    for name in first.var_names:
        a, b = np.asarray(first.idata.posterior[name]), np.asarray(second.idata.posterior[name])
        assert a.tobytes() == b.tobytes(), name
    np.testing.assert_array_equal(first.idata.sample_stats["n_steps"], second.idata.sample_stats["n_steps"])
    np.testing.assert_array_equal(first.idata.log_likelihood["loss"], second.idata.log_likelihood["loss"])
    assert not np.array_equal(first.draws("alpha"), other.draws("alpha"))
