"""The memo's words: the decision sentence and its basis, the headline, the laws' disagreement.

Read from the answers that :mod:`bayescale.memo.answer` computed (the plan's loss, the allocation,
the regret, the sensitivity to each fit, the backtest's coverage); nothing here fits or samples.
"""

from __future__ import annotations

import math

import numpy as np

from .evidence import ANSWER_WEIGHT
from .fmt import count, flops, g, interval, likelihood_words, med_int, pct, quantity
from .model import Decision

__all__ = ["NEAR_OPTIMAL", "coverage_text", "decision_and_disagreement", "headline", "laws_words", "target_text"]


NEAR_OPTIMAL = 0.5        # the plan is near-optimal when P(within 5% of compute-optimal) >= this
DISSENT_P = 0.25          # P(target) under one fit alone this far from the stacked one changes the decision
DISSENT_WEIGHT = 0.2      # dissenting fits with this much stacking weight: the data cannot settle the decision


def _utility_words(utility: str, q: float) -> str:
    return {"mean": "expected loss", "quantile": f"{100 * q:g}% quantile of the loss",
            "cvar": f"expected loss in the worst {100 * (1 - q):g}% of outcomes (CVaR)"}[utility]


def _split(N, D) -> str:
    return f"{count(N, 2)} parameters on {count(D, 2)} tokens"


def coverage_text(evidence, weights_by_name) -> tuple[str | None, list[str]]:
    """The backtest coverage of the fits carrying the answer, for beside the headline interval; and caveats."""
    cov = [c for c in evidence.coverage if c.weight >= ANSWER_WEIGHT]
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


def target_text(question, target_c, reach, fits, weights) -> str | None:
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


def decision_and_disagreement(question, plan_ans, alloc, choice, regret, sens, evidence, weights_by_name, fits, weights,
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


def headline(question, evidence, plan_ans, alloc, choice, regret, status, target_text, coverage, decision,
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
    laws = laws_words(evidence)
    if laws:
        lines.append(laws)
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
