"""Runs with structure: a run column (checkpoints of one training run) and group columns.

Validation and thinning happen before any sampling, so most cases here run no fit; one small
fit checks that ``fit(run=..., checkpoints=...)`` fits the thinned rows, records the structure and
keeps it through a NetCDF round trip.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale import BayescaleError, DataError, DataWarning
from bayescale.evidence.structure import parse_checkpoints, structure_runs

CHINCHILLA = bayescale.load_law("chinchilla")
SMALL = {"chains": 2, "warmup": 300, "draws": 300}


def curves(n_runs: int = 4, n_ckpt: int = 12, seed: int = 0) -> pd.DataFrame:
    """``n_runs`` learning curves (constant N, D on a log grid) of a Chinchilla law with noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for r, N in enumerate(np.geomspace(2e7, 6e8, n_runs)):
        for D in np.geomspace(2e9, 6e10, n_ckpt):
            loss = (1.8 + 480 / N**0.34 + 2000 / D**0.36) * np.exp(0.005 * rng.standard_normal())
            rows.append({"model": f"m{r}", "family": "a" if r % 2 else "b", "N": N, "D": D, "loss": loss})
    return pd.DataFrame(rows)


def test_parse_checkpoints():
    assert parse_checkpoints("all") == ("all", None)
    assert parse_checkpoints("Final") == ("final", None)
    assert parse_checkpoints("logspaced:8") == ("logspaced", 8)
    assert parse_checkpoints(" logspaced : 3 ") == ("logspaced", 3)
    for bad in ("every", "logspaced:1", "logspaced:x", "logspaced", 5, None):
        with pytest.raises(BayescaleError, match="checkpoints must be 'all', 'final' or 'logspaced:K'"):
            parse_checkpoints(bad)


def test_run_column_warns_that_checkpoints_are_not_independent():
    with pytest.warns(DataWarning, match=r"48 rows are checkpoints of 4 runs \(up to 12 per run, column "
                                         r"'model'\).*too narrow by up to sqrt\(48/4\) = 3.5x"):
        frame, s = structure_runs(curves(), CHINCHILLA, run="model")
    assert len(frame) == 48 and s.n_runs == 4 and s.rows_kept == 48 and s.checkpoints == "all"
    assert s.max_checkpoints == 12 and s.run_ids[:2] == ("m0", "m0")


def test_final_keeps_the_last_checkpoint_of_each_run():
    data = curves().sample(frac=1.0, random_state=1)         # order must not matter
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)          # thinned: no independence warning
        frame, s = structure_runs(data, CHINCHILLA, run="model", checkpoints="final")
    assert len(frame) == 4 and s.rows_given == 48 and s.rows_kept == 4
    last = data.groupby("model")["D"].max()
    assert all(frame.set_index("model")["D"][m] == last[m] for m in last.index)


def test_logspaced_keeps_k_per_run_spread_in_log_d_with_the_last():
    frame, s = structure_runs(curves(n_ckpt=40), CHINCHILLA, run="model", checkpoints="logspaced:5")
    assert s.checkpoints == "logspaced:5"
    for _, run in frame.groupby("model"):
        d = np.sort(run["D"].to_numpy())
        assert len(d) == 5
        assert d[-1] == pytest.approx(6e10) and d[0] == pytest.approx(2e9)
        gaps = np.diff(np.log(d))
        assert gaps.max() / gaps.min() < 1.5                # roughly even in log D
    short, _ = structure_runs(curves(n_ckpt=3), CHINCHILLA, run="model", checkpoints="logspaced:5")
    assert len(short) == 12                                 # a run with fewer rows keeps them all


def test_run_whose_n_changes_is_an_error():
    data = curves()
    data.loc[5, "N"] = 1.5 * data.loc[5, "N"]
    with pytest.raises(DataError, match=r"run 'm0' has 2 different values of 'N' .* at rows 0, 1, 2, .*; N "
                                        r"\(model parameters\) must be constant over the checkpoints of one run"):
        structure_runs(data, CHINCHILLA, run="model")


def test_run_in_two_groups_is_an_error():
    data = curves()
    data.loc[3, "family"] = "c"
    with pytest.raises(DataError, match="run 'm0' has 2 different values of 'family'.*a run must belong to one"):
        structure_runs(data, CHINCHILLA, run="model", group="family")


def test_missing_labels_and_columns_are_errors():
    data = curves()
    data.loc[7, "model"] = None
    with pytest.raises(DataError, match="run column 'model' has 1 missing value at row 7"):
        structure_runs(data, CHINCHILLA, run="model")
    with pytest.raises(DataError, match=r"group column 'shape' does not exist; columns are \['model'"):
        structure_runs(curves(), CHINCHILLA, group="shape")
    with pytest.raises(BayescaleError, match="needs a run column"):
        structure_runs(curves(), CHINCHILLA, checkpoints="final")
    with pytest.raises(BayescaleError, match="both run and group"):
        structure_runs(curves(), CHINCHILLA, run="model", group="model")
    with pytest.raises(BayescaleError, match="run must name one column"):
        structure_runs(curves(), CHINCHILLA, run="model,family")


def test_group_warnings():
    data = curves(n_runs=3)
    data["family"] = ["a"] * 12 + ["b"] * 24
    data.loc[0, "family"] = "lonely"                           # one row
    data.loc[0, "model"] = "solo"
    with pytest.warns(DataWarning) as record:
        structure_runs(data, CHINCHILLA, run="model", group="family")
    text = " | ".join(str(w.message) for w in record)
    assert "1 group with a single row ('lonely')" in text
    assert "with a single run ('a'" in text                    # 'a' holds one run (m0 minus its first row)


def test_fit_with_run_thins_records_and_saves(tmp_path):
    data = curves(n_ckpt=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(data, law="chinchilla", run="model", group="family", checkpoints="logspaced:4",
                            **SMALL)
    assert len(fit.runs) == 16
    s = fit.structure
    assert (s.run, s.groups, s.checkpoints, s.rows_given, s.n_runs) == ("model", ("family",), "logspaced:4", 40, 4)
    assert s.n_groups == {"family": 2}
    back = bayescale.load_fit(fit.save(tmp_path / "fit.nc"))
    assert back.structure == s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = bayescale.fit(data.iloc[::5], law="chinchilla", **SMALL)
    plain = bayescale.load_fit(plain.save(tmp_path / "p.nc"))
    assert plain.structure is None


def test_cli_fit_run_and_checkpoints(tmp_path, capsys):
    import json

    from bayescale.cli import main

    path = tmp_path / "curves.csv"
    curves(n_runs=8, n_ckpt=6).to_csv(path, index=False)
    code = main(["fit", str(path), "--law", "chinchilla", "--run", "model", "--checkpoints", "logspaced:2",
                 "--chains", "2", "--warmup", "300", "--draws", "300", "--no-progress", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["runs"] == 16
    assert out["structure"]["run"] == "model" and out["structure"]["rows_given"] == 48
    # every run ends at the same D: their final checkpoints cannot identify the D term
    code = main(["fit", str(path), "--law", "chinchilla", "--run", "model", "--checkpoints", "final"])
    assert code == 2 and "column 'D' is constant" in capsys.readouterr().err
    code = main(["fit", str(path), "--law", "chinchilla", "--run", "nope"])
    assert code == 2 and "run column 'nope' does not exist" in capsys.readouterr().err
    code = main(["fit", str(path), "--law", "chinchilla", "--checkpoints", "final"])
    assert code == 2 and "needs a run column" in capsys.readouterr().err
