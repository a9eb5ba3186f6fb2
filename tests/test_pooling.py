"""Partial pooling across groups (``fit(..., group=COL, vary=[...])``; bayescale.inference.pooling).

One pooled fit of 4 simulated families (power law + constant, E differing by family, 10 runs each,
1% noise) is shared by the module.  Its truths are known, so the group medians are checked against
them with the posterior's own spread as the tolerance.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.errors import BayescaleError
from bayescale.inference.pooling import make_pooling

TRUE_E = {"a": 1.6, "b": 1.8, "c": 2.0, "d": 1.7}


def families(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for g, e in TRUE_E.items():
        x = np.logspace(6, 8.5, 10)
        y = (e + 40 * x ** -0.3) * np.exp(0.01 * rng.standard_normal(10))
        rows += [{"x": xi, "loss": yi, "fam": g} for xi, yi in zip(x, y)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def pooled():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.FitRetried)
        return bs.fit(families(), law="power_law_constant", group="fam", vary=["E"], seed=1, progress=False)


def test_pooled_fit_passes_the_gate_and_recovers_each_group(pooled):
    assert pooled.diagnostics.passed, pooled.diagnostics.problems
    assert pooled.groups == ("a", "b", "c", "d")
    assert {"tau_E", "z_E_0", "z_E_3"} <= set(pooled.var_names)
    for g, e in TRUE_E.items():
        draws = pooled.group(g).draws("E")
        lo, hi = np.quantile(draws, [0.005, 0.995])      # a 99% interval must hold the truth
        assert lo < e < hi, (g, lo, hi)
    # the shared exponent is one value for all groups
    assert np.array_equal(pooled.group("a").draws("alpha"), pooled.group("d").draws("alpha"))


def test_a_new_group_is_wider_than_any_group_in_the_data(pooled):
    new = pooled.group("new")
    width = np.subtract(*np.quantile(new.draws("E"), [0.95, 0.05]))
    for g in pooled.groups:
        assert width > 2 * np.subtract(*np.quantile(pooled.group(g).draws("E"), [0.95, 0.05]))
    # seeded: the same fresh offsets every time
    assert np.array_equal(new.draws("E"), pooled.group("new").draws("E"))
    assert new.settings["group"]["level"] == "new"


def test_group_view_is_what_predict_and_optimal_answer_for(pooled):
    grid = {"x": [1e9]}
    a = bs.predict(pooled, grid, group="a")
    c = bs.predict(pooled, grid, group="c")
    assert a["median"].iloc[0] < c["median"].iloc[0]          # E_a = 1.6 < E_c = 2.0
    pd.testing.assert_frame_equal(a, bs.predict(pooled.group("a"), grid))
    with pytest.raises(BayescaleError, match=r"pooled over 4 groups of 'fam'.*group='new'"):
        bs.predict(pooled, grid)
    with pytest.raises(BayescaleError, match=r"group 'z' is not a level of column 'fam'"):
        bs.predict(pooled, grid, group="z")
    view = pooled.group("b")
    assert len(view.runs) == 10 and view.log_likelihood.shape[-1] == 10
    assert "a view of a pooled fit" in str(view)


def test_save_and_load_keep_the_pooling(pooled, tmp_path):
    path = pooled.save(tmp_path / "pooled.nc")
    back = bs.load_fit(path)
    assert back.pooling == pooled.pooling
    for name in pooled.var_names:
        np.testing.assert_array_equal(back.draws(name), pooled.draws(name))
    np.testing.assert_array_equal(back.group("c").draws("E"), pooled.group("c").draws("E"))
    assert "partially pooled over 4 groups of 'fam'" in str(back)


def test_log_likelihood_uses_each_runs_group(pooled):
    """The pointwise log-likelihood of the pooled fit equals, per group, that of the group's view."""
    for g in ("a", "d"):
        view = pooled.group(g)
        rows = np.flatnonzero(np.asarray(pooled.pooling.index) == pooled.groups.index(g))
        from bayescale.fitting import pointwise_log_likelihood

        plain = pointwise_log_likelihood(view.law, view.noise, view.samples.posterior, view.runs.input_arrays(),
                                         view.runs.response_array(), view.refs)
        np.testing.assert_allclose(pooled.log_likelihood[..., rows], plain, rtol=1e-10)


@pytest.mark.parametrize("vary, group, pattern", [
    (["B"], "fam", r"'B' is not a parameter of law 'power_law_constant'.*\['E', 'A', 'alpha'\]"),
    (["L_c"], "fam", r"'L_c' is a coordinate the card samples"),
    ([], "fam", r"vary names no parameter"),
    (["E", "E"], "fam", r"vary names 'E' twice"),
    ({"E": "Normal(0, 1)"}, "fam", r"group scale of 'E' must have positive support"),
    (["E"], None, r"vary needs the column of the groups"),
    (["E"], "fam,fam2", r"vary pools over one group column"),
])
def test_bad_vary_is_a_clear_error(vary, group, pattern):
    df = families()
    df["fam2"] = df["fam"]
    with pytest.raises(BayescaleError, match=pattern):
        bs.fit(df, law="power_law_constant", group=group, vary=vary, progress=False, chains=1, warmup=20, draws=20)


def test_one_group_is_refused():
    law = bs.load_law("power_law_constant")
    with pytest.raises(BayescaleError, match=r"at least two groups in column 'fam'"):
        make_pooling(law, ["a"] * 5, ["E"], "fam")


def test_levels_sort_naturally_and_round_trip():
    law = bs.load_law("chinchilla")
    p = make_pooling(law, ["10", "2", "b", "2"], {"alpha": "HalfNormal(0.1)", "E": "HalfNormal(0.3)"}, "setup")
    assert p.levels == ("2", "10", "b") and p.index == (1, 0, 2, 0)
    assert p.relative == (True, True) and p.scales == ("HalfNormal(0.1)", "HalfNormal(0.3)")
    assert type(p).from_dict(p.as_dict()) == p
