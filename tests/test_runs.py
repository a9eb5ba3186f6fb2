"""Bad input to prepare_runs / fit: every problem is a typed error (or warning) whose message
names the column, the rows or the argument at fault and what was expected.

Rows are 0-based positions in the table as given.  None of these cases reaches JAX: the
fit-argument cases fail before any sampling, so the file runs in a few seconds.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale import (BayescaleError, CardError, DataError, DataWarning, FormulaError, PriorError,
                       prepare_runs)
from bayescale.runs import parse_mapping

CHINCHILLA = bayescale.load_law("chinchilla")
N_ROWS = 12


def good_runs(n: int = N_ROWS) -> pd.DataFrame:
    """A valid Chinchilla-style table (N, D, C, loss) on a log grid."""
    rng = np.random.default_rng(0)
    N = np.geomspace(1e7, 1e10, n)
    D = np.geomspace(1e9, 1e11, n)[rng.permutation(n)]
    loss = 1.8 + 480 / N**0.35 + 2000 / D**0.37
    return pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "loss": loss})


def with_cell(frame: pd.DataFrame, col: str, rows, value) -> pd.DataFrame:
    frame = frame.copy()
    if isinstance(value, str) or value is None:
        frame[col] = frame[col].astype(object)
    for r in np.atleast_1d(rows):
        frame.loc[r, col] = value
    return frame


def test_a_good_table_passes_unchanged():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        runs = prepare_runs(good_runs(), CHINCHILLA)
    assert runs.inputs == ("N", "D") and runs.response == "loss"
    assert list(runs.table.columns) == ["N", "D", "loss"]
    assert len(runs) == N_ROWS and runs.derived == () and runs.source == "DataFrame"
    np.testing.assert_array_equal(runs.input_arrays()["N"], good_runs()["N"].to_numpy())
    assert len(runs.hash) == 16


# --------------------------------------------------------------------------- the table's contents

# (case id, table, law name, error type, message pattern)
BAD_TABLES = [
    ("missing column", good_runs().drop(columns=["N"]), "chinchilla", DataError,
     r"column 'N' \(model parameters\) is missing; columns are \['D', 'C', 'loss'\]; "
     r"rename one with --map N=<column>"),
    ("missing response", good_runs().drop(columns=["loss"]), "chinchilla", DataError,
     r"column 'loss' \(final training loss\) is missing; .*--map loss=<column>"),
    ("non-numeric value", with_cell(good_runs(), "N", 3, "7B"), "chinchilla", DataError,
     r"column 'N' has 1 non-numeric value at row 3 \(e\.g\. '7B'\); expected numbers"),
    ("non-numeric values in several rows", with_cell(good_runs(), "loss", [2, 5, 9], "diverged"), "chinchilla",
     DataError, r"column 'loss' has 3 non-numeric values at rows 2, 5, 9 \(e\.g\. 'diverged'\)"),
    ("NaN", with_cell(good_runs(), "D", [4, 7], np.nan), "chinchilla", DataError,
     r"column 'D' has 2 missing values at rows 4, 7"),
    ("None", with_cell(good_runs(), "loss", 0, None), "chinchilla", DataError,
     r"column 'loss' has 1 missing value at row 0"),
    ("inf", with_cell(good_runs(), "loss", 6, np.inf), "chinchilla", DataError,
     r"column 'loss' has 1 non-finite value \(inf\) at row 6; expected finite numbers"),
    ("-inf", with_cell(good_runs(), "N", 1, -np.inf), "chinchilla", DataError,
     r"column 'N' has 1 non-finite value \(inf\) at row 1"),
    ("non-positive input", with_cell(good_runs(), "N", [0, 8], 0.0), "chinchilla", DataError,
     r"column 'N' has 2 non-positive values at rows 0, 8; N must be > 0 \(inputs enter the law "
     r"through logs and powers\)"),
    ("negative input", with_cell(good_runs(), "D", 11, -5e9), "chinchilla", DataError,
     r"column 'D' has 1 non-positive value at row 11; D must be > 0"),
    ("non-positive loss with a log noise model", with_cell(good_runs(), "loss", 5, 0.0), "chinchilla", DataError,
     r"column 'loss' has 1 non-positive value at row 5; loss must be > 0 \(the student_t_log noise model "
     r"works on log loss\)"),
    ("boolean column", good_runs().assign(N=[True, False] * (N_ROWS // 2)), "chinchilla", DataError,
     r"column 'N' is boolean; expected numbers"),
    ("too few runs", good_runs(6), "chinchilla", DataError,
     r"6 runs are too few for law 'chinchilla': it has 5 parameters plus a noise scale, so at least 7 "
     r"runs are needed"),
    ("constant input column", good_runs().assign(N=1e8), "chinchilla", DataError,
     r"column 'N' is constant \(every row is 1e\+08\); the law needs it to vary"),
    ("constant single input", pd.DataFrame({"x": np.full(10, 1e6), "loss": np.linspace(2, 3, 10)}),
     "power_law", DataError, r"column 'x' is constant"),
    ("empty table", good_runs().iloc[:0], "chinchilla", DataError, r"the table 'DataFrame' has no rows"),
    ("D not derivable when C is missing", good_runs().drop(columns=["D", "C"]), "chinchilla", DataError,
     r"column 'D' \(training tokens\) is missing and cannot be derived as C / \(6 \* N\) because columns "
     r"\['C'\] are missing too"),
    ("input without a derivation", good_runs().drop(columns=["N"]).assign(M=5.0), "overtraining", DataError,
     r"column 'N' \(model parameters\) is missing; columns are"),
    ("derived input not positive", good_runs().drop(columns=["D"]).pipe(with_cell, "C", 2, -1.0), "chinchilla",
     DataError, r"column 'C' has 1 non-positive value at row 2; C must be > 0"),
    ("not a table", {"N": [1e8], "loss": [3.0]}, "chinchilla", DataError,
     r"runs must be a pandas DataFrame or a CSV path, got dict"),
]


@pytest.mark.parametrize("case, table, law, exc, pattern", BAD_TABLES, ids=[c[0] for c in BAD_TABLES])
def test_bad_table(case, table, law, exc, pattern):
    with pytest.raises(exc, match=pattern):
        prepare_runs(table, bayescale.load_law(law))


def test_response_support_follows_the_noise_model():
    """downstream_error (response not scaled): an error of 0 is a valid observation under normal_raw
    noise, outside the support of the card's default normal_logit noise, and of log noise."""
    law = bayescale.load_law("downstream_error")
    frame = pd.DataFrame({"L": np.linspace(2, 4, 8), "error": np.r_[0.0, np.linspace(0.1, 0.7, 7)]})
    assert prepare_runs(frame, law, noise="normal_raw").response_array()[0] == 0.0
    with pytest.raises(DataError, match=r"column 'error' has 1 value outside \(0, 1\) at row 0; the "
                                        r"normal_logit noise model is for rates"):
        prepare_runs(frame, law)
    with pytest.raises(DataError, match=r"column 'error' has 1 non-positive value at row 0; error must be > 0 "
                                        r"\(the normal_log noise model works on log error\)"):
        prepare_runs(frame, law, noise="normal_log")


def test_problems_in_unused_columns_are_ignored():
    frame = good_runs().assign(notes="ok", tokens_per_param=np.nan)
    frame.loc[3, "notes"] = None
    assert len(prepare_runs(frame, CHINCHILLA)) == N_ROWS


def test_long_row_lists_are_truncated():
    frame = with_cell(good_runs(30), "N", list(range(12)), np.nan)
    with pytest.raises(DataError, match=r"12 missing values at rows 0, 1, 2, 3, 4, 5, 6, 7 and 4 more$"):
        prepare_runs(frame, CHINCHILLA)


# --------------------------------------------------------------------------- warnings


def test_duplicated_rows_warn_with_their_positions():
    frame = pd.concat([good_runs(), good_runs().iloc[[2, 5]]], ignore_index=True)
    with pytest.warns(DataWarning, match=r"2 duplicated runs \(identical inputs and loss\) at rows 12, 13; "
                                         r"each counts as a separate observation"):
        runs = prepare_runs(frame, CHINCHILLA)
    assert len(runs) == N_ROWS + 2  # kept: a warning, not an error


def test_parameters_in_billions_warn_about_units():
    frame = good_runs().assign(N=np.geomspace(0.01, 10, N_ROWS))  # 10M..10B written in billions
    with pytest.warns(DataWarning, match=r"column 'N' has 12 values below 1000 at rows 0, 1, .* \(smallest 0\.01\); "
                                         r"the card expects parameter counts \(e\.g\. 7e10, not 70 for 70B\): "
                                         r"check the units"):
        prepare_runs(frame, CHINCHILLA)


def test_tokens_in_trillions_warn_about_units():
    frame = good_runs().assign(D=np.geomspace(0.001, 0.1, N_ROWS))
    with pytest.warns(DataWarning, match=r"column 'D' has 12 values below 1000 .* token counts"):
        prepare_runs(frame, CHINCHILLA)


# --------------------------------------------------------------------------- --map and derived inputs


def test_map_renames_columns():
    frame = good_runs().rename(columns={"loss": "val_loss", "N": "params"})
    for mapping in (["loss=val_loss", "N=params"], ["loss=val_loss,N=params"], {"loss": "val_loss", "N": "params"},
                    [" loss = val_loss ", "N=params,"]):
        runs = prepare_runs(frame, CHINCHILLA, mapping=mapping)
        np.testing.assert_array_equal(runs.response_array(), good_runs()["loss"].to_numpy())


@pytest.mark.parametrize("mapping, pattern", [
    (["loss=val_loss"], r"--map loss=val_loss: the table has no column 'val_loss'; columns are "
                        r"\['N', 'D', 'C', 'loss'\]"),
    ({"N": "n_params"}, r"--map N=n_params: the table has no column 'n_params'"),
])
def test_map_to_a_missing_column(mapping, pattern):
    with pytest.raises(DataError, match=pattern):
        prepare_runs(good_runs(), CHINCHILLA, mapping=mapping)


@pytest.mark.parametrize("entry", ["loss:val_loss", "loss=", "=val_loss", "loss"])
def test_bad_map_syntax(entry):
    with pytest.raises(DataError, match=rf"--map entry {re.escape(repr(entry))} must look like name=column "
                                        r"\(e\.g\. loss=val_loss\)"):
        parse_mapping([entry])
    with pytest.raises(DataError, match="must look like name=column"):
        prepare_runs(good_runs(), CHINCHILLA, mapping=[entry])


def test_map_that_duplicates_a_column():
    frame = good_runs().assign(val_loss=good_runs()["loss"])
    with pytest.raises(DataError, match=r"columns \['loss'\] appear more than once \(after --map renaming\)"):
        prepare_runs(frame, CHINCHILLA, mapping=["loss=val_loss"])


def test_D_derived_from_C_when_missing():
    frame = good_runs().drop(columns=["D"])
    runs = prepare_runs(frame, CHINCHILLA)
    assert runs.derived == ("D",)
    np.testing.assert_allclose(runs.input_arrays()["D"], good_runs()["D"].to_numpy(), rtol=1e-12)


def test_derived_input_is_not_used_when_present():
    frame = good_runs().assign(C=-1.0)  # C is not needed: D is there, so C is never read
    assert prepare_runs(frame, CHINCHILLA).derived == ()


def test_tokens_per_parameter_derived_for_overtraining():
    runs = prepare_runs(good_runs(), bayescale.load_law("overtraining"))
    assert runs.derived == ("M",)
    np.testing.assert_allclose(runs.input_arrays()["M"], (good_runs()["D"] / good_runs()["N"]).to_numpy())


# --------------------------------------------------------------------------- files


def test_csv_path_is_read(tmp_path):
    path = tmp_path / "runs.csv"
    good_runs().to_csv(path, index=False)
    runs = prepare_runs(path, CHINCHILLA)
    assert runs.source == str(path) and len(runs) == N_ROWS
    assert len(prepare_runs(str(path), CHINCHILLA)) == N_ROWS


def test_nonexistent_csv_path(tmp_path):
    with pytest.raises(DataError, match=r"runs file '.*missing\.csv' does not exist"):
        prepare_runs(tmp_path / "missing.csv", CHINCHILLA)


@pytest.mark.parametrize("content, pattern", [
    (b"", r"is empty; expected a header line"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\xfa", r"is not a text CSV file \(it contains NUL bytes"),
    (b'N,loss\n"1e8,3\n', r"row 0 \(first at line 2\) has 1 field but the header has 2; fields are missing"),
], ids=["empty file", "binary file", "broken quoting"])
def test_unreadable_csv(tmp_path, content, pattern):
    path = tmp_path / "runs.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"runs file '.*runs\.csv'(:)? " + pattern):
        prepare_runs(path, CHINCHILLA)


def test_csv_without_permission_to_read(tmp_path, monkeypatch):
    path = tmp_path / "runs.csv"
    good_runs().to_csv(path, index=False)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(DataError, match=r"runs file '.*runs\.csv' cannot be read: Permission denied"):
        prepare_runs(path, CHINCHILLA)


def test_csv_with_header_only(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("N,D,loss\n")
    with pytest.raises(DataError, match=r"the table '.*runs\.csv' has no rows"):
        prepare_runs(path, CHINCHILLA)


def test_csv_non_numeric_cell_names_the_row(tmp_path):
    path = tmp_path / "runs.csv"
    frame = good_runs().astype({"loss": object})
    frame.loc[4, "loss"] = "3.1?"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'loss' has 1 non-numeric value at row 4 \(e\.g\. '3\.1\?'\)"):
        prepare_runs(path, CHINCHILLA)


# --------------------------------------------------------------------------- fit arguments

FIT_ERRORS = [
    ("unknown law", dict(law="chinchila"), CardError,
     r"unknown law 'chinchila'; built-in laws are: .*chinchilla"),
    ("law of the wrong type", dict(law=3), BayescaleError, r"law must be a name or a Law, got int"),
    ("no law", dict(), BayescaleError, r"give exactly one of law=<name or Law>, formula=<string>, card=<path>"),
    ("law and formula", dict(law="chinchilla", formula="E + A / N**alpha"), BayescaleError,
     r"give exactly one of law="),
    ("missing card file", dict(card="/nonexistent/law.toml"), CardError,
     r"card file '/nonexistent/law\.toml' does not exist"),
    ("bad formula", dict(formula="E + A / N.size", priors={"E": "LogNormal(0, 1)", "A": "LogNormal(0, 1)"}),
     FormulaError, r"attribute access.*Allowed:"),
    ("formula without a prior", dict(formula="E + A / N**alpha", priors={"E": "LogNormal(0, 1)"}), CardError,
     r"parameters \['A', 'alpha'\] have no prior"),
    ("bad prior", dict(formula="A / N**alpha", priors={"A": "LogNormal(0, 1)", "alpha": "Uniform(0, 1, 2)"}),
     PriorError, r"Uniform takes 2 arguments \(low, high\), got 3"),
    ("bad noise name", dict(law="chinchilla", noise="gaussian"), BayescaleError,
     r"noise must be one of student_t_log, normal_log, normal_raw, normal_logit, got 'gaussian'"),
    ("chains 0", dict(law="chinchilla", chains=0), BayescaleError, r"chains must be an integer >= 1, got 0"),
    ("chains float", dict(law="chinchilla", chains=2.5), BayescaleError, r"chains must be an integer >= 1, got 2\.5"),
    ("chains bool", dict(law="chinchilla", chains=True), BayescaleError, r"chains must be an integer >= 1, got True"),
    ("draws too few", dict(law="chinchilla", draws=5), BayescaleError, r"draws must be an integer >= 10, got 5"),
    ("draws string", dict(law="chinchilla", draws="1000"), BayescaleError,
     r"draws must be an integer >= 10, got '1000'"),
    ("warmup negative", dict(law="chinchilla", warmup=-1), BayescaleError, r"warmup must be an integer >= 10"),
    ("seed negative", dict(law="chinchilla", seed=-3), BayescaleError, r"seed must be an integer in 0..4294967295, got -3"),
    ("max_tree_depth", dict(law="chinchilla", max_tree_depth=1), BayescaleError,
     r"max_tree_depth must be an integer in 2..15"),
    ("target_accept 1", dict(law="chinchilla", target_accept=1.0), BayescaleError,
     r"target_accept must be in \(0, 1\), got 1\.0"),
    ("target_accept 0", dict(law="chinchilla", target_accept=0), BayescaleError,
     r"target_accept must be in \(0, 1\), got 0"),
    ("target_accept string", dict(law="chinchilla", target_accept="0.9"), BayescaleError,
     r"target_accept must be in \(0, 1\), got '0\.9'"),
    ("bad map in fit", dict(law="chinchilla", mapping=["loss->val"]), DataError,
     r"--map entry 'loss->val' must look like name=column"),
]


@pytest.mark.parametrize("case, kwargs, exc, pattern", FIT_ERRORS, ids=[c[0] for c in FIT_ERRORS])
def test_bad_fit_arguments(case, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        bayescale.fit(good_runs(), progress=False, **kwargs)


def test_fit_validates_the_table_before_sampling():
    with pytest.raises(DataError, match=r"column 'N' has 1 non-numeric value at row 3"):
        bayescale.fit(with_cell(good_runs(), "N", 3, "7B"), law="chinchilla", progress=False)


def test_every_error_is_a_value_error_subclass():
    """The CLI catches BayescaleError; Python callers may catch ValueError."""
    for exc in (DataError, CardError, PriorError, FormulaError, bayescale.FitFileError):
        assert issubclass(exc, BayescaleError) and issubclass(exc, ValueError)
    assert issubclass(DataWarning, UserWarning)
