"""The memo's words: the decision sentence in human units, alarms in proportion, the backtest's
coverage beside the headline, the laws' disagreement, and text defects (issue 11).

The functions under test are in :mod:`bayescale.memo.words`; the memos are built on Epoch's data
(fixtures in conftest.py) as in tests/test_memo.py.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest

from bayescale.memo import build_memo, render_markdown
from bayescale.memo.fmt import g

PLAN = {"N": 7e10, "D": 1.4e12}


# --------------------------------------------------------------------------- issue 11: the decision, alarms, text


def test_epoch_memo_opens_with_a_decision_in_human_units(epoch_memo):
    d = epoch_memo.answer.decision
    assert d.action == "approve" and d.source == "plan"                 # P(within 5%) ~0.96: near-optimal
    assert d.allocation == {"N": 7e10, "D": 1.4e12}                      # exact values in the data, memo.json
    assert d.sentence.startswith("**Approve the plan**: 70B parameters on 1.4T tokens (5.9e23 FLOPs)")
    assert "with probability" in d.sentence and "target loss 1.95" in d.sentence
    assert d.basis.startswith("Basis: the posterior predictive distribution")
    md = render_markdown(epoch_memo)
    summary = md[md.index("## Summary"):md.index("## The question")]
    assert summary.index(d.sentence) < summary.index("- Predicted loss")   # the decision comes first
    assert "e10" not in summary and "e12" not in summary                 # counts in human units there
    assert "WAIC" not in md and "elpd_waic" not in summary and "elpd_loo" not in summary
    assert epoch_memo.title == "Decision memo: a run of 70B parameters on 1.4T tokens"
    assert "no backtest: how well such intervals extrapolate is unchecked" in summary
    # one recommended allocation, and which: the plan; the utility's choice is named as not recommended
    assert summary.count("Allocation to run") == 1 and "**the plan**" in summary
    assert "the memo recommends **the plan** as it stands, not this allocation" in md
    data = json.loads(json.dumps(epoch_memo.as_dict()))
    assert data["answer"]["decision"]["allocation"] == {"N": 7e10, "D": 1.4e12}


def test_off_optimal_plan_is_told_to_change_the_split(epoch_fit):
    """The same compute spent on 7B parameters and 14T tokens: far off the optimum, so 'change the split'."""
    memo = build_memo(fits=[epoch_fit], plan={"N": 7e9, "D": 1.4e13}, target=1.95, backtest=False,
                      figures=False, progress=False)
    d = memo.answer.decision
    assert memo.answer.plan_status == "off-optimal" and d.action == "change"
    c = memo.answer.choice
    assert d.allocation == {"N": c.N, "D": c.D} and d.source == "expected loss"
    assert d.sentence.startswith(f"**Change the split** to {g(c.N, 2).replace('e10', '')}") or \
        d.sentence.startswith("**Change the split** to ")
    assert "7B parameters on 14T tokens" in d.sentence and "off-optimal" in d.sentence
    assert 4e10 < c.N < 1.5e11                          # towards the compute-optimal 70B-ish, not 7B


def test_budget_only_says_what_to_run(epoch_fit):
    memo = build_memo(fits=[epoch_fit], budget=5.88e23, backtest=False, figures=False, progress=False)
    d = memo.answer.decision
    assert d.action == "run" and d.sentence.startswith("**Run ") and "parameters on" in d.sentence
    assert d.allocation["N"] == memo.answer.choice.N
    assert memo.title == "Decision memo: spending 5.9e23 FLOPs"


def test_human_units():
    from bayescale.memo.fmt import count, flops, quantity

    assert [count(v) for v in (7e10, 1.4e12, 5.66e10, 9.997e11, 3.363e7, 2500.0, 500)] == \
        ["70B", "1.4T", "56.6B", "1T", "33.6M", "2.5K", "500"]
    assert count(5.67e10, 2) == "57B" and flops(5.88e23) == "5.9e23 FLOPs"
    assert quantity("N", 7e10) == "70B parameters" and quantity("D", 1.4e12) == "1.4T tokens"
    assert quantity("M", 20.0) == "M = 20"


def _with(fit, **changes):
    return dataclasses.replace(fit, diagnostics=dataclasses.replace(fit.diagnostics, **changes))


def test_alarms_in_proportion(epoch_fit):
    """A marginal ESS miss of a backtest fit warns (no banner); a severe backtest failure gives an orange banner
    that says the answer stands; a failing fit behind the answer is the red banner; a failing fit with stacking
    weight 0 is sensitivity-only (orange)."""
    from bayescale.memo.checks import diagnostics_report

    d = epoch_fit.diagnostics
    marginal = _with(epoch_fit, ess_tail={**d.ess_tail, "beta": 378.0},
                     problems=("effective sample size below 400 for beta (bulk 2000, tail 378)",),
                     advice=("increase draws= (command line --draws), or tighten weakly identified priors",))
    severe = _with(epoch_fit, divergences=30, problems=("30 divergent transitions out of 4000",),
                   advice=("raise target_accept=",))
    r = diagnostics_report([epoch_fit], ["chinchilla"], None, [("chinchilla", marginal)], [1.0])
    assert [c.status for c in r.checks] == ["pass", "warn"] and r.banner is None
    assert r.answer_status == "pass" and r.status == "warn" and "marginal" in r.checks[1].reasons[0]
    r = diagnostics_report([epoch_fit], ["chinchilla"], None, [("chinchilla", severe)], [1.0])
    assert r.checks[1].status == "fail" and r.banner_kind == "warn" and not r.answer_failed
    assert r.banner.startswith("Supporting fits failed the diagnostics gate (backtest)") and "answer stands" in r.banner
    r = diagnostics_report([marginal], ["chinchilla"], None, [], [1.0])          # the same miss behind the answer
    assert r.checks[0].status == "fail" and r.banner_kind == "fail" and r.answer_failed
    r = diagnostics_report([epoch_fit, severe], ["a", "b"], None, [], [1.0, 0.0])
    assert [c.role for c in r.checks] == ["answer", "sensitivity"] and r.banner_kind == "warn"
    memo = build_memo(fits=[epoch_fit], plan=PLAN, backtest=False, figures=False, progress=False)
    assert not memo.failed and memo.diagnostics.banner is None


def test_backtest_coverage_caveat_follows_the_binomial():
    from bayescale.memo.evidence import binomial_cdf

    assert binomial_cdf(8, 8, 0.9) == 1.0
    assert binomial_cdf(26, 48, 0.9) < 1e-6                 # Epoch's 54%: clearly below nominal
    assert binomial_cdf(40, 48, 0.9) > 0.05                 # 83% of 48: within chance of 90%
    assert binomial_cdf(5, 8, 0.9) < 0.05 < binomial_cdf(6, 8, 0.9)
    assert abs(binomial_cdf(3, 10, 0.5) - 176 / 1024) < 1e-12


@pytest.fixture(scope="module")
def epoch_backtest_memo(epoch_runs, epoch_fit):
    """The session's Epoch fit with the memo's own backtest (one refit without the top 20% by C)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_memo(epoch_runs, fits=[epoch_fit], budget=5.88e23, plan=PLAN, target=1.95, progress=False)


def test_epoch_memo_states_its_backtest_coverage_beside_the_headline(epoch_backtest_memo):
    """Issue 11's acceptance on Epoch's runs: the 90% coverage of the backtest (about half) is stated beside the
    headline interval and named as a caveat, and the decision sentence says the intervals are too narrow."""
    m = epoch_backtest_memo
    cov = m.evidence.coverage[0]
    assert cov.name == "chinchilla" and cov.n_test == 48 and cov.coverage_90 < 0.75 and cov.below_nominal
    headline = m.answer.headline[0]
    assert headline.startswith("Predicted loss of the plan (70B parameters, 1.4T tokens, 5.9e23 FLOPs)")
    assert f"covered {cov.covered} of 48 held-out runs" in headline and "below the nominal 90%" in headline
    assert m.answer.caveats[0].startswith("**Miscalibration**")
    assert "too narrow" in m.answer.decision.sentence
    md = render_markdown(m)
    assert "(below 90%)**" in md                             # marked in the backtest table too
    assert m.diagnostics.banner is None or m.diagnostics.banner_kind == "warn"


def test_law_disagreement_is_stated_in_the_summary(epoch_memo, epoch_fit):
    """Two fits whose answers differ: stated in the Summary when it changes the decision; with enough weight on
    the dissenting fit the decision becomes 'pilots first'."""
    from bayescale.memo.words import decision_and_disagreement
    from bayescale.memo.model import Sensitivity

    m = epoch_memo
    rows = m.sensitivity.rows
    other = dataclasses.replace(rows[0], name="other", weight=0.5, p_below_target=0.9, p_within=0.1,
                                plan_loss=dataclasses.replace(rows[0].plan_loss, median=1.8))
    sens = Sensitivity(rows=(dataclasses.replace(rows[0], weight=0.5), other), summary=())
    weights = {"chinchilla": 0.5, "other": 0.5}
    d, text = decision_and_disagreement(m.question, m.answer.plan, m.answer.allocation, m.answer.choice, m.answer.regret, sens,
                        m.evidence, weights, [epoch_fit, epoch_fit], [0.5, 0.5], m.diagnostics, [])
    assert text.startswith("**The laws disagree on the decision**: other alone (stacking weight 0.50) predicts 1.8")
    assert "gives P(loss < 1.95) = 0.90" in text and "finds the plan's split off-optimal" in text
    assert d.action == "pilots" and d.sentence.startswith("**The data cannot settle this yet**")
    assert d.pilots and 1e22 < d.pilots[0]["C"] < 5.88e23 and "Run pilots first" in d.sentence
    low = Sensitivity(rows=(dataclasses.replace(rows[0], weight=0.99), dataclasses.replace(other, weight=0.01)),
                      summary=())
    d, text = decision_and_disagreement(m.question, m.answer.plan, m.answer.allocation, m.answer.choice, m.answer.regret, low,
                        m.evidence, {"chinchilla": 0.99, "other": 0.01}, [epoch_fit, epoch_fit], [0.99, 0.01],
                        m.diagnostics, [])
    assert d.action == "approve" and text is not None        # stated, but the data settle it


def test_memo_text_defects_are_fixed(epoch_memo, epoch_fit):
    from bayescale.memo.words import target_text
    from bayescale.memo.model import Estimate

    md = render_markdown(epoch_memo)
    assert "in most draws" not in md
    p = epoch_memo.answer.allocation.p_outside_domain
    caveat = [c for c in epoch_memo.answer.caveats if "outside the fitted runs' range" in c]
    assert caveat and f"{100 * p:.0f}% of the posterior draws" in caveat[0]
    assert f"in {100 * p:.0f}% of the draws" in md                          # the body says the same number
    # a target interval spanning decades is explained, not just printed
    wide = Estimate(9.9e23, 4e23, 3.7e24, 1.5e23, 1.6e26)
    text = target_text(epoch_memo.question, wide, 0.98, [epoch_fit], [1.0])
    assert text.startswith("Reaching loss 1.95 takes about 9.9e23 FLOPs with a compute-optimal split")
    assert "3.0 orders of magnitude" in text and "irreducible loss (E" in text and "order of magnitude" in text
    assert "in 2% of the posterior no compute reaches it" in text
