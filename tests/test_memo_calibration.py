"""The memo states the extrapolation-calibrated band by default (issue 13, part 4, in the memo).

The memo's fits are calibrated by a compute rollout of their own runs (:func:`bayescale.calibrate`);
the plan's loss is the calibrated band, labelled, with the posterior predictive beside it; the
backtest calibrates each fold's fit on its own training rows and scores that band too, so the
coverage stated beside the headline is the coverage of the intervals the memo states.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import bayescale
from bayescale.backtest import backtest
from bayescale.data import pilot_chinchilla
from bayescale.errors import BayescaleError
from bayescale.memo import build_memo
from bayescale.memo.markdown import render_markdown

SHORT = dict(chains=2, warmup=200, draws=200, progress=False)
PLAN = {"N": 7e10, "D": 1.4e12}


@pytest.fixture(scope="module")
def memo():
    return build_memo(pilot_chinchilla(), ["chinchilla"], plan=PLAN, target=2.0, law_check=False, figures=False,
                      **SHORT)


def test_the_stated_band_is_the_calibrated_one_with_the_raw_band_beside_it(memo):
    p = memo.answer.plan
    assert p.calibration and "rollout" in p.calibration and p.loss_raw is not None
    # the calibration widens the band around (about) the same median
    assert p.loss.lower_90 <= p.loss_raw.lower_90 and p.loss.upper_90 >= p.loss_raw.upper_90
    assert p.loss.upper_90 - p.loss.lower_90 > p.loss_raw.upper_90 - p.loss_raw.lower_90
    assert abs(np.log(p.loss.median / p.loss_raw.median)) < 0.01
    assert 0 <= p.p_below_target <= 1 and 0 <= p.p_below_target_raw <= 1
    assert all(f.calibration is not None for f in memo.fits)
    text = render_markdown(memo)
    assert "calibrated for extrapolation (the stated band)" in text
    assert "the posterior predictive alone gives" in text
    assert "Basis: the calibrated predictive distribution" in text
    json.loads(json.dumps(memo.as_dict(), allow_nan=False))


def test_the_backtest_scores_the_calibrated_band_and_the_coverage_beside_the_headline_is_its(memo):
    (b,) = memo.evidence.backtest
    assert b.cal_coverage_90 is not None and 0 <= b.cal_coverage_50 <= b.cal_coverage_90 <= 1
    assert b.cal_mean_rel_width_90 > b.mean_rel_width_90       # wider than the raw band on the held-out runs
    (c,) = memo.evidence.coverage
    assert c.calibrated and c.coverage_90 == b.cal_coverage_90
    assert "calibrated 90% intervals covered" in " ".join(memo.answer.headline)
    assert "(calibrated: the stated band)" in render_markdown(memo)


def test_calibrate_false_states_the_posterior_predictive_alone():
    m = build_memo(pilot_chinchilla(), ["chinchilla"], plan=PLAN, law_check=False, calibrate=False,
                   figures=False, **SHORT)
    assert m.answer.plan.calibration is None and m.answer.plan.loss_raw is None
    assert m.evidence.backtest[0].cal_coverage_90 is None and not m.evidence.coverage[0].calibrated


def test_given_fits_bring_their_own_calibration_or_none():
    fit = bayescale.fit(pilot_chinchilla(), law="chinchilla", retry=False, **SHORT)
    plain = build_memo(fits=[fit], plan=PLAN, backtest=False, figures=False, progress=False)
    assert plain.answer.plan.calibration is None
    calibrated = bayescale.calibrate(fit)
    m = build_memo(fits=[calibrated], plan=PLAN, backtest=False, figures=False, progress=False)
    assert m.fits[0].calibration is calibrated.calibration          # used as given, not recomputed
    assert m.answer.plan.calibration == plain_label(calibrated)
    with pytest.raises(BayescaleError, match="calibrate must be"):
        build_memo(fits=[fit], plan=PLAN, calibrate="yes", progress=False)


def plain_label(fit) -> str:
    return bayescale.predict(fit, PLAN).attrs["calibration"]


def test_backtest_calibrate_scores_both_bands():
    bt = backtest(pilot_chinchilla(), "chinchilla", holdout_top="20%", calibrate=True, **SHORT)
    row = bt.summary.loc["chinchilla"]
    for col in ("cal_median_are", "cal_coverage_50", "cal_coverage_90", "cal_mean_rel_width_90", "cal_mean_lpd"):
        assert np.isfinite(row[col]), col
    assert {"cal_predicted", "cal_hit_90", "cal_lpd"} <= set(bt.table.columns)
    assert all(f.calibration is not None for f in bt.fits)


def test_a_calibration_on_few_rollout_runs_is_a_caveat():
    from dataclasses import replace

    fit = bayescale.calibrate(bayescale.fit(pilot_chinchilla(), law="chinchilla", retry=False, **SHORT))
    assert fit.calibration.n >= 9            # the pilot's rollout scores 24 runs: no caveat
    plain = build_memo(fits=[fit], plan=PLAN, backtest=False, figures=False, progress=False)
    assert not any("rests on only" in c for c in plain.answer.caveats)
    thin = replace(fit, calibration=replace(fit.calibration, n=3))
    m = build_memo(fits=[thin], plan=PLAN, backtest=False, figures=False, progress=False)
    assert any("rests on only 3 rollout runs" in c for c in m.answer.caveats)
