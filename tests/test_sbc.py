"""Simulation-based calibration of the law cards (Talts et al. 2018).

The fast tests check the harness itself.  The slow test (run by ``.ci/run``)
runs 100 replications per card at the default fit settings (4 x (1000 + 1000),
one automatic refit on a failed gate) on the card's catalogue design
(:func:`bayescale.inference.sbc.catalogue_design`).

Validity: the cards scale their priors by reference points.  The inputs' geometric
means are functions of the fixed design, so they are constants here; ``loss_ref``
would be the geometric mean of the simulated losses, i.e. data-dependent, so the
harness fixes it (``reference={"loss": 3.0}``) in the simulation and in every fit:
the model tested is then a fixed-prior model, the one a user gets with
``reference=``; the default empirical-Bayes choice differs from it only by where
the prior on the loss at the data's centre is centred.

Thresholds, with the reasons:

* gate pass rate >= 0.95: the issue's acceptance level; a sampler that cannot sample a
  card's own prior predictive data is not usable on real data either.
* rank uniformity: Pearson's chi-square over 10 bins of the 100 possible ranks (99
  thinned draws), p >= 0.001 for every reported parameter.  About 50 parameter tests
  run over the catalogue, so an exact sampler fails one of them with probability
  ~5%; the seeds are fixed, so a pass is reproducible, and a posterior that is
  biased or over/under-dispersed by the amounts the issue measured (p ~ 0.001-0.005
  at 1000 replications) is caught mostly by the tail check below.
* tails: the truth falls below (above) all 99 draws with probability 1/100 per
  replication for an exact sampler, so the count over 100 replications is
  Binomial(100, 0.01) per side and parameter; P(count >= 6) = 0.0005, so a count of
  6 or more on either side fails (expected 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale.inference.sbc import catalogue_design, rank_uniformity, sbc, simulate
from bayescale.model import reference_points

REPS = 100
P_MIN = 0.001
TAIL_MAX = 5


def test_rank_uniformity_detects_non_uniform_ranks():
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 100, size=1000)
    assert rank_uniformity(uniform, 99, 10) > 0.01
    narrow = np.clip(rng.normal(50, 15, size=1000).round(), 0, 99)   # an over-dispersed posterior
    assert rank_uniformity(narrow, 99, 10) < 1e-6


def test_simulate_draws_from_the_prior_predictive():
    law = bayescale.load_law("chinchilla")
    design = catalogue_design("chinchilla")
    inputs = {k: design[k].to_numpy(float) for k in law.input_names}
    refs = reference_points(law, inputs, np.ones(1))
    refs["loss_ref"] = 3.0
    rng = np.random.default_rng(0)
    draws = [simulate(law, law.noise, inputs, refs, rng) for _ in range(400)]
    truth = pd.DataFrame([t for t, _ in draws])
    # the derived parameters follow from the sampled ones
    np.testing.assert_allclose(truth["E"], truth["f_E"] * truth["L_c"], rtol=1e-12)
    # prior moments of the sampled coordinates: Beta(1.5, 1.5) has mean 0.5, sd 0.289; 400 draws
    assert abs(truth["f_E"].mean() - 0.5) < 4 * 0.289 / 20
    assert abs(np.log(truth["L_c"] / 3.0).std() - 1.0) < 0.15
    ys = np.stack([y for _, y in draws])
    assert ys.shape == (400, len(design)) and np.all(np.isfinite(ys)) and np.all(ys > 0)


def test_sbc_harness_runs_and_ranks_are_in_range():
    r = sbc("power_law", catalogue_design("power_law"), reps=3, seed=0, chains=2, warmup=200, draws=200)
    assert len(r.table) == 3 and set(r.params) == {"A", "alpha", "sigma"}
    for p in r.params:
        assert r.table[f"rank_{p}"].between(0, r.thin).all()
    assert r.expected_outside() == pytest.approx(3 / 100)
    assert "SBC of power_law" in str(r)


def test_sbc_says_how_a_batch_sbc_retried():
    from bayescale.inference.sbc import SBC

    lock, nuts = "bayescale.inference.lockstep", "bayescale.nuts"
    t = pd.DataFrame({"passed": [True] * 4, "first_passed": [True, False, False, True], "rank_a": [1, 2, 3, 4],
                      "sampler": [lock, lock, nuts, lock]})
    assert "retried 2: 1 in the batch (3x steps), 1 by NUTS" in str(SBC("x", "n", 99, t, ("a",), ()))
    assert "retried" not in str(SBC("x", "n", 99, t.assign(sampler=nuts), ("a",), ()))      # a NUTS SBC


def test_sbc_failures_name_each_criterion_that_fails():
    from bayescale.inference.sbc import SBC

    rng = np.random.default_rng(0)
    good = pd.DataFrame({"passed": [True] * 100, "rank_a": rng.integers(0, 100, 100)})
    assert SBC("x", "n", 99, good, ("a",), ()).failures() == []
    skewed = good.assign(passed=[False] * 6 + [True] * 94, rank_a=np.r_[np.zeros(30, int), rng.integers(0, 100, 70)])
    msgs = SBC("x", "n", 99, skewed, ("a",), ("R-hat",)).failures()
    assert len(msgs) == 3 and "pass rate 0.94" in msgs[0] and "rank uniformity" in msgs[1] and "(30, " in msgs[2]


#: Cards that do not yet meet the criteria, with what was measured (100 replications, seed 1, the
#: automatic refit on): they run and report, as expected failures, until their coordinates are fixed.
#: Measured passing (100 replications, seed 1): data_constrained gate 1.00 (first attempt 0.92), min
#: rank p 0.34; sigmoid_metric gate 0.99 (first attempt 0.55), min rank p 0.24; at most 2 of 100
#: truths beyond all draws per side and parameter in both; bnsl1 gate 1.00 (first attempt 0.55), min
#: rank p 0.14 (c1), at most 3 per side (~7 min on 2 busy cores); bnsl2 gate 0.98 (first attempt
#: 0.68), min rank p 0.05 (b), at most 5 per side (c0 and b above all draws 5 times each: at the
#: limit; ~15 min).
KNOWN_FAILING: dict = {}
#: Too slow to run as expected failures in CI.
NOT_RUN: dict = {}


def _card(name):
    if name in NOT_RUN:
        return pytest.param(name, marks=pytest.mark.xfail(reason=NOT_RUN[name], run=False))
    if name in KNOWN_FAILING:
        return pytest.param(name, marks=pytest.mark.xfail(reason=KNOWN_FAILING[name], strict=False))
    return name


@pytest.mark.slow
@pytest.mark.parametrize("card", [_card(c) for c in (
    "power_law", "power_law_constant", "chinchilla", "kaplan", "overtraining", "data_constrained",
    "downstream_error", "sigmoid_metric", "bnsl1", "bnsl2")])
def test_card_passes_simulation_based_calibration(card):
    r = sbc(card, catalogue_design(card), reps=REPS, seed=1)
    print(r)
    failures = r.failures(min_pass=0.95, p_min=P_MIN, tail_max=TAIL_MAX)
    assert not failures, f"{card}: " + "; ".join(failures)


@pytest.mark.slow
@pytest.mark.parametrize("card", ["power_law", "power_law_constant", "chinchilla", "kaplan", "overtraining",
                                  "data_constrained", "downstream_error", "sigmoid_metric", "bnsl1", "bnsl2"])
def test_batch_sampler_passes_simulation_based_calibration(card):
    """The same SBC, thresholds and designs, with every replication fitted in one fit_many call (the lockstep
    batch sampler at its defaults, one batched retry of the fits that fail the gate)."""
    r = sbc(card, catalogue_design(card), reps=REPS, seed=1, sampler="batch")
    print(r)
    failures = r.failures(min_pass=0.95, p_min=P_MIN, tail_max=TAIL_MAX)
    assert not failures, f"{card}: " + "; ".join(failures)
