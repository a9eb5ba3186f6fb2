"""The answer of a memo, read from the stacked posterior, and its sensitivity to each fit.

The plan's loss (posterior predictive, 50% and 90% intervals, P(loss < target)), the
compute-optimal allocation at the budget, the allocation chosen under the utility, the plan's
regret, the compute needed to reach the target; then the same answers under each fit alone, and,
for simulated data, the generating law's values of the same quantities.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ._common import _allocatable, _caught, _estimate
from .fmt import g, interval, pct, sentence
from .words import NEAR_OPTIMAL, coverage_text, decision_and_disagreement, headline, target_text
from .model import AllocationAnswer, Answer, Estimate, PlanAnswer, Sensitivity, SensitivityRow, TruthRow

__all__ = ["_answer", "_plan_grid", "_sensitivity", "_truth_rows"]


def _plan_grid(fits, plan) -> dict:
    """The plan's inputs for every law (derived inputs filled in, e.g. D from C and N)."""
    from ..runs import prepare_grid

    out = dict(plan)
    for f in fits:
        grid = prepare_grid(pd.DataFrame([plan]), f.law)
        for k in grid.columns:
            out.setdefault(k, float(grid[k].iloc[0]))
    if {"N", "M"} <= set(out) and "D" not in out:      # tokens per parameter given: the tokens follow
        out["D"] = out["M"] * out["N"]
    cost = next((f.law for f in fits if f.law.cost is not None), None)
    if cost is not None and "C" not in out:
        out["C"] = float(np.asarray(cost.compute({k: np.array([out[k]]) for k in cost.input_names}))[0])
    return out


def _predict_plan(fits, weights, plan, target) -> tuple[PlanAnswer, list[str]]:
    from ..predict import predict

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = predict(fits, pd.DataFrame([plan]), prob=(0.5, 0.9), target=target, weights=weights,
                    warn_beyond=math.inf)
    r = p.iloc[0]
    loss = _row_estimate(r, "pred_")
    law = _row_estimate(r, "law_")
    inputs = {k: float(r[k]) if k in r.index else float(plan[k]) for k in plan}
    below = None if target is None else float(r["p_below_target"])
    extra = {}
    if "cal_median" in p.columns:           # the calibrated band is the default; the raw one stays beside it
        extra = dict(loss_raw=loss, p_below_target_raw=below, calibration=str(p.attrs.get("calibration", "")))
        loss = _row_estimate(r, "cal_")
        below = None if target is None else float(r["cal_p_below_target"])
    return PlanAnswer(inputs=inputs, compute=float(r["C"]) if "C" in p.columns else None,
                      extrapolation=float(r["extrapolation"]), loss=loss, law_loss=law,
                      p_below_target=below, **extra), _caught(caught)


def _row_estimate(row, prefix: str) -> Estimate:
    """An Estimate from a predict() row: ``prefix`` "pred_" (predictive band), "law_" (law band) or "cal_"
    (calibrated band)."""
    median = row[{"pred_": "pred_median", "cal_": "cal_median"}.get(prefix, "median")]
    return Estimate(float(median), *(float(row[f"{prefix}{side}_{p}"]) for p in (50, 90)
                                     for side in ("lower", "upper")))


def _allocation(fits, weights, budget) -> tuple[AllocationAnswer, list[str]]:
    from ..mixture import probability
    from ..optimal import optimal

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = optimal(fits, [budget], weights=weights)
    w = a.weights
    exps = (None, None)
    if a.exponent_a is not None:
        exps = (_estimate(a.exponent_a, w), _estimate(a.exponent_b, w))
    ans = AllocationAnswer(
        budget=float(budget), N=_estimate(a.N[:, 0], w), D=_estimate(a.D[:, 0], w),
        ratio=_estimate(a.ratio[:, 0], w), loss=_estimate(a.loss[:, 0], w), exponent_a=exps[0],
        exponent_b=exps[1], p_outside_domain=float(probability(w, a.outside_domain[:, 0])),
        p_at_bound=float(probability(w, a.at_n_bound[:, 0] | a.at_token_cap[:, 0])))
    return ans, _caught(caught)


def _plan_verdict(regret, alloc: AllocationAnswer | None, plan_inputs: dict) -> tuple[str, str]:
    ratio = plan_inputs["D"] / plan_inputs["N"]
    near = regret.p_within >= NEAR_OPTIMAL
    status = "near-optimal" if near else "off-optimal"
    parts = [f"The plan spends its compute at D/N = {g(ratio, 3)} tokens per parameter; the compute-optimal "
             f"D*/N* at the plan's compute has posterior median {g(regret.optimal_ratio_median, 3)}."]
    if alloc is not None and math.isclose(regret.compute, alloc.budget, rel_tol=0.01):
        where = "inside" if alloc.ratio.contains(ratio, 90) else "OUTSIDE"
        parts.append(f"The plan's D/N lies {where} the 90% interval of D*/N* ({interval(alloc.ratio, 90, 3)}).")
    parts.append(f"Loss regret against each posterior draw's own optimum at the same compute: mean "
                 f"{g(regret.regret_mean, 2)}, 95% quantile {g(regret.regret_upper_90, 2)} (loss units). "
                 f"The plan reaches the loss an optimal allocation would reach with "
                 f"{100 * regret.efficiency_median:.1f}% of its compute (median; 5% quantile "
                 f"{100 * regret.efficiency_lower_90:.1f}%); P(within {100 * regret.within:g}% of "
                 f"compute-optimal) = {regret.p_within:.2f}.")
    head = "**near-optimal**: " if near else "**FLAGGED, off-optimal**: "
    return status, head + " ".join(parts)


def _target_compute(fits, weights, target) -> tuple[Estimate | None, float | None, list[str]]:
    from ..decision import compute_for_loss

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        C, _, _, w = compute_for_loss(fits, target, weights=weights)
    ok = np.isfinite(C)
    reach = float(w[ok].sum())
    if not ok.any():
        return None, reach, _caught(caught)
    return _estimate(C[ok], w[ok] / w[ok].sum()), reach, _caught(caught)


def _sensitivity(fits, names, weights, plan, target, budget, regret_ok, allocatable) -> Sensitivity:
    from ..decision import plan_regret
    from ..optimal import optimal
    from ..predict import predict

    rows = []
    for f, name, w in zip(fits, names, weights):
        plan_loss = p_below = ratio = n_opt = l_opt = regret = p_within = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if plan is not None:
                p = predict(f, pd.DataFrame([plan]), prob=(0.5, 0.9), target=target, warn_beyond=math.inf).iloc[0]
                cal = "cal_median" in p.index     # the band the answer states: calibrated when the fit is
                plan_loss = _row_estimate(p, "cal_" if cal else "pred_")
                p_below = None if target is None else float(p["cal_p_below_target" if cal else "p_below_target"])
            if allocatable and budget is not None:
                a = optimal(f, [budget])
                ratio, n_opt, l_opt = _estimate(a.ratio[:, 0]), _estimate(a.N[:, 0]), _estimate(a.loss[:, 0])
            if regret_ok:
                r = plan_regret(f, plan["N"], plan["D"])
                regret, p_within = r.regret_mean, r.p_within
        rows.append(SensitivityRow(name=name, law=f.law.name, noise=f.noise, weight=float(w), plan_loss=plan_loss,
                                   p_below_target=p_below, ratio=ratio, N_opt=n_opt, loss_opt=l_opt,
                                   regret_mean=regret, p_within=p_within))
    summary = []
    if len(rows) > 1:
        for label, get, fmt in (("the plan's predicted median loss", lambda r: r.plan_loss, "{:.4g}"),
                                ("the median of D*/N* at the budget", lambda r: r.ratio, "{:.3g}")):
            have = [(r, get(r)) for r in rows if get(r) is not None]
            if len(have) < 2:
                continue
            lo = min(have, key=lambda t: t[1].median)
            hi = max(have, key=lambda t: t[1].median)
            width = float(np.median([e.upper_90 - e.lower_90 for _, e in have]))
            spread = hi[1].median - lo[1].median
            moves = ("more than" if spread > width else "less than")
            summary.append(f"Across the {len(have)} fits, {label} ranges from {fmt.format(lo[1].median)} "
                           f"({lo[0].name}) to {fmt.format(hi[1].median)} ({hi[0].name}): the choice of law / "
                           f"noise model moves it {moves} the typical 90% interval within one fit "
                           f"({fmt.format(width)} wide).")
        top = max(rows, key=lambda r: r.weight)
        summary.append(f"The stacked answer puts weight {top.weight:.2f} on {top.name}.")
    else:
        summary.append("One fit only: the answer is conditional on that law and noise model; fit competing "
                       "laws (laws=, command line --laws) or noise models (noise=, --noise) to see how much they move "
                       "it.")
    return Sensitivity(rows=tuple(rows), summary=tuple(summary))


def _truth_rows(truth, fits, plan, budget) -> list[TruthRow]:
    """Generating values of derived quantities, for simulated data (see ``truth``)."""
    from ..optimal import allocate, optimal
    from ..predict import predict

    rows = []
    for f in fits:
        params = (truth or {}).get(f.law.name)
        if not params or set(f.law.param_names) - set(params):
            continue
        natural = {k: np.array([float(params[k])]) for k in f.law.param_names}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if plan is not None and set(f.law.input_names) <= set(plan):
                true = float(np.asarray(f.law.mean(natural, {k: np.array([plan[k]]) for k in f.law.input_names},
                                                   xp="numpy")).reshape(-1)[0])
                p = predict(f, pd.DataFrame([plan]), prob=(0.5, 0.9), warn_beyond=math.inf).iloc[0]
                rows.append(TruthRow(f"{f.law.name}: law value at the plan", _row_estimate(p, "law_"), true))
            if budget is not None and _allocatable([f]):
                t = allocate(f.law, natural, [budget])
                a = optimal(f, [budget])
                rows.append(TruthRow(f"{f.law.name}: D*/N* at the budget", _estimate(a.ratio[:, 0]),
                                     float(t["D"][0, 0] / t["N"][0, 0])))
                rows.append(TruthRow(f"{f.law.name}: N* at the budget", _estimate(a.N[:, 0]), float(t["N"][0, 0])))
    return rows


def _answer(fits, weights, names, plan_inputs, question, evidence, within: float, notes, sens, report) -> Answer:
    """Every answer to ``question`` from the mixture of ``fits`` with ``weights``."""
    from ..decision import choose_allocation, plan_regret

    budget, target = question.budget, question.target
    caveats = list(notes)
    plan_ans = alloc = choice = regret = status = verdict = target_c = reach = None
    if plan_inputs is not None:
        plan_ans, msgs = _predict_plan(fits, weights, plan_inputs, target)
        caveats += msgs
    if _allocatable(fits) and budget is not None:
        alloc, _ = _allocation(fits, weights, budget)     # its "outside the runs" warning is restated below
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            choice = choose_allocation(fits, budget, utility=question.utility, q=question.q, weights=weights)
        if plan_inputs is not None and {"N", "D"} <= set(plan_inputs):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                regret = plan_regret(fits, plan_inputs["N"], plan_inputs["D"], within=within, weights=weights)
            status, verdict = _plan_verdict(regret, alloc, plan_inputs)
        if target is not None:   # its warning (unreachable in some draws) is stated in the headline
            target_c, reach, _ = _target_compute(fits, weights, target)
    elif not _allocatable(fits):
        caveats.append("No compute-optimal allocation: it needs laws of N and D with a compute cost (fitted: "
                       + ", ".join(f.law.name for f in fits) + ")")
    weights_by_name = dict(zip(names, weights))
    coverage, cov_caveats = coverage_text(evidence, weights_by_name)
    if plan_ans is not None and not evidence.backtest:
        coverage = "no backtest: how well such intervals extrapolate is unchecked"
    far = plan_ans is not None and plan_ans.extrapolation > 10
    if far:
        caveats.insert(0, f"The plan lies {g(plan_ans.extrapolation, 3)}x beyond the largest fitted run (in its "
                          "largest input or compute): the answer rests on the law's form holding that far out, "
                          "which no run can confirm; the backtest shows how well the laws extrapolated over a "
                          "much shorter distance.")
    caveats = cov_caveats + caveats
    if alloc is not None and alloc.p_outside_domain > 0.5:
        caveats.append(f"The compute-optimal N* or D* lies outside the fitted runs' range in "
                       f"{pct(alloc.p_outside_domain)} of the posterior draws: the allocation extrapolates the law.")
    decision, disagreement = decision_and_disagreement(question, plan_ans, alloc, choice, regret, sens, evidence,
                                                       weights_by_name, fits, weights, report, cov_caveats)
    target_words = target_text(question, target_c, reach, fits, weights)
    lines = headline(question, evidence, plan_ans, alloc, choice, regret, status, target_words, coverage,
                     decision, disagreement, report)
    return Answer(plan=plan_ans, allocation=alloc, choice=choice, regret=regret, target_compute=target_c,
                  target_reachable=reach, plan_status=status, plan_verdict=verdict, headline=tuple(lines),
                  caveats=tuple(dict.fromkeys(sentence(c) for c in caveats)), decision=decision,
                  disagreement=disagreement, target_text=target_words, coverage_text=coverage)
