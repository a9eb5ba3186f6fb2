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
from .evidence import ANSWER_WEIGHT
from .fmt import count, flops, g, interval, likelihood_words, med_int, pct, quantity, sentence
from .model import AllocationAnswer, Answer, Decision, Estimate, PlanAnswer, Sensitivity, SensitivityRow, TruthRow

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


NEAR_OPTIMAL = 0.5        # the plan is near-optimal when P(within 5% of compute-optimal) >= this
DISSENT_P = 0.25          # P(target) under one fit alone this far from the stacked one changes the decision
DISSENT_WEIGHT = 0.2      # dissenting fits with this much stacking weight: the data cannot settle the decision


def _utility_words(utility: str, q: float) -> str:
    return {"mean": "expected loss", "quantile": f"{100 * q:g}% quantile of the loss",
            "cvar": f"expected loss in the worst {100 * (1 - q):g}% of outcomes (CVaR)"}[utility]


def _split(N, D) -> str:
    return f"{count(N, 2)} parameters on {count(D, 2)} tokens"


def _coverage_text(evidence, weights_by_name) -> tuple[str | None, list[str]]:
    """The backtest coverage of the fits carrying the answer, for beside the headline interval; and caveats."""
    cov = [c for c in evidence.coverage if c.weight >= ANSWER_WEIGHT]
    if not evidence.coverage:
        return None, []
    if not cov:
        return None, []
    main = [c for c in cov if c.weight >= 0.1] or [max(cov, key=lambda c: c.weight)]
    parts, caveats = [], []
    for c in main:
        text = f"{c.name}'s {'calibrated ' if c.calibrated else ''}90% intervals covered {c.covered} of {c.n_test} held-out runs"
        text += f", {pct(c.coverage_90)}" if c.covered != c.n_test else ""
        if c.below_nominal:
            text += " — **below the nominal 90%: treat the interval as too narrow**"
            caveats.append(f"**Miscalibration**: in the backtest (the largest runs held out and predicted), "
                           f"{c.name}'s {'calibrated ' if c.calibrated else ''}90% predictive intervals covered only {c.covered} of {c.n_test} held-out "
                           f"runs ({pct(c.coverage_90)}; its 50% intervals {pct(c.coverage_50)}); with calibrated 90% "
                           f"intervals that few would be covered with probability "
                           f"{'below 0.001' if c.p_value < 0.001 else f'{c.p_value:.2g}'}. The stated intervals are too "
                           f"narrow for extrapolation, and the plan lies further out than the backtest did")
        parts.append(text)
    return "in the backtest, " + "; ".join(parts), caveats


def _target_text(question, target_c, reach, fits, weights) -> str | None:
    """How much compute an optimal split needs to reach the target, with a word on a wide interval."""
    if target_c is None and reach is None:
        return None
    t = g(question.target)
    if target_c is None:
        return (f"No compute reaches loss {t} under the posterior: it is below the irreducible loss in every "
                "draw.")
    text = (f"Reaching loss {t} takes about {flops(target_c.median)} with a compute-optimal split (median; "
            f"90% interval {g(target_c.lower_90, 2)} to {g(target_c.upper_90, 2)} FLOPs)")
    if reach < 0.995:
        text += f"; in {pct(1 - reach)} of the posterior no compute reaches it"
    decades = math.log10(target_c.upper_90 / target_c.lower_90) if target_c.lower_90 > 0 else math.inf
    if decades >= 1:
        top = max(zip(fits, weights), key=lambda t: t[1])[0]
        name = top.law.irreducible
        why = ("the law flattens there, so small changes in its parameters move the compute a lot")
        if name and name in top.samples.posterior:
            e = float(np.median(top.draws(name)))
            if e < question.target:
                why = (f"the target lies {100 * (question.target - e) / question.target:.0f}% above the irreducible "
                       f"loss ({name}, posterior median {g(e)}), where each further step down in loss costs ever "
                       "more compute")
        text += (f". The interval spans {decades:.1f} orders of magnitude: {why}; read this number as an order of "
                 "magnitude, not a budget")
    return text + "."


def laws_words(evidence) -> str | None:
    """The PSIS-LOO comparison in plain words, with its numbers: which law predicts the runs better, how clearly."""
    scores = evidence.scores
    if len(scores) < 2:
        return None
    best, nxt = scores[0], scores[1]
    diff, dse = -nxt.elpd_diff, nxt.dse
    z = diff / dse if dse > 0 else math.inf
    if diff >= 4 and z >= 2:
        how = f"{best.name} predicts left-out runs clearly better than {nxt.name}"
    else:
        how = (f"{best.name} and {nxt.name} predict left-out runs about equally well (no clear difference: the "
               "answer mixes them)")
    weights = ", ".join(f"{s.name} {s.weight:.2f}" for s in scores)
    return (f"Laws: {how} (PSIS-LOO: expected log predictive density higher by {diff:.1f} ± {dse:.1f}); "
            f"stacking weights {weights}.")


def _dissent(sens, stacked_p, stacked_near, recommended, target) -> list[tuple]:
    """Fits alone whose answer would change the decision: (row, what differs)."""
    out = []
    for r in sens.rows:
        what = []
        if target is not None and r.p_below_target is not None and stacked_p is not None \
                and abs(r.p_below_target - stacked_p) > DISSENT_P:
            what.append(f"gives P(loss < {g(target)}) = {r.p_below_target:.2f}")
        if stacked_near is not None and r.p_within is not None and (r.p_within >= NEAR_OPTIMAL) != stacked_near:
            what.append("finds the plan's split " + ("near-optimal" if r.p_within >= NEAR_OPTIMAL else "off-optimal"))
        elif stacked_near is None and recommended is not None and r.N_opt is not None \
                and not 1 / 1.5 <= r.N_opt.median / recommended["N"] <= 1.5:
            what.append(f"puts the compute-optimal N* at {count(r.N_opt.median, 2)} parameters")
        if what:
            out.append((r, what))
    return out


def _pilots(fits, plan, recommended) -> list[dict]:
    """Suggested pilots: runs at 10x the largest fitted run's compute, along the plan's (or the
    recommended) tokens per parameter, where the laws' predictions begin to part."""
    from ..optimal import allocation_law_inputs

    law = next((f for f in fits if f.law.cost is not None), None)
    target = plan if plan is not None and {"N", "D"} <= set(plan) else recommended
    if law is None or target is None:
        return []
    try:
        allocation_law_inputs(law.law)
    except Exception:
        return []
    c_max = float(np.max(law.law.compute(law.runs.input_arrays())))
    k = float(np.asarray(law.law.compute({"N": np.array([1e9]), "D": np.array([1e10]), "M": np.array([10.0]),
                                          "U": np.array([1e10])}))[0] / 1e19)
    ratio = target["D"] / target["N"]
    c = min(10 * c_max, k * target["N"] * target["D"] / 3)
    n = math.sqrt(c / (k * ratio))
    return [{"N": n, "D": ratio * n, "C": c}]


def _decision(question, plan_ans, alloc, choice, regret, sens, evidence, weights_by_name, fits, weights,
              report, coverage_caveats) -> tuple:
    """The opening sentence, its basis, the one recommended allocation; and the disagreement of the laws."""
    target = question.target
    p = None if plan_ans is None else plan_ans.p_below_target
    near = None if regret is None else regret.p_within >= NEAR_OPTIMAL
    plan = question.plan
    recommended, source = None, None
    if regret is not None and near:
        recommended, source = {"N": regret.N, "D": regret.D}, "plan"
    elif choice is not None:
        recommended, source = {"N": float(choice.N), "D": float(choice.D)}, _utility_words(choice.utility, choice.q)
    dissent = _dissent(sens, p, near, recommended, target) if len(sens.rows) > 1 else []
    disagreement = None
    if dissent:
        parts = []
        for r, what in dissent:
            if r.plan_loss is not None:
                what = [f"predicts {g(r.plan_loss.median)} (90% interval {interval(r.plan_loss, 90)})"] + what
            said = ", ".join(what[:-1]) + (" and " if len(what) > 1 else "") + what[-1]
            parts.append(f"{r.name} alone (stacking weight {r.weight:.2f}) {said}")
        top = max(sens.rows, key=lambda r: r.weight)
        why = ""
        if len(evidence.scores) > 1 and evidence.scores[0].name == top.name:
            d = evidence.scores[1]
            why = (f", which predicts left-out runs better (PSIS-LOO: by {-d.elpd_diff:.1f} ± {d.dse:.1f} in "
                   "expected log predictive density)")
        disagreement = ("**The laws disagree on the decision**: " + "; ".join(parts)
                        + f". The stacked answer follows {top.name} (weight {top.weight:.2f}){why}.")
    dissent_weight = sum(r.weight for r, _ in dissent)

    where = ""
    if plan_ans is not None and {"N", "D"} <= set(plan_ans.inputs):
        where = _split(plan_ans.inputs["N"], plan_ans.inputs["D"])
    elif plan_ans is not None:
        where = ", ".join(quantity(k, v, 2) for k, v in plan_ans.inputs.items() if k != "C")
    compute = "" if question.plan_compute is None else f" ({flops(question.plan_compute)})"
    target_clause = ""
    if p is not None:
        target_clause = (f" It reaches the target loss {g(target)} with probability {p:.2f} "
                         f"({likelihood_words(p)}; predicted {g(plan_ans.loss.median)}, 90% interval "
                         f"{interval(plan_ans.loss, 90)}).")
    elif plan_ans is not None:
        target_clause = (f" Its predicted loss is {g(plan_ans.loss.median)} (90% interval "
                         f"{interval(plan_ans.loss, 90)}).")
    if coverage_caveats:
        target_clause += " The backtest shows these intervals to be too narrow (see Caveats)."
    pilots = ()
    if report.answer_failed:
        action = "rerun"
        sentence = ("**Do not act on this memo yet**: the fits behind the answer failed the diagnostics gate, so "
                    "its numbers cannot be trusted; rerun them as the Diagnostics section advises.")
    elif dissent and dissent_weight >= DISSENT_WEIGHT:
        action = "pilots"
        pilots = tuple(_pilots(fits, plan, recommended))
        run = ""
        if pilots:
            pl = pilots[0]
            run = (f" Run pilots first: a few runs around {flops(pl['C'])} ({_split(pl['N'], pl['D'])}, 10x the "
                   f"largest run) would show which law extrapolates.")
        sentence = (f"**The data cannot settle this yet**: laws with {100 * dissent_weight:.0f}% of the stacking "
                    f"weight disagree on the decision (see below).{run}")
    elif regret is not None and near:
        action = "approve"
        sentence = (f"**Approve the plan**: {where}{compute} is a near-optimal split of its compute (expected loss "
                    f"regret {g(regret.regret_mean, 2)}; P(within {100 * regret.within:g}% of compute-optimal) = "
                    f"{regret.p_within:.2f}).{target_clause}")
    elif regret is not None and choice is not None:
        action = "change"
        at = ("" if question.budget is None or math.isclose(choice.budget, regret.compute, rel_tol=0.01)
              else f" at the budget {flops(question.budget)}")
        sentence = (f"**Change the split** to {_split(choice.N, choice.D)}{at}: the plan's {where}{compute} is "
                    f"off-optimal (expected loss regret {g(regret.regret_mean, 2)}; P(within "
                    f"{100 * regret.within:g}% of compute-optimal) = {regret.p_within:.2f}).{target_clause}")
    elif choice is not None:
        action = "run"
        sentence = (f"**Run {_split(choice.N, choice.D)}** with the {flops(choice.budget)}: the split that minimises "
                    f"the {_utility_words(choice.utility, choice.q)} over the posterior (loss median "
                    f"{g(choice.loss_median)}, 90% interval {g(choice.loss_lower_90)} to {g(choice.loss_upper_90)}, "
                    "law value).")
    else:
        action = "predict"
        sentence = (f"**Prediction for the plan** ({where}){compute}: no compute-optimal allocation can be made for "
                    f"these laws.{target_clause}")
    laws = ", ".join(f"{n} {w:.2f}" for n, w in weights_by_name.items())
    if plan_ans is None:
        source_words = "the posterior draws of the laws' parameters"
    elif plan_ans.loss_raw is not None:
        source_words = ("the calibrated predictive distribution of the run's loss (parameters, run-to-run noise and "
                        "the law's error at the distance of the extrapolation, learned from a compute rollout inside "
                        "the data)")
    else:
        source_words = "the posterior predictive distribution of the run's loss (parameters and run-to-run noise)"
    basis = ("Basis: " + source_words
             + (f", stacked over the laws with their stacking weights ({laws})" if len(weights_by_name) > 1 else
                f", from one law ({laws.split()[0]})")
             + ("" if plan_ans is None else f"; the plan lies {g(plan_ans.extrapolation, 3)}x beyond the largest "
                                            "fitted run")
             + ".")
    decision = Decision(action=action, sentence=sentence, basis=basis, allocation=recommended, source=source,
                        pilots=pilots)
    return decision, disagreement


def _headline(question, evidence, plan_ans, alloc, choice, regret, status, target_text, coverage, decision,
              disagreement, report) -> list[str]:
    lines = []
    if plan_ans is not None:
        e = plan_ans.loss
        where = ", ".join(quantity(k, v, 2) for k, v in plan_ans.inputs.items())
        raw = plan_ans.loss_raw
        band = "" if raw is None else (f" (calibrated for extrapolation by a compute rollout inside the data; the "
                                       f"posterior predictive alone gives {interval(raw, 90)})")
        lines.append(f"Predicted loss of the plan ({where}): median **{g(e.median)}**, 50% interval "
                     f"{interval(e, 50)}, 90% interval {interval(e, 90)}{band}"
                     + (f"; {coverage}" if coverage else "") + ".")
        if plan_ans.p_below_target is not None:
            lines.append(f"P(loss < {g(question.target)}) = **{plan_ans.p_below_target:.2f}** "
                         f"({likelihood_words(plan_ans.p_below_target)}).")
    if decision is not None and decision.allocation is not None:
        a = decision.allocation
        if decision.source == "plan":
            more = ""
            if alloc is not None:
                more = (f"; for reference, the compute-optimal split has median {_split(alloc.N.median, alloc.D.median)}"
                        f" (D*/N* {med_int(alloc.ratio)}), and the plan's D/N = {g(a['D'] / a['N'], 3)} lies "
                        + ("inside" if alloc.ratio.contains(a["D"] / a["N"], 90) else "OUTSIDE")
                        + " its 90% interval")
            lines.append(f"Allocation to run: **the plan**, {_split(a['N'], a['D'])}: its regret is negligible"
                         f" (expected {g(regret.regret_mean, 2)} in loss){more}.")
        else:
            lines.append(f"Allocation to run: **{_split(a['N'], a['D'])}** (D/N {g(a['D'] / a['N'], 3)}), the one that "
                         f"minimises the {decision.source} over the posterior"
                         + ("" if regret is None else f"; the plan's expected loss regret against the optimum is "
                                                      f"{g(regret.regret_mean, 2)}")
                         + ".")
    if target_text:
        lines.append(target_text)
    if laws_words(evidence):
        lines.append(laws_words(evidence))
    if disagreement:
        lines.append(disagreement)
    if evidence.pit:
        good = [r.name for r in evidence.pit if r.calibrated]
        bad = [r.name for r in evidence.pit if not r.calibrated]
        words = []
        def names(xs):
            return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]

        if good:
            words.append(names(good) + (" looks" if len(good) == 1 else " look") + " calibrated")
        if bad:
            words.append(names(bad) + (" does" if len(bad) == 1 else " do") + " **not** look calibrated")
        lines.append("Calibration on the fitted runs (LOO-PIT, details in Laws compared): " + "; ".join(words) + ".")
    lines.append(_diagnostics_line(report))
    return lines


def _diagnostics_line(report) -> str:
    parts = []
    for role, label in (("answer", "behind the answer"), ("sensitivity", "sensitivity only"),
                        ("backtest", "backtest")):
        checks = [c for c in report.checks if c.role == role]
        if not checks:
            continue
        said = f"{sum(c.status == 'pass' for c in checks)} of {len(checks)} pass"
        for status, verb in (("warn", "warn"), ("fail", "fail")):
            k = sum(c.status == status for c in checks)
            if k:
                said += f", {k} {verb}{'s' if k == 1 else ''}"
        parts.append(f"{label}: {said}")
    return f"Diagnostics: **{report.answer_status.upper()}** for the answer ({'; '.join(parts)}; details in Diagnostics)."


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
    coverage, cov_caveats = _coverage_text(evidence, weights_by_name)
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
    decision, disagreement = _decision(question, plan_ans, alloc, choice, regret, sens, evidence, weights_by_name,
                                       fits, weights, report, cov_caveats)
    target_text = _target_text(question, target_c, reach, fits, weights)
    headline = _headline(question, evidence, plan_ans, alloc, choice, regret, status, target_text, coverage,
                         decision, disagreement, report)
    return Answer(plan=plan_ans, allocation=alloc, choice=choice, regret=regret, target_compute=target_c,
                  target_reachable=reach, plan_status=status, plan_verdict=verdict, headline=tuple(headline),
                  caveats=tuple(dict.fromkeys(sentence(c) for c in caveats)), decision=decision,
                  disagreement=disagreement, target_text=target_text, coverage_text=coverage)
