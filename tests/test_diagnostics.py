"""The diagnostics gate: our numpy R-hat/ESS agree with ArviZ's; the gate trips when it should."""

from __future__ import annotations

import numpy as np
import pytest

from bayescale.diagnostics import GATE, diagnose, ess_bulk, ess_tail, rank_rhat


def ar1_chains(rho: float, offset: float, seed: int, shape=(4, 1000)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(shape)
    e = rng.normal(size=shape)
    for t in range(1, shape[1]):
        x[:, t] = rho * x[:, t - 1] + e[:, t]
    x[-1] += offset          # one chain shifted: R-hat must see it
    return x


@pytest.mark.parametrize("rho,offset", [(0.0, 0.0), (0.5, 0.0), (0.9, 0.5), (0.97, 1.0)])
def test_matches_arviz(rho, offset):
    import arviz as az

    x = ar1_chains(rho, offset, seed=int(100 * rho))
    # float64 input: the same algorithm as ArviZ, so agreement to rounding
    assert rank_rhat(x) == pytest.approx(float(az.rhat(x, method="rank")), rel=1e-10)
    assert ess_bulk(x) == pytest.approx(float(az.ess(x, method="bulk")), rel=1e-8)
    assert ess_tail(x) == pytest.approx(float(az.ess(x, method="tail")), rel=1e-8)


def test_gate_trips_on_each_problem():
    good = {"a": ar1_chains(0.0, 0.0, 1)}
    stats = {"diverging": np.zeros((4, 1000), bool), "tree_depth": np.full((4, 1000), 3)}
    assert diagnose(good, stats, ["a"], 10).passed
    bad_mixing = {"a": ar1_chains(0.97, 3.0, 2)}
    d = diagnose(bad_mixing, stats, ["a"], 10)
    assert not d.passed
    assert any("R-hat above 1.01 for a" in p for p in d.problems)
    assert any("effective sample size below 400" in p for p in d.problems)
    diverged = dict(stats, diverging=np.eye(4, 1000, dtype=bool))
    d = diagnose(good, diverged, ["a"], 10)
    assert d.problems == ("4 divergent transitions out of 4000",)
    assert "target_accept=" in d.advice[0] and "--target-accept" in d.advice[0]   # Python and CLI users
    assert "student_t_log" in d.advice[0]
    on_t = diagnose(good, diverged, ["a"], 10, noise="student_t_log")
    assert "student_t_log" not in on_t.advice[0] and "outlying runs" in on_t.advice[0]   # it already uses it
    saturated = dict(stats, tree_depth=np.full((4, 1000), 10))
    d = diagnose(good, saturated, ["a"], 10)
    assert "tree depth 10 reached in 4000 of 4000 draws" in d.problems[0]
    assert GATE["r_hat_max"] == 1.01


def test_average_ranks_match_scipy_including_ties():
    from scipy.stats import rankdata

    from bayescale.diagnostics import _average_ranks

    rng = np.random.default_rng(0)
    for x in (rng.normal(size=(4, 100)), rng.integers(0, 5, size=(4, 50)).astype(float), np.ones((2, 3))):
        assert np.array_equal(_average_ranks(x), rankdata(x, method="average"))


def test_rank_normal_scores_match_scipy_including_ties():
    from scipy.special import ndtri

    from bayescale.diagnostics import _average_ranks, _z

    rng = np.random.default_rng(1)
    for x in (rng.normal(size=(4, 500)), rng.integers(0, 7, size=(2, 300)).astype(float)):
        expected = ndtri((_average_ranks(x).reshape(x.shape) - 0.375) / (x.size + 0.25))
        assert np.allclose(_z(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_ess_matches_arviz_on_awkward_chains(seed):
    # antithetic chains (negative lag-1 correlation: ESS above the draw count), short chains, one chain
    from arviz.stats.diagnostics import _ess as arviz_ess

    from bayescale.diagnostics import _ess

    rng = np.random.default_rng(seed)
    shape = [(4, 1000), (2, 7), (1, 400), (4, 5), (3, 60), (4, 2000)][seed]
    rho = [-0.6, 0.3, 0.8, 0.0, -0.2, 0.95][seed]
    x = np.zeros(shape)
    e = rng.normal(size=shape)
    for t in range(1, shape[1]):
        x[:, t] = rho * x[:, t - 1] + e[:, t]
    assert _ess(x) == pytest.approx(arviz_ess(x), rel=1e-9)


def test_a_failed_fit_of_dense_checkpoints_is_advised_to_thin_them():
    """The advice to thin is added only when the gate failed and a run kept more than 8 checkpoints."""
    from dataclasses import replace

    from bayescale.diagnostics import THIN_ADVICE, Diagnostics, structure_advice
    from bayescale.evidence.structure import RunStructure

    failed = Diagnostics({"a": 1.2}, {"a": 20.0}, {"a": 20.0}, 0, 4000, 0, 10,
                         ("R-hat above 1.01 for a (1.200)",), ("run longer",))
    assert not failed.passed
    runs = tuple(["r1"] * 40 + ["r2"] * 40)

    def structure(checkpoints="all", ids=runs):
        return RunStructure(run="model", groups=(), checkpoints=checkpoints, rows_given=len(ids),
                            rows_kept=len(ids), n_runs=len(set(ids)), n_groups={}, run_ids=ids)

    advised = structure_advice(failed, structure())
    assert advised.advice == ("run longer", THIN_ADVICE) and "--checkpoints logspaced:8" in THIN_ADVICE
    assert structure_advice(advised, structure()) == advised                      # once
    assert structure_advice(failed, structure("logspaced:8")) == failed          # already thinned
    assert structure_advice(failed, structure(ids=tuple(["r1"] * 8 + ["r2"] * 8))) == failed   # few per run
    assert structure_advice(failed, None) == failed                              # no run column
    passed = replace(failed, r_hat={"a": 1.0}, ess_bulk={"a": 4000.0}, ess_tail={"a": 4000.0}, problems=())
    assert passed.passed and structure_advice(passed, structure()) == passed
