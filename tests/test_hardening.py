"""The bad-input corpus of issue 10: every case is refused with a typed error naming the problem.

One table, :data:`CASES`, holds the hostile or unlucky inputs a reliability probe found
(decimal-comma and trailing-comma CSVs, duplicated columns, values finite in float64 but not in
float32, laws infinite at the data, a response named like an input, oversized literals, cards in
other encodings or deeply nested, ...).  Each is run twice: through the Python API, asserting the
error type and a message that names the problem, and through the command line in-process, asserting
exit status 2, one ``error:`` line on stderr and, with ``--json``, the same type and message on
stdout (never a traceback).  The earlier corpus of bad tables and fit arguments is in
``tests/test_runs.py``; damaged fit files are in ``tests/test_fit_file.py``, cache faults in
``tests/test_program_cache.py``.  No case reaches the sampler, so the table runs in seconds; the
few tests below it that need a posterior share one short fit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale import (BayescaleError, CardError, DataError, ExtrapolationWarning, FitFileError, FormulaError,
                       PriorError)
from bayescale.cli import main
from bayescale.cli._common import check_out_path
from bayescale.data import pilot_chinchilla
from bayescale.formula import compile_expr

CARD = (Path(bayescale.__file__).resolve().parent.parent / "models" / "chinchilla.toml").read_text()
PRIORS = {"E": "LogNormal(0, 1)", "A": "LogNormal(5, 3)", "alpha": "Uniform(0.05, 1)"}


def lines(rows, header="N,D,C,loss") -> str:
    return header + "\n" + "\n".join(rows) + "\n"


GOOD_ROWS = [f"{n:.4g},{d:.4g},{6 * n * d:.4g},{loss:.5g}" for n, d, loss in
             zip(pilot_chinchilla()["N"], pilot_chinchilla()["D"], pilot_chinchilla()["loss"])]
DECIMAL_COMMA = lines([f"{n:.0f},{d:.0f},{6 * n * d:.0f},{str(loss).replace('.', ',')}" for n, d, loss in
                       zip(pilot_chinchilla()["N"], pilot_chinchilla()["D"], pilot_chinchilla()["loss"])])


# Each case: (id, what to write, Python call, CLI arguments, error type, message pattern).
#   files: {name: text or bytes} written into a fresh folder; "{dir}" in arguments is that folder.
#   call(dir): the Python API call that must raise.
CASES = [
    # 1. ambiguous CSV dialects
    ("decimal comma", {"runs.csv": DECIMAL_COMMA},
     lambda d: bayescale.prepare_runs(d / "runs.csv", bayescale.load_law("chinchilla")),
     ["fit", "{dir}/runs.csv", "--law", "chinchilla"], DataError,
     r"runs file '.*runs\.csv': rows 0, 1, 2, .* \(first at line 2\) have 5 fields but the header has 4; extra "
     r"fields are what decimal commas look like \(2,416 for 2\.416\)"),
    ("trailing comma on every row", {"runs.csv": lines([r + "," for r in GOOD_ROWS])},
     lambda d: bayescale.prepare_runs(d / "runs.csv", bayescale.load_law("chinchilla")),
     ["fit", "{dir}/runs.csv", "--law", "chinchilla"], DataError,
     r"have 5 fields but the header has 4; every such row ends with a comma the header does not have "
     r"\(a trailing comma\)"),
    ("semicolon-separated", {"runs.csv": lines([r.replace(",", ";") for r in GOOD_ROWS], "N;D;C;loss")},
     lambda d: bayescale.prepare_runs(d / "runs.csv", bayescale.load_law("chinchilla")),
     ["fit", "{dir}/runs.csv", "--law", "chinchilla"], DataError,
     r"looks ';'-separated \(header 'N;D;C;loss'\); bayescale reads comma-separated CSV"),
    ("UTF-16 CSV", {"runs.csv": lines(GOOD_ROWS).encode("utf-16")},
     lambda d: bayescale.prepare_runs(d / "runs.csv", bayescale.load_law("chinchilla")),
     ["fit", "{dir}/runs.csv", "--law", "chinchilla"], DataError, r"is not a text CSV file \(it contains NUL bytes"),
    ("Latin-1 CSV", {"runs.csv": lines([r + ",caf\xe9" for r in GOOD_ROWS], "N,D,C,loss,note").encode("latin-1")},
     lambda d: bayescale.prepare_runs(d / "runs.csv", bayescale.load_law("chinchilla")),
     ["fit", "{dir}/runs.csv", "--law", "chinchilla"], DataError, r"is not UTF-8 text \(byte 0xe9 at position \d+\)"),
    # 2. duplicated column names
    ("column N twice", {"runs.csv": lines([r + ",5" for r in GOOD_ROWS], "N,D,C,loss,N")},
     lambda d: bayescale.prepare_runs(d / "runs.csv", bayescale.load_law("chinchilla")),
     ["fit", "{dir}/runs.csv", "--law", "chinchilla"], DataError,
     r"column names \['N'\] appear more than once in the header"),
    ("column loss twice", {"runs.csv": lines([r + ",2.5" for r in GOOD_ROWS], "N,D,C,loss,loss")},
     lambda d: bayescale.prepare_runs(d / "runs.csv", bayescale.load_law("chinchilla")),
     ["fit", "{dir}/runs.csv", "--law", "chinchilla"], DataError,
     r"column names \['loss'\] appear more than once in the header"),
    ("DataFrame with a column twice", {},
     lambda d: bayescale.prepare_runs(pd.concat([pilot_chinchilla(), pilot_chinchilla()[["N"]]], axis=1),
                                      bayescale.load_law("chinchilla")),
     None, DataError, r"columns \['N'\] appear more than once in the table"),
    # 3. finite in float64, not in float32
    ("loss 1e300", {"runs.csv": lines(GOOD_ROWS + ["1e8,2e9,1.2e18,1e300"])},
     lambda d: bayescale.prepare_runs(d / "runs.csv", bayescale.load_law("chinchilla")),
     ["fit", "{dir}/runs.csv", "--law", "chinchilla"], DataError,
     r"column 'loss' has 1 value outside float32's range \(1\.18e-38 to 3\.4e\+38 in magnitude\) at row 40 "
     r"\(e\.g\. 1e\+300\)"),
    ("loss 1e-40", {"runs.csv": lines(GOOD_ROWS + ["1e8,2e9,1.2e18,1e-40"])},
     lambda d: bayescale.prepare_runs(d / "runs.csv", bayescale.load_law("chinchilla")),
     ["fit", "{dir}/runs.csv", "--law", "chinchilla"], DataError,
     r"column 'loss' has 1 value outside float32's range .* at row 40 \(e\.g\. 1e-40\)"),
    ("N 1e300", {"runs.csv": lines(GOOD_ROWS + ["1e300,2e9,1.2e18,3"])},
     lambda d: bayescale.prepare_runs(d / "runs.csv", bayescale.load_law("chinchilla")),
     ["fit", "{dir}/runs.csv", "--law", "chinchilla"], DataError,
     r"column 'N' has 1 value outside float32's range .* at row 40 \(e\.g\. 1e\+300\)"),
    ("prior Normal(0.3, 1e-320)", {"runs.csv": lines(GOOD_ROWS)},
     lambda d: bayescale.fit(d / "runs.csv", formula="E + A / N**alpha", progress=False,
                             priors={**PRIORS, "alpha": "Normal(0.3, 1e-320)"}),
     ["fit", "{dir}/runs.csv", "--formula", "E + A / N**alpha", "--prior", "E=LogNormal(0, 1)", "--prior",
      "A=LogNormal(5, 3)", "--prior", "alpha=Normal(0.3, 1e-320)"], PriorError,
     r"parameter 'alpha' prior 'Normal\(0\.3, 1e-320\)': scale = 9\.99989e-321 is below float32's smallest "
     r"normal value"),
    ("prior Uniform(0, 1e300)", {"runs.csv": lines(GOOD_ROWS)},
     lambda d: bayescale.fit(d / "runs.csv", formula="E + A / N**alpha", progress=False,
                             priors={**PRIORS, "A": "Uniform(0, 1e300)"}),
     ["fit", "{dir}/runs.csv", "--formula", "E + A / N**alpha", "--prior", "E=LogNormal(0, 1)", "--prior",
      "A=Uniform(0, 1e300)", "--prior", "alpha=Uniform(0.05, 1)"], PriorError,
     r"parameter 'A' prior 'Uniform\(0, 1e300\)': high = 1e\+300 exceeds float32's largest value"),
    ("prior Normal(0.3, 1e-12): a point mass in float32", {"runs.csv": lines(GOOD_ROWS)},
     lambda d: bayescale.fit(d / "runs.csv", formula="E + A / N**alpha", progress=False,
                             priors={**PRIORS, "alpha": "Normal(0.3, 1e-12)"}),
     None, PriorError, r"scale = 1e-12 is below 1e-05 of the location's size 0\.3: float32 cannot resolve"),
    ("formula + 1e999", {"runs.csv": lines(GOOD_ROWS)},
     lambda d: bayescale.fit(d / "runs.csv", formula="E + A / N**alpha + 1e999", priors=PRIORS, progress=False),
     ["fit", "{dir}/runs.csv", "--formula", "E + A / N**alpha + 1e999", "--prior", "E=LogNormal(0, 1)",
      "--prior", "A=LogNormal(5, 3)", "--prior", "alpha=Uniform(0.05, 1)"], FormulaError,
     r"the number 1e999 is infinite or too large \(float32's largest value is 3\.4e\+38\)"),
    ("formula + 1e300", {"runs.csv": lines(GOOD_ROWS)},
     lambda d: bayescale.fit(d / "runs.csv", formula="E + A / N**alpha + 1e300", priors=PRIORS, progress=False),
     None, FormulaError, r"the number 1e300 exceeds float32's largest value"),
    # 4. a law that is +inf at the data
    ("law + exp(N)", {"runs.csv": lines(GOOD_ROWS)},
     lambda d: bayescale.fit(d / "runs.csv", formula="E + A / N**alpha + exp(N)", priors=PRIORS, progress=False),
     ["fit", "{dir}/runs.csv", "--formula", "E + A / N**alpha + exp(N)", "--prior", "E=LogNormal(0, 1)",
      "--prior", "A=LogNormal(5, 3)", "--prior", "alpha=Uniform(0.05, 1)"], FormulaError,
     r"law 'custom' \(loss = E \+ A / N\*\*alpha \+ exp\(N\)\) gives no finite likelihood at 40 runs \(rows 0, 1, "
     r".*\) at the sampler's starting point: e\.g\. the law is inf at N=3\.363e\+07"),
    ("law negative under a log noise model", {"runs.csv": lines(GOOD_ROWS)},
     lambda d: bayescale.fit(d / "runs.csv", formula="E - A * N**alpha", priors=PRIORS, progress=False),
     None, FormulaError, r"gives no finite likelihood at 40 runs .* where the loss 3\.38\d* has zero density under "
                         r"the student_t_log noise model"),
    # 5. a response named like an input
    ("response named N", {"law.toml": CARD.replace('name = "loss"', 'name = "N"')},
     lambda d: bayescale.law_from_file(d / "law.toml"), ["show", "--card", "{dir}/law.toml"], CardError,
     r"the response name 'N' is an input; the response must be a column of its own"),
    ("response named like a parameter", {"law.toml": CARD.replace('name = "loss"', 'name = "alpha"')},
     lambda d: bayescale.law_from_file(d / "law.toml"), None, CardError,
     r"the response name 'alpha' is a parameter"),
    # 8. literals: overflow, recursion, memory
    ("formula 9**9**9", {},
     lambda d: bayescale.law_from_formula("E + A / N**alpha + 9**9**9", PRIORS),
     None, FormulaError, r"the number 9\*\*9\*\*9 is infinite or too large"),
    ("formula 10**400", {}, lambda d: bayescale.law_from_formula("E + A / N**alpha * 10**400", PRIORS),
     None, FormulaError, r"the number 10\*\*400 is infinite or too large"),
    ("formula with a 400-digit integer", {}, lambda d: bayescale.law_from_formula("E + A / N**alpha + " + "9" * 400,
                                                                                 PRIORS),
     None, FormulaError, r"the number 9{37}\.\.\. is infinite or too large"),
    ("formula of 1000 chained terms", {}, lambda d: bayescale.law_from_formula(" + ".join(["E"] * 1000)
                                                                              + " + A / N**alpha", PRIORS),
     None, FormulaError, r"formula is \d+ characters long; at most 1000 are accepted"),
    ("formula of 300 chained terms", {}, lambda d: bayescale.law_from_formula("+".join(["E"] * 300) + "+A/N**alpha",
                                                                             PRIORS),
     None, FormulaError, r"is nested more than 40 levels deep \(a chain of n terms counts n\)"),
    ("formula with 1000 unary minus signs", {}, lambda d: bayescale.law_from_formula("-" * 1000 + "E + A / N**alpha",
                                                                                    PRIORS),
     None, FormulaError, r"formula is 1016 characters long; at most 1000 are accepted"),
    ("formula with 200 unary minus signs", {}, lambda d: bayescale.law_from_formula("-" * 200 + "E + A / N**alpha",
                                                                                   PRIORS),
     None, FormulaError, r"is nested more than 40 levels deep"),
    ("formula with 100 000 unary minus signs (MemoryError in Python's parser)", {},
     lambda d: compile_expr("-" * 100_000 + "N", {"N"}),
     None, FormulaError, r"formula is 100001 characters long"),
    ("prior LogNormal(1000, 1)", {"runs.csv": lines(GOOD_ROWS)},
     lambda d: bayescale.fit(d / "runs.csv", formula="E + A / N**alpha", progress=False,
                             priors={**PRIORS, "A": "LogNormal(1000, 1)"}),
     ["fit", "{dir}/runs.csv", "--formula", "E + A / N**alpha", "--prior", "E=LogNormal(0, 1)", "--prior",
      "A=LogNormal(1000, 1)", "--prior", "alpha=Uniform(0.05, 1)"], PriorError,
     r"LogNormal's median exp\(loc\) = exp\(1000\) is outside float32 \(\|loc\| must be at most 87\.72\)"),
    ("prior with a 100-digit argument", {}, lambda d: bayescale.law_from_formula(
        "E + A / N**alpha", {**PRIORS, "A": "LogNormal(0, 1" + "0" * 100 + ")"}),
     None, PriorError, r"scale = 1e\+100 exceeds float32's largest value"),
    ("prior with a 400-digit argument", {}, lambda d: bayescale.law_from_formula(
        "E + A / N**alpha", {**PRIORS, "A": "LogNormal(0, " + "9" * 400 + ")"}),
     None, PriorError, r"parameter 'A' prior is 4\d\d characters long; a prior such as 'Uniform\(0, 1\)' needs at "
                       r"most 200"),
    # 9. cards: encodings, types, depth
    ("binary card", {"law.toml": bytes(range(256)) * 4},
     lambda d: bayescale.law_from_file(d / "law.toml"), ["show", "--card", "{dir}/law.toml"], CardError,
     r"card file '.*law\.toml' is a binary file \(it contains NUL bytes\), not a TOML text file"),
    ("UTF-16 card", {"law.toml": CARD.encode("utf-16")},
     lambda d: bayescale.law_from_file(d / "law.toml"), ["show", "--card", "{dir}/law.toml"], CardError,
     r"card file '.*law\.toml' looks like UTF-16 text; save it as UTF-8"),
    ("Latin-1 card", {"law.toml": (CARD + '\n# caf\xe9\n').encode("latin-1")},
     lambda d: bayescale.law_from_file(d / "law.toml"), ["fit", "{dir}/runs.csv", "--card", "{dir}/law.toml"],
     CardError, r"card file '.*law\.toml' is not UTF-8 text \(byte 0xe9 at position \d+\); save it as UTF-8"),
    ("exponents = [['alpha']]", {"law.toml": CARD.replace('exponents = ["alpha", "beta"]', 'exponents = [["alpha"]]')},
     lambda d: bayescale.law_from_file(d / "law.toml"), ["show", "--card", "{dir}/law.toml"], CardError,
     r"key 'exponents' must be a list of parameter names \(strings\), got \[\['alpha'\]\]"),
    ("3000-deep TOML", {"law.toml": "x = " + "[" * 3000 + "]" * 3000 + "\n"},
     lambda d: bayescale.law_from_file(d / "law.toml"), ["show", "--card", "{dir}/law.toml"], CardError,
     r"is not usable TOML: its tables or arrays are nested too deeply"),
    ("card with an escape sequence", {"law.toml": CARD.replace('title = "', 'title = "\\u001b[2J')},
     lambda d: bayescale.law_from_file(d / "law.toml"), ["show", "--card", "{dir}/law.toml"], CardError,
     r"a string contains a control character U\+001B; a card is plain text"),
    # 6. a fit file that is not one (the full set of damaged files: tests/test_fit_file.py)
    ("a CSV given as a fit file", {"fit.nc": lines(GOOD_ROWS)},
     lambda d: bayescale.load_fit(d / "fit.nc"), ["summary", "{dir}/fit.nc"], FitFileError,
     r"fit file '.*fit\.nc' cannot be used: it is not a bayescale fit file \(not NetCDF/HDF5\)"),
    # 13. an unwritable --out (checked before the work)
    ("--out in an unwritable folder", {"runs.csv": lines(GOOD_ROWS)},
     lambda d: check_out_path("/proc/fit.nc", False),
     ["fit", "{dir}/runs.csv", "--law", "chinchilla", "--out", "/proc/fit.nc"], FitFileError,
     r"--out '/proc/fit\.nc': cannot write in directory '/proc' \("),
]


def _write(folder: Path, files: dict) -> None:
    for name, content in files.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


@pytest.mark.parametrize("case, files, call, argv, exc, pattern", CASES, ids=[c[0] for c in CASES])
def test_the_python_api_refuses_it(tmp_path, case, files, call, argv, exc, pattern):
    _write(tmp_path, files)
    with pytest.raises(exc, match=pattern) as info:
        call(tmp_path)
    assert type(info.value) is exc or issubclass(type(info.value), exc)


CLI_CASES = [c for c in CASES if c[3] is not None]


@pytest.mark.parametrize("case, files, call, argv, exc, pattern", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_the_command_line_refuses_it_in_one_line(tmp_path, case, files, call, argv, exc, pattern):
    _write(tmp_path, files)
    if not (tmp_path / "runs.csv").exists():
        (tmp_path / "runs.csv").write_text(lines(GOOD_ROWS))
    args = [a.replace("{dir}", str(tmp_path)) for a in argv] + ["--json"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    assert code == 2, err.getvalue()
    stderr = err.getvalue().strip().splitlines()
    assert len(stderr) == 1 and stderr[0].startswith("error: "), err.getvalue()
    report = json.loads(out.getvalue())["error"]
    assert report["type"] == exc.__name__
    assert re.search(pattern, report["message"]), report["message"]
    assert report["message"] == stderr[0][len("error: "):]


def test_the_out_folder_is_checked_before_any_fitting(tmp_path, monkeypatch):
    """fit --out in an unwritable folder fails at once: the fit itself is never started."""
    import bayescale.fitting

    (tmp_path / "runs.csv").write_text(lines(GOOD_ROWS))

    def refuse(*args, **kwargs):
        raise AssertionError("the fit ran before --out was checked")

    monkeypatch.setattr(bayescale.fitting, "fit", refuse)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["fit", str(tmp_path / "runs.csv"), "--law", "chinchilla", "--out", "/proc/none/fit.nc"])
    assert code == 2 and "directory '/proc/none' does not exist" in err.getvalue()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["fit", str(tmp_path / "runs.csv"), "--law", "chinchilla", "--out", "/proc/fit.nc"])
    assert code == 2 and "cannot write in directory '/proc'" in err.getvalue()


# --------------------------------------------------------------------------- answers read off a posterior


@pytest.fixture(scope="module")
def short_fit():
    """A short Chinchilla fit of the pilot runs (the answers below need draws, not good ones)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
        return bayescale.fit(pilot_chinchilla(), law="chinchilla", chains=2, warmup=150, draws=150, seed=3,
                             progress=False)


def test_a_budget_beyond_float32_is_refused(short_fit):
    """1.7e308 FLOPs gave NaN exponents (ten times it is inf); budgets stop at 1e37."""
    with pytest.raises(BayescaleError, match=r"budgets must be at most 1e\+37 FLOPs .*got \[1\.7e\+308\]"):
        bayescale.optimal(short_fit, [1.7e308])


def test_predicting_far_below_the_data_warns(short_fit):
    with pytest.warns(ExtrapolationWarning, match=r"1 of 2 grid points lie more than 10x below the smallest fitted "
                                                  r"run \(down to 1/[\d.e+]+ of it\)"):
        bayescale.predict(short_fit, {"N": [1.0, 1e8], "D": [1.0, 2e9]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        bayescale.predict(short_fit, {"N": [1e8], "D": [2e9]})      # inside the data: no warning


def test_a_law_infinite_at_a_grid_point_is_an_error_not_inf(short_fit):
    """The same draws under a law with an exp(N / 1e9) term: finite at the data, inf at N = 1e12."""
    law = bayescale.law_from_formula("E + A / N**alpha + B / D**beta + exp(N / 1e9)",
                                     {"E": "LogNormal(0, 1)", "A": "LogNormal(5, 3)", "B": "LogNormal(5, 3)",
                                      "alpha": "Uniform(0, 1)", "beta": "Uniform(0, 1)"})
    bent = dataclasses.replace(short_fit, law=law)
    assert np.isfinite(bayescale.predict(bent, {"N": [1e8], "D": [2e9]})["median"]).all()
    with pytest.raises(BayescaleError, match=r"the law 'custom' is not finite at grid rows \[1\] for some posterior "
                                             r"draws"):
        bayescale.predict(bent, {"N": [1e8, 1e12], "D": [2e9, 2e9]})


def test_probabilities_stay_inside_0_1(short_fit):
    """A negative target has P(loss < target) = 0 (it was null: 0 * inf in the t CDF), a huge one 1;
    shares of draws summed from weights never exceed 1 (they reached 1.0000000000000004)."""
    from bayescale.mixture import probability

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = bayescale.predict(short_fit, {"N": [7e10, 7e10, 7e10], "D": [1.4e12] * 3}, target=-1.0)
        assert table["p_below_target"].tolist() == [0.0, 0.0, 0.0]
        high = bayescale.predict(short_fit, {"N": [7e10], "D": [1.4e12]}, target=1e30)["p_below_target"]
        assert 0.999 < float(high.iloc[0]) <= 1.0
        alloc = bayescale.optimal(short_fit, [5.88e23, 1e30])
    assert ((alloc.summary()[["p_at_n_bound", "p_at_token_cap", "p_outside_domain"]] <= 1.0).all()).all()
    weights = np.full(10, 0.1)          # 0.1 * 10 in floating point is 0.9999999999999999 or more
    assert probability(weights, np.ones(10, bool)) <= 1.0
    assert probability(np.full(3, 1 / 3 + 1e-16), np.ones((3, 2), bool)).max() == 1.0


def test_a_chain_that_never_moves_is_named_as_such():
    """The gate names stuck chains (the float32 freeze of issue 10 #3 printed only 'R-hat 9.86e15')."""
    from bayescale.diagnostics import diagnose

    rng = np.random.default_rng(0)
    post = {"a": rng.normal(size=(4, 200)), "sigma": np.abs(rng.normal(size=(4, 200)))}
    post["a"][2] = 0.7
    stats = {"diverging": np.zeros((4, 200), bool), "tree_depth": np.full((4, 200), 3)}
    d = diagnose(post, stats, ["a", "sigma"], 10)
    assert any("chain 2 never moved" in p for p in d.problems)
    assert any("float32" in a for a in d.advice)


def test_mutated_csv_files_give_a_data_error_or_a_valid_table(tmp_path):
    """250 random edits of a good CSV (fixed seed: characters inserted, deleted or replaced, lines
    duplicated or dropped): each is a DataError (or warning) or a table that passes validation, never
    another exception."""
    rng = np.random.default_rng(7)
    text = lines(GOOD_ROWS)
    alphabet = [",", ";", '"', "\n", "\x00", "\xe9", "e", "-", ".", "1", " ", "\t", "inf", "nan", "1e999"]
    law = bayescale.load_law("chinchilla")
    path = tmp_path / "runs.csv"
    outcomes = {"error": 0, "table": 0}
    for _ in range(250):
        t = list(text)
        for _ in range(int(rng.integers(1, 4))):
            pos = int(rng.integers(len(t)))
            kind = rng.integers(3)
            if kind == 0:
                t.insert(pos, alphabet[int(rng.integers(len(alphabet)))])
            elif kind == 1:
                del t[pos]
            else:
                t[pos] = alphabet[int(rng.integers(len(alphabet)))]
        path.write_bytes("".join(t).encode("utf-8"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", bayescale.DataWarning)
                runs = bayescale.prepare_runs(path, law)
        except DataError:
            outcomes["error"] += 1
            continue
        outcomes["table"] += 1
        values = runs.table.to_numpy()
        assert np.all(np.isfinite(values)) and np.all(values > 0)
    assert outcomes["error"] > 30 and outcomes["table"] > 30, outcomes
