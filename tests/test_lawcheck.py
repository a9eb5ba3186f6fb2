"""The law check (issue 13, part 5): the catalogue's other laws fitted beside the named one.

Unit tests of the rule on hand-made tables, then one memo on simulated curves that bend towards a
floor, where the named law (a pure power law) is the wrong one: the check must say plainly that LOO
prefers a law with a floor, put it in the Summary's caveats, and leave the answer to the named law.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale.cli import main
from bayescale.data import pilot_chinchilla
from bayescale.errors import BayescaleError
from bayescale.evidence.lawcheck import alternative_laws, backtest_preference, clear, loo_preference
from bayescale.memo import build_memo
from bayescale.memo.markdown import render_markdown

QUICK = dict(chains=2, warmup=300, draws=300, progress=False)


def test_alternatives_are_the_laws_the_runs_allow():
    nd = pilot_chinchilla()
    assert [law.name for law in alternative_laws(["chinchilla"], nd)] == ["kaplan", "overtraining"]
    # a column of unique tokens lets the data-constrained law in; M = D / N is derived for over-training
    assert "data_constrained" in [law.name for law in alternative_laws(["chinchilla"], nd.assign(U=nd["D"]))]
    x = pd.DataFrame({"x": np.logspace(6, 8, 12), "loss": np.linspace(3, 2, 12)})
    assert [law.name for law in alternative_laws(["power_law"], x)] == ["bnsl1", "bnsl2", "power_law_constant"]
    assert [law.name for law in alternative_laws(["power_law"], x.rename(columns={"x": "N"}), {"x": "N"})] \
        == ["bnsl1", "bnsl2", "power_law_constant"]
    with pytest.raises(BayescaleError, match="at least one named law"):
        alternative_laws([], nd)


def test_clear_is_compares_rule():
    assert clear(5.0, 2.0) and not clear(3.9, 0.1) and not clear(5.0, 3.0) and not clear(float("nan"), 1.0)


def _table(rows):
    return pd.DataFrame(rows, columns=["name", "elpd_loo", "elpd_diff", "dse"]).set_index("name")


def test_loo_preference_names_an_alternative_only_when_it_is_clearly_better():
    table = _table([("bnsl1", -10.0, 0.0, 0.0), ("power_law", -30.0, -20.0, 5.0), ("plc", -12.0, -2.0, 1.0)])
    assert loo_preference(table, ["power_law"]) == ("bnsl1", 20.0, 5.0)
    close = _table([("bnsl1", -10.0, 0.0, 0.0), ("power_law", -13.0, -3.0, 1.0)])
    assert loo_preference(close, ["power_law"]) == (None, 3.0, 1.0)
    named_best = _table([("power_law", -10.0, 0.0, 0.0), ("bnsl1", -30.0, -20.0, 5.0)])
    assert loo_preference(named_best, ["power_law"])[0] is None
    with pytest.raises(BayescaleError, match="none of the named"):
        loo_preference(named_best, ["kaplan"])


def test_backtest_preference_pairs_the_held_out_runs():
    rng = np.random.default_rng(0)
    y = rng.uniform(2, 3, 30)
    base = rng.normal(1.0, 0.3, 30)
    rows = [pd.DataFrame({"law": law, "observed": y, "lpd": base + shift + rng.normal(0, 0.05, 30)})
            for law, shift in (("chinchilla", 0.0), ("kaplan", -0.5), ("overtraining", 0.4))]
    table = pd.concat(rows, ignore_index=True)
    best, lead, se = backtest_preference(table, ["chinchilla"], ["kaplan", "overtraining"])
    assert best == "overtraining" and lead == pytest.approx(12.0, abs=1.0) and 0 < se < 1.0
    # a lead the size of its noise is not clear
    rows[2]["lpd"] = base + rng.normal(0.02, 0.5, 30)
    assert backtest_preference(pd.concat(rows, ignore_index=True), ["chinchilla"], ["overtraining"])[0] is None
    # different held-out runs cannot be paired
    rows[2]["observed"] = y[::-1]
    with pytest.raises(BayescaleError, match="same held-out runs"):
        backtest_preference(pd.concat(rows, ignore_index=True), ["chinchilla"], ["overtraining"])


def _bending_curve() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    x = np.logspace(5, 9, 30)
    loss = (1.5 + 30.0 * x ** -0.35) * np.exp(0.01 * rng.standard_normal(x.size))
    return pd.DataFrame({"x": x, "loss": loss})


SHORT = dict(chains=2, warmup=150, draws=150, progress=False)


def test_one_named_law_gets_the_others_beside_it_and_the_answer_stays_its_own():
    memo = build_memo(pilot_chinchilla(), ["chinchilla"], budget=1e22, backtest=False, figures=False, **SHORT)
    check = memo.evidence.law_check
    assert [(r.name, r.named) for r in check.rows] == [("chinchilla", True), ("kaplan", False),
                                                      ("overtraining", False)]
    assert all(np.isfinite(r.elpd_loo) and r.elpd_diff <= 0 and r.backtest_n is None for r in check.rows)
    assert check.sentences and check.backtest_prefers is None
    assert memo.question.laws == ("chinchilla",) and [r.name for r in memo.sensitivity.rows] == ["chinchilla"]
    assert memo.evidence.weights == {}              # one law in the answer: nothing stacked
    text = render_markdown(memo)
    assert "Other laws, as a check" in text and "| `kaplan` | no (check) |" in text
    data = json.loads(json.dumps(memo.as_dict(), allow_nan=False))
    assert [r["name"] for r in data["evidence"]["law_check"]["rows"]] == ["chinchilla", "kaplan", "overtraining"]


def test_the_law_check_is_off_for_given_fits_unless_asked_and_checks_its_argument():
    fit = bayescale.fit(pilot_chinchilla(), law="chinchilla", retry=False, **SHORT)
    assert build_memo(fits=[fit], budget=1e22, backtest=False, figures=False,
                      progress=False).evidence.law_check is None
    forced = build_memo(fits=[fit], budget=1e22, backtest=False, figures=False, law_check=True, **SHORT)
    assert [r.name for r in forced.evidence.law_check.rows] == ["chinchilla", "kaplan", "overtraining"]
    with pytest.raises(BayescaleError, match="law_check must be"):
        build_memo(fits=[fit], budget=1e22, law_check="yes", progress=False)


@pytest.mark.slow
def test_the_memo_says_plainly_when_another_law_is_clearly_better():
    """Curves with a floor, a pure power law named: a law with a floor must be clearly preferred by LOO,
    said in the check and in the Summary's caveats; the answer remains the power law's."""
    memo = build_memo(_bending_curve(), ["power_law"], plan={"x": 1e10}, by="x", figures=False, **QUICK)
    check = memo.evidence.law_check
    assert [(r.name, r.named) for r in check.rows] == [("power_law", True), ("bnsl1", False), ("bnsl2", False),
                                                      ("power_law_constant", False)]
    assert check.loo_prefers in ("power_law_constant", "bnsl1", "bnsl2")
    assert check.loo_lead > 4 and check.loo_lead > 2 * check.loo_se
    assert all(r.backtest_n == 6 for r in check.rows)            # the top 20% of 30 runs by x
    assert any("LOO clearly prefers" in s for s in check.sentences)
    assert any("LOO clearly prefers" in c for c in memo.answer.caveats)
    assert memo.question.laws == ("power_law",)
    assert [r.name for r in memo.sensitivity.rows] == ["power_law"]
    several = build_memo(_bending_curve(), ["power_law", "power_law_constant"], plan={"x": 1e10}, backtest=False,
                         figures=False, **QUICK)
    assert several.evidence.law_check is None


def test_memo_command_line_switches_the_law_check(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    _bending_curve().to_csv(csv, index=False)
    code = main(["memo", str(csv), "--laws", "power_law", "--plan", "x=1e10", "--no-backtest", "--no-law-check",
                 "--chains", "2", "--warmup", "200", "--draws", "200", "--out", str(tmp_path / "m"), "--json",
                 "--no-progress"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["memo"]["evidence"]["law_check"] is None


def test_backtest_command_line_checks_the_other_laws_by_default_with_one_law(tmp_path, capsys):
    csv = tmp_path / "pilot.csv"
    pilot_chinchilla().to_csv(csv, index=False)
    code = main(["backtest", str(csv), "--law", "chinchilla", "--holdout-top", "20%", "--chains", "2",
                 "--warmup", "300", "--draws", "300", "--json", "--no-progress"])
    assert code in (0, 3)
    data = json.loads(capsys.readouterr().out)
    check = data["law_check"]
    assert check["named"] == ["chinchilla"] and check["alternatives"] == ["kaplan", "overtraining"]
    assert {r["law"]: r["named"] for r in data["summary"]} == {"chinchilla": True, "kaplan": False,
                                                              "overtraining": False}
    assert check["sentence"] and (check["prefers"] is None or check["prefers"] in check["alternatives"])
    assert all(np.isfinite(check[k]) for k in ("lead", "se"))
    assert main(["backtest", str(csv), "--law", "chinchilla", "--rollout", "2", "--law-check"]) == 2
    assert "--law-check is for" in capsys.readouterr().err
