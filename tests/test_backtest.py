"""Held-out backtests: holdout parsing and selection, scoring, groups, rollout, CLI, plot.

Real data: the 4-digit-addition curve of Caballero et al. (``split`` column:
14 points to fit, 3 to extrapolate), where a broken power law must beat a
power law plus constant both by elpd_loo and by extrapolation error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale.backtest import Backtest, _holdout_mask, _parse_fraction, backtest, parse_holdout, rollout
from bayescale.cards import load_law
from bayescale.errors import BayescaleError, DataError

SMALL = {"chains": 2, "warmup": 500, "draws": 500}
BNSL_MAP = {"x": "train_set_size", "loss": "test_cross_entropy"}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bnsl_csv(shared_datasets):
    return shared_datasets / "bnsl_4digit_addition" / "bnsl_4digit_addition.csv"


def curve(seed: int, n: int = 16, floor: float = 1.8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e6, 1e10, n)
    loss = (floor + 126.0 * x ** -0.3) * np.exp(0.01 * rng.standard_normal(n))
    return pd.DataFrame({"x": x, "loss": loss})


# --------------------------------------------------------------------------- parsing (no fits)


@pytest.mark.parametrize("text,expected", [
    ("C>=1e21", ("C", ">=", 1e21)),
    (" N > 5e8 ", ("N", ">", 5e8)),
    ("Seen Examples<=2.5E9", ("Seen Examples", "<=", 2.5e9)),
    ("x == 160", ("x", "==", 160.0)),
    ("D != -.5", ("D", "!=", -0.5)),
])
def test_parse_holdout(text, expected):
    assert parse_holdout(text) == expected


@pytest.mark.parametrize("text", ["C>=foo", "__import__('os').system('true')", "C >= 1e21; x", "C => 1",
                                  ">= 1e21", "C>=1e21 and N<1", "C>=inf", ""])
def test_parse_holdout_rejects_anything_else(text):
    with pytest.raises(DataError, match="holdout"):
        parse_holdout(text)


def test_parse_fraction():
    assert _parse_fraction("20%") == pytest.approx(0.2)
    assert _parse_fraction(0.25) == 0.25
    assert _parse_fraction("0.1") == pytest.approx(0.1)
    for bad in ("120%", 0, 1, "abc", True, -0.1):
        with pytest.raises(DataError, match="holdout_top"):
            _parse_fraction(bad)


def _mask(frame, laws=("power_law_constant",), **kw):
    args = {"holdout": None, "holdout_top": None, "by": "C", "split_column": None, "train_value": None}
    args.update(kw)
    laws = [load_law(n) for n in laws]
    return _holdout_mask(frame, frame, laws, args["holdout"], args["holdout_top"], args["by"],
                         args["split_column"], args["train_value"])


def test_holdout_selection_kinds():
    frame = curve(0)
    mask, desc = _mask(frame, holdout="x>=1e9")
    assert mask.sum() == int((frame["x"] >= 1e9).sum()) and desc == "x>=1e9"
    mask, desc = _mask(frame, holdout_top="25%", by="x")
    assert mask.sum() == 4 and np.all(frame["x"][mask] > frame["x"][~mask].max())
    assert desc.startswith("top 25% of runs by x")
    tied = pd.DataFrame({"x": [1, 2, 3, 3, 3, 4.0][::-1], "loss": np.ones(6)})
    mask, _ = _mask(tied, holdout_top=0.34, by="x")   # 2 runs asked, the tie at 3 joins them
    assert mask.tolist() == [True, True, True, True, False, False]
    frame["Training"] = [1] * 12 + [0] * 4
    mask, desc = _mask(frame, split_column="Training")
    assert mask.tolist() == [False] * 12 + [True] * 4 and "Training == 0" in desc
    frame["split"] = ["fit"] * 13 + ["extrapolate"] * 3
    mask, desc = _mask(frame, split_column="split")
    assert mask.sum() == 3 and "'extrapolate'" in desc
    frame["flag"] = [True] * 14 + [False] * 2
    assert _mask(frame, split_column="flag")[0].sum() == 2
    frame["part"] = ["a"] * 10 + ["b"] * 6
    with pytest.raises(DataError, match="train_value"):
        _mask(frame, split_column="part")
    assert _mask(frame, split_column="part", train_value="b")[0].sum() == 10


def test_holdout_on_compute_derived_from_the_law():
    """C is not a column: it comes from the card's cost 6 N D."""
    N, D = np.meshgrid([1e8, 1e9], [1e9, 1e10, 1e11])
    frame = pd.DataFrame({"N": N.ravel(), "D": D.ravel(), "loss": np.linspace(3, 2, 6)})
    mask, _ = _mask(frame, laws=("chinchilla",), holdout="C>=1e20")
    np.testing.assert_array_equal(mask, 6 * frame["N"] * frame["D"] >= 1e20)


# --------------------------------------------------------------------------- bad input (no fits)


def test_holdout_selecting_nothing(bnsl_csv):
    with pytest.raises(DataError, match=r"selects none of the 17 runs \(x ranges 160 to 928\)"):
        backtest(bnsl_csv, "bnsl1", holdout="x>=5000", mapping=BNSL_MAP)


def test_holdout_leaving_too_few_runs(bnsl_csv):
    with pytest.raises(DataError, match=r"leaves 6 of 17 runs to fit; law 'bnsl1' has 6 parameters plus a "
                                        r"noise scale, so it needs at least 8 runs"):
        backtest(bnsl_csv, ["power_law_constant", "bnsl1"], holdout="x>448", mapping=BNSL_MAP)
    with pytest.raises(DataError, match="marks every run for fitting"):
        backtest(pd.DataFrame({**curve(0), "Training": 1}), "power_law_constant", split_column="Training")


def test_unknown_columns_and_options(bnsl_csv):
    with pytest.raises(DataError, match=r"unknown column 'C'.*compute cost"):
        backtest(bnsl_csv, "bnsl1", holdout="C>=1e21", mapping=BNSL_MAP)
    with pytest.raises(DataError, match="unknown column 'size'"):
        backtest(bnsl_csv, "bnsl1", holdout_top="20%", by="size", mapping=BNSL_MAP)
    with pytest.raises(DataError, match="split column 'Training' does not exist"):
        backtest(bnsl_csv, "bnsl1", split_column="Training", mapping=BNSL_MAP)
    with pytest.raises(BayescaleError, match="exactly one of"):
        backtest(bnsl_csv, "bnsl1", holdout="x>900", split_column="split", mapping=BNSL_MAP)
    with pytest.raises(BayescaleError, match="exactly one of"):
        backtest(bnsl_csv, "bnsl1", mapping=BNSL_MAP)
    with pytest.raises(DataError, match="group columns"):
        backtest(bnsl_csv, "bnsl1", split_column="split", group="curve", mapping=BNSL_MAP)
    with pytest.raises(BayescaleError, match="distinct"):
        backtest(bnsl_csv, ["bnsl1", "bnsl1"], split_column="split", mapping=BNSL_MAP)
    with pytest.raises(BayescaleError, match="k must be"):
        rollout(curve(0), "power_law_constant", by="x", k=0)


# --------------------------------------------------------------------------- real data: BNSL beats the power law


@pytest.fixture(scope="module")
def bnsl_backtest(bnsl_csv):
    return backtest(bnsl_csv, ["power_law_constant", "bnsl1"], split_column="split", mapping=BNSL_MAP,
                    seed=0, **SMALL)


def test_bnsl_split_backtest_reports_both_laws(bnsl_backtest):
    """Acceptance: the paper's split (14 fit, 3 extrapolate); BNSL extrapolates, the power law cannot."""
    bt = bnsl_backtest
    assert isinstance(bt, Backtest)
    assert list(bt.summary.index) == ["power_law_constant", "bnsl1"]
    assert (bt.summary["n_test"] == 3).all()
    s = bt.summary
    assert s.loc["bnsl1", "median_are"] < 0.05
    assert s.loc["power_law_constant", "median_are"] > 0.3
    assert s.loc["bnsl1", "mean_lpd"] > s.loc["power_law_constant", "mean_lpd"]
    assert s.loc["power_law_constant", "coverage_90"] == 0
    t = bt.table
    assert t["run"].tolist() == [14, 15, 16] * 2
    assert np.allclose(t["observed"].iloc[:3], [0.758565, 0.647683, 0.556954], rtol=1e-4)
    assert "bnsl1" in str(bt) and "median_are" in str(bt)


def test_backtest_table_is_consistent(bnsl_backtest):
    t = bnsl_backtest.table
    np.testing.assert_allclose(t["are"], np.abs(t["predicted"] - t["observed"]) / t["observed"])
    for lab in ("50", "90"):
        np.testing.assert_array_equal(t[f"hit_{lab}"], (t[f"lower_{lab}"] <= t["observed"])
                                      & (t["observed"] <= t[f"upper_{lab}"]))
        np.testing.assert_allclose(t[f"width_{lab}"], t[f"upper_{lab}"] - t[f"lower_{lab}"])
        assert np.all(t[f"lower_{lab}"] < t["predicted"]) and np.all(t["predicted"] < t[f"upper_{lab}"])
    assert np.all(t["lower_90"] <= t["lower_50"]) and np.all(t["upper_50"] <= t["upper_90"])
    assert np.all(np.isfinite(t["lpd"]))
    assert np.all(t["extrapolation"] > 1)
    for law, part in t.groupby("law"):
        row = bnsl_backtest.summary.loc[law]
        assert row["coverage_90"] == pytest.approx(part["hit_90"].mean())
        assert row["median_are"] == pytest.approx(part["are"].median())
        assert row["mean_lpd"] == pytest.approx(part["lpd"].mean())
    json.dumps(bnsl_backtest.as_dict(), allow_nan=False)


def test_bnsl_beats_power_law_constant_by_elpd_loo(bnsl_csv):
    """Acceptance: on all 17 points BNSL (1 break) has the higher elpd_loo, clearly."""
    from bayescale.compare import compare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
        fits = [bayescale.fit(bnsl_csv, law=law, mapping=BNSL_MAP, seed=0, progress=False, **SMALL)
                for law in ("power_law_constant", "bnsl1")]
    c = compare(fits, reloo=False)
    assert c.best == "bnsl1"
    diff, dse = -c.table["elpd_diff"].iloc[1], c.table["dse"].iloc[1]
    assert diff > 20 and diff > 3 * dse


def test_plot_backtest(bnsl_backtest):
    from matplotlib.figure import Figure

    from bayescale.plots.compare import plot_backtest

    fig = plot_backtest(bnsl_backtest)
    assert isinstance(fig, Figure)
    laws = list(dict.fromkeys(bnsl_backtest.table["law"]))
    axes = fig.axes
    assert len(axes) == len(laws)                               # one panel per law: no jitter between laws
    assert [a.get_title().split(":")[0] for a in axes] == laws
    assert all("median ARE" in a.get_title() for a in axes)
    # y is the relative error in %, the axes span the runs and their bars (not the whole interval of losses)
    table = bnsl_backtest.table
    obs = table["observed"].to_numpy()
    lo, hi = axes[0].get_xlim()
    assert lo <= obs.min() and obs.max() <= hi and (hi - lo) <= 1.2 * (obs.max() - obs.min()) + 1e-9
    rel = 100 * (table["predicted"] / table["observed"] - 1)
    ylo, yhi = axes[0].get_ylim()
    assert ylo <= min(rel.min(), 0) and max(rel.max(), 0) <= yhi
    assert any(line.get_linestyle() == "--" and tuple(line.get_ydata()) == (0, 0) for line in axes[0].lines)
    with pytest.raises(BayescaleError, match="not one of"):
        plot_backtest(bnsl_backtest, prob=0.8)


def test_cli_backtest(bnsl_csv, tmp_path, capsys):
    from bayescale.cli import main

    plot = tmp_path / "bt.png"
    argv = ["backtest", str(bnsl_csv), "--law", "bnsl1", "--split-column", "split", "--map",
            "x=train_set_size", "loss=test_cross_entropy", "--chains", "2", "--warmup", "500", "--draws", "500",
            "--json", "--plot", str(plot), "--no-law-check"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"][0]["law"] == "bnsl1" and len(data["runs"]) == 3
    assert plot.stat().st_size > 1000
    before = plot.stat().st_mtime_ns
    assert main(argv) == 2                         # refused before any fitting: the plot exists
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err and err.count("\n") == 1
    assert plot.stat().st_mtime_ns == before
    assert main(["backtest", str(bnsl_csv), "--law", "bnsl1", "--holdout", "x>=5000",
                 "--map", "x=train_set_size", "loss=test_cross_entropy", "--no-law-check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: holdout 'x>=5000' selects none") and err.count("\n") == 1


# --------------------------------------------------------------------------- groups and rollout


def test_group_backtest_pools_curves_and_skips_tiny_groups():
    frames = [curve(1).assign(curve="a"), curve(2, floor=2.2).assign(curve="b"),
              curve(3, n=4).assign(curve="tiny")]
    frame = pd.concat(frames, ignore_index=True)
    bt = backtest(frame, "power_law_constant", holdout_top="25%", by="x", group="curve", seed=0, **SMALL)
    assert bt.summary.loc["power_law_constant", "n_groups"] == 2
    assert bt.summary.loc["power_law_constant", "n_test"] == 8
    assert sorted(bt.table["group"].unique()) == ["a", "b"]
    assert any("group 'tiny' skipped" in n for n in bt.notes)
    assert bt.holdout == "top 25% of runs by x in each group of curve"
    assert bt.summary.loc["power_law_constant", "median_are"] < 0.05
    assert bt.timings["fits"] == 2
    # the groups' fits of a law run in one batch (fit_many); a fit that failed its gate is refitted by NUTS
    from bayescale.inference.many import group_seed

    for f in bt.fits:
        assert _first_sampler(f) == "bayescale.inference.lockstep"
    assert [f.settings["seed"] for f in bt.fits] == [group_seed(0, 0), group_seed(0, 1)]


def test_rollout_expanding_windows():
    frame = curve(4, n=24)
    bt = rollout(frame, "power_law_constant", by="x", k=2, start=0.5, seed=0, **SMALL)
    t = bt.table
    assert sorted(t["window"].unique()) == [0, 1]
    th = t.groupby("window")["threshold"].first().to_numpy()
    assert th[0] < th[1]
    w0 = t[t["window"] == 0]
    assert np.all(w0["x"] >= th[0]) and np.all(w0["x"] < th[1])
    assert np.all(t[t["window"] == 1]["x"] >= th[1])
    assert len(t) == int((frame["x"] >= th[0]).sum())
    assert bt.summary.loc["power_law_constant", "fits"] == 2
    assert bt.holdout.startswith("expanding window by x")
    assert bt.summary.loc["power_law_constant", "median_are"] < 0.05
    # the windows were one batch (the default); by NUTS the predictive medians agree within Monte Carlo
    # error: a median from ~1,000 effective draws has se ~1.25 sd / sqrt(1000) ~ 0.012 x the 90% width
    # (3.29 sd), so two samplers' medians differ by < 0.05 x the width at about 3 se
    assert {_first_sampler(f) for f in bt.fits} == {"bayescale.inference.lockstep"}
    nuts = rollout(frame, "power_law_constant", by="x", k=2, start=0.5, seed=0, batch=False, **SMALL)
    assert {_first_sampler(f) for f in nuts.fits} == {"bayescale.nuts"}
    assert np.all(np.abs(nuts.table["predicted"] - t["predicted"]) < 0.05 * nuts.table["width_90"])
    assert nuts.table["hit_90"].tolist() == t["hit_90"].tolist()


def _first_sampler(fit) -> str:
    return (fit.settings["retried"] or {}).get("first_attempt", {}).get("sampler", fit.settings["sampler"])


# --------------------------------------------------------------------------- slow: the revisiting benchmark script


@pytest.mark.slow
def test_revisiting_backtest_script_smoke(shared_datasets, tmp_path):
    out = tmp_path / "rev.json"
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "revisiting_backtest.py"), "--max-curves", "2",
                           "--chains", "2", "--warmup", "500", "--draws", "500", "--json", str(out)],
                          capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "BAYESCALE_SHARED": str(shared_datasets.parent)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    laws = {row["law"] for row in data["summary"]}
    assert laws == {"power_law_constant", "bnsl1"}
    assert all(row["n_groups"] == 2 for row in data["summary"])
    assert "median ARE" in proc.stdout
