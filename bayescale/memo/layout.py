"""The memo laid out as a list of neutral blocks, which the Markdown and HTML renderers format.

Laying the memo out once keeps the two renderings identical in content.
Inline text may use ``**bold**`` and ```code``` (both renderers understand
them); everything else is plain text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .fmt import count, flops, g, interval, med_int, pct, quantity
from .model import PASS, Memo

__all__ = ["Banner", "Bullets", "Code", "FigureRef", "Heading", "Para", "Table", "layout"]


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Banner:
    kind: str        # fail | warn | note
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class FigureRef:
    figure: object   # model.Figure


def _inputs(d: dict | None) -> str:
    """A run's inputs as a person reads them: '70B parameters, 1.4T tokens, 5.88e23 FLOPs'."""
    if not d:
        return "–"
    return ", ".join(quantity(k, v) for k, v in d.items())


def _column(name: str, v) -> str:
    """One value of a column in human units (counts for N, D, U; e-notation otherwise)."""
    return count(v) if name in ("N", "D", "U") else g(v)


def _utility(q) -> str:
    return {"mean": "the expected loss",
            "quantile": f"the {100 * q.q:g}% quantile of the loss (a pessimistic case)",
            "cvar": f"the CVaR: the mean loss over the worst {100 * (1 - q.q):g}% of the posterior"}[q.utility]


# --------------------------------------------------------------------------- sections


def _top(m: Memo) -> list:
    out = [Heading(1, m.title)]
    if m.diagnostics.banner:
        out.append(Banner(m.diagnostics.banner_kind or "fail", m.diagnostics.banner))
    if m.data.note:
        out.append(Banner("note", m.data.note))
    out.append(Heading(2, "Summary", "summary"))
    d = m.answer.decision
    if d is not None:
        out += [Para(d.sentence), Para(d.basis)]
    out.append(Bullets(tuple(m.answer.headline)))
    if m.answer.caveats:
        out += [Para("**Caveats**"), Bullets(m.answer.caveats)]
    return out


def _question(m: Memo) -> list:
    q = m.question
    rows = [("compute budget", flops(q.budget, 3) if q.budget else "–"),
            ("planned run", _inputs(q.plan)),
            ("target loss", g(q.target)),
            ("laws", ", ".join(f"`{x}`" for x in q.laws)),
            ("noise models", ", ".join(f"`{x}`" for x in q.noises)),
            ("allocation chosen by", _utility(q))]
    if q.plan_compute and q.budget and not math.isclose(q.plan_compute, q.budget, rel_tol=0.01):
        rows.append(("note", f"the plan spends {flops(q.plan_compute, 3)}, not the budget; its regret is "
                             "measured at its own compute"))
    text = ("What loss will the planned run reach, how likely is it to beat the target, how should the "
            "budget be split between parameters N and tokens D, and is the plan close to that split? "
            "Every number below is read from posterior draws; intervals are central posterior (or posterior "
            "predictive) intervals with their probability stated.")
    return [Heading(2, "The question", "question"), Para(text), Table(("", ""), tuple(rows))]


def _data(m: Memo) -> list:
    d = m.data
    grid = f" at {d.n_budgets} distinct compute budgets" if d.n_budgets else ""
    out = [Heading(2, "The data", "data"),
           Para(f"{d.n_runs} runs{grid} from `{d.source}`"
                + (" (shipped with bayescale)" if d.source.startswith("bayescale/") else "")
                + f" (runs hash `{d.runs_hash}`).")]
    has_plan = any(r.plan is not None for r in d.ranges)
    header = ("column", "min", "max") + (("plan", "plan / largest run") if has_plan else ())
    rows = []
    for r in d.ranges:
        row = (r.column, _column(r.column, r.min), _column(r.column, r.max))
        if has_plan:
            row += (_column(r.column, r.plan) if r.plan is not None else "–",
                    "–" if r.ratio_to_max is None else f"{g(r.ratio_to_max, 3)}x")
        rows.append(row)
    out.append(Table(header, tuple(rows)))
    far = []
    if d.plan_extrapolation is not None:
        far.append(f"the plan lies {g(d.plan_extrapolation, 3)}x beyond the largest run (its largest ratio over "
                   "the inputs and compute)")
    if d.budget_extrapolation is not None:
        far.append(f"the budget is {g(d.budget_extrapolation, 3)}x the largest run's compute")
    if far:
        out.append(Para("How far the question extrapolates: " + "; ".join(far) + "."))
    if d.truth:
        out.append(Para("Because the data are simulated, derived quantities can be checked against the values "
                        "of the generating law (law band, i.e. parameter uncertainty only):"))
        out.append(Table(("quantity", "posterior median", "90% interval", "generating value", "inside 90%"),
                         tuple((t.quantity, *_truth_cells(t), "yes" if t.inside_90 else "**no**") for t in d.truth)))
    return out


def _truth_cells(t) -> tuple:
    """Median, 90% interval and generating value of a truth row, counts in human units (N*)."""
    f = count if "N*" in t.quantity else g
    e = t.estimate
    return f(e.median), f"{f(e.lower_90)} to {f(e.upper_90)}", f(t.truth)


def _laws(m: Memo) -> list:
    e = m.evidence
    out = [Heading(2, "Laws compared", "laws")]
    if e.scores:
        out.append(Para("PSIS-LOO on the same runs: elpd_loo is the expected log predictive density of a new "
                        "run (higher is better); the difference to the best comes with its standard error; "
                        "stacking weights combine the fits into the mixture every answer is read from."))
        out.append(Table(("fit", "law", "noise", "elpd_loo", "SE", "diff to best", "SE of diff", "p_loo",
                          "stacking weight", "Pareto k > 0.7"),
                         tuple((s.name, f"`{s.law}`", f"`{s.noise}`", f"{s.elpd_loo:.1f}", f"{s.se:.1f}",
                                f"{s.elpd_diff:.1f}", f"{s.dse:.1f}", f"{s.p_loo:.1f}", f"{s.weight:.3f}",
                                str(s.n_pareto_bad) + (f" ({s.n_refit} refitted)" if s.n_refit else ""))
                               for s in e.scores)))
        out.append(Para(e.verdict))
        if e.notes:
            out.append(Bullets(tuple(e.notes)))
    else:
        out.append(Para(e.verdict + "."))
    if e.backtest:
        out.append(Heading(3, "Backtest of the largest runs"))
        out.append(Para(f"Each fit was refitted without the held-out runs ({e.backtest_holdout}) and scored on "
                        "them: ARE is the absolute relative error of the posterior predictive median; coverage "
                        "is the share of held-out runs inside the central predictive interval (calibrated: "
                        "about 50% and 90%); width is relative to the observed loss; lpd is the mean log "
                        "predictive density."))
        low = {c.name for c in e.coverage if c.below_nominal}
        cal = any(b.cal_coverage_90 is not None for b in e.backtest)

        def flag(b, v, calibrated):
            mark = b.name in low and calibrated == any(c.calibrated for c in e.coverage if c.name == b.name)
            return f"**{pct(v)} (below 90%)**" if mark else pct(v)

        rows = []
        for b in e.backtest:
            rows.append((b.name + (" (posterior predictive)" if cal else ""), str(b.n_test),
                         f"{100 * b.median_are:.2f}%", f"{100 * b.mean_are:.2f}%", pct(b.coverage_50),
                         flag(b, b.coverage_90, False), f"{100 * b.mean_rel_width_90:.1f}%", f"{b.mean_lpd:.2f}",
                         str(b.fits_failed_gate)))
            if b.cal_coverage_90 is not None:
                rows.append((b.name + " (calibrated: the stated band)", str(b.n_test),
                             f"{100 * b.cal_median_are:.2f}%", "–", pct(b.cal_coverage_50),
                             flag(b, b.cal_coverage_90, True), f"{100 * b.cal_mean_rel_width_90:.1f}%",
                             f"{b.cal_mean_lpd:.2f}", "–"))
        out.append(Table(("fit", "held-out runs", "median ARE", "mean ARE", "50% coverage", "90% coverage",
                          "90% width", "mean lpd", "fits failing the gate"), tuple(rows)))
        if cal:
            out.append(Para("The calibrated rows: each fold's fit was calibrated by a compute rollout of its own "
                            "training runs, as the answer's fits were, and its calibrated band scored on the same "
                            "held-out runs."))
        if low:
            out.append(Para("A 90% coverage marked *below 90%* is clearly below nominal for that many held-out runs "
                            "(a binomial probability below 0.05 of covering so few if the intervals were "
                            "calibrated): that fit's intervals are too narrow when it extrapolates."))
        if e.backtest_notes:
            out.append(Bullets(tuple(e.backtest_notes)))
    out += _law_check(e.law_check)
    if e.skipped:
        out.append(Bullets(tuple(e.skipped)))
    out += [FigureRef(f) for f in m.figures if f.name in ("compare", "backtest")]
    if e.pit:
        out.append(Heading(3, "Calibration on the fitted runs (LOO-PIT)"))
        out.append(Para("Each run's observed loss placed in its leave-one-out posterior predictive distribution (the "
                        "fit without that run, by PSIS-LOO): if the fit's predictive distributions are calibrated, "
                        "these probabilities are uniform on (0, 1). This checks the noise model and the law inside "
                        "the data; the backtest above checks extrapolation."))
        out.append(Bullets(tuple(f"{r.name} {r.verdict}" for r in e.pit)))
        out += [FigureRef(f) for f in m.figures if f.name == "loo_pit"]
    return out


def _law_check(c) -> list:
    if c is None:
        return []
    out = [Heading(3, "Other laws, as a check"),
           Para("The other built-in laws these runs allow, fitted to the same runs with the same settings (and "
                "backtested the same way) to see whether the named law is the right one. They are a check only: "
                "the answer stacks the named laws. A law is *clearly* better when its log predictive density is "
                "higher by at least 4 and by at least 2 standard errors of the difference (the rule of the LOO "
                "verdict above).")]
    backtested = any(r.backtest_n is not None for r in c.rows)

    def opt(v, f):
        return "–" if v is None else f(v)

    header = ("law", "in the answer", "diagnostics", "elpd_loo", "diff to best", "SE of diff")
    if backtested:
        header += ("backtest median ARE", "90% coverage", "mean lpd")
    rows = []
    for r in c.rows:
        row = (f"`{r.name}`", "yes" if r.named else "no (check)", "pass" if r.gate_passed else "**FAIL**",
               opt(r.elpd_loo, lambda v: f"{v:.1f}"), opt(r.elpd_diff, lambda v: f"{v:.1f}"),
               opt(r.dse, lambda v: f"{v:.1f}"))
        if backtested:
            row += (opt(r.backtest_median_are, lambda v: f"{100 * v:.2f}%"), opt(r.backtest_coverage_90, pct),
                    opt(r.backtest_mean_lpd, lambda v: f"{v:.2f}"))
        rows.append(row)
    out.append(Table(header, tuple(rows)))
    if c.sentences:
        out.append(Bullets(c.sentences))
    return out


def _answer(m: Memo) -> list:
    a = m.answer
    q = m.question
    out = [Heading(2, "The answer", "answer")]
    if a.plan is not None:
        p = a.plan
        out.append(Heading(3, "Predicted loss of the plan"))
        rows = []
        if p.loss_raw is not None:
            rows.append(("a new run's loss, calibrated for extrapolation (the stated band)", g(p.loss.median),
                         interval(p.loss, 50), interval(p.loss, 90)))
        raw = p.loss if p.loss_raw is None else p.loss_raw
        rows += [("a new run's loss (posterior predictive: parameters + noise)", g(raw.median),
                  interval(raw, 50), interval(raw, 90)),
                 ("the law's value (parameter uncertainty only)", g(p.law_loss.median), interval(p.law_loss, 50),
                  interval(p.law_loss, 90))]
        out.append(Table(("at " + _inputs(p.inputs), "median", "50% interval", "90% interval"), tuple(rows)))
        if p.calibration:
            out.append(Para(f"The calibrated band: {p.calibration}. It widens the posterior predictive by how wrong "
                            "the law was when refitted on the lower part of the runs' compute and asked for the "
                            "rest (a discrepancy that grows with the log of the extrapolation factor); the raw band "
                            "assumes the law is exactly right."))
        if a.coverage_text:
            out.append(Para(f"Calibration of such intervals out of sample: {a.coverage_text}."))
        extra = []
        if p.p_below_target is not None:
            source = "the calibrated predictive" if p.loss_raw is not None else "the posterior predictive"
            extra.append(f"P(loss < {g(q.target)}) = **{p.p_below_target:.2f}** (from {source} distribution of "
                         "the run's loss" + ("" if p.p_below_target_raw is None else
                                             f"; the posterior predictive alone gives {p.p_below_target_raw:.2f}")
                         + ").")
        extra.append(f"Stacked over the laws with the stacking weights. The plan lies {g(p.extrapolation, 3)}x "
                     "beyond the largest fitted run.")
        out.append(Para(" ".join(extra)))
        out += [FigureRef(f) for f in m.figures if f.name == "bands"]
    elif any(f.name == "bands" for f in m.figures):     # no plan: the bands still show the extrapolation
        out += [FigureRef(f) for f in m.figures if f.name == "bands"]
    if a.allocation is not None:
        al = a.allocation
        out.append(Heading(3, f"Compute-optimal allocation at {flops(al.budget, 3)}"))
        counts = lambda e: (count(e.median), f"{count(e.lower_50)} to {count(e.upper_50)}",   # noqa: E731
                            f"{count(e.lower_90)} to {count(e.upper_90)}")
        rows = [("N* (parameters)",) + counts(al.N), ("D* (tokens)",) + counts(al.D)]
        rows += [(name, g(e.median, 4), interval(e, 50), interval(e, 90)) for name, e in
                 (("D*/N* (tokens per parameter)", al.ratio), ("loss at the optimum (law value)", al.loss))]
        if al.exponent_a is not None:
            rows += [("allocation exponent a (N* ∝ C^a)", g(al.exponent_a.median, 3), interval(al.exponent_a, 50, 3),
                      interval(al.exponent_a, 90, 3)),
                     ("allocation exponent b (D* ∝ C^b)", g(al.exponent_b.median, 3), interval(al.exponent_b, 50, 3),
                      interval(al.exponent_b, 90, 3))]
        out.append(Table(("quantity", "median", "50% interval", "90% interval"), tuple(rows),
                         "Per posterior draw, the N and D that minimise the law's loss at C = 6 N D; summarised "
                         "over the stacked draws."))
        notes = []
        if al.p_outside_domain > 0:
            notes.append(f"the optimum lies outside the fitted runs' N or D range in {pct(al.p_outside_domain)} "
                         "of the draws")
        if al.p_at_bound > 0:
            notes.append(f"the optimum sits on a bound in {pct(al.p_at_bound)} of the draws")
        if notes:
            out.append(Para("Note: " + "; ".join(notes) + "."))
        if a.choice is not None:
            c = a.choice
            text = (f"**Allocation to run.** One allocation must be chosen before the run. The one that minimises "
                    f"{_utility(q)} over the posterior is **{count(c.N)} parameters on {count(c.D)} tokens** (D/N = "
                    f"{g(c.ratio, 3)}); its loss: median {g(c.loss_median)}, 90% interval {g(c.loss_lower_90)} to "
                    f"{g(c.loss_upper_90)} (law value); expected regret against each draw's own optimum "
                    f"{g(c.expected_regret, 2)}.")
            dec = a.decision
            if dec is not None and dec.source == "plan":
                text += (f" The plan's own expected regret is {g(a.regret.regret_mean, 2)}, negligible (it is "
                         "near-optimal, below), so the memo recommends **the plan** as it stands, not this "
                         "allocation.")
            elif dec is not None and dec.allocation is not None:
                text += " The memo recommends this allocation."
            out.append(Para(text))
        out += [FigureRef(f) for f in m.figures if f.name in ("allocation", "ratio")]
    if a.regret is not None:
        r = a.regret
        out.append(Heading(3, "The plan against the optimum"))
        out.append(Banner("warn" if a.plan_status == "off-optimal" else "note", a.plan_verdict))
        rows = [("plan", _inputs({"N": r.N, "D": r.D, "C": r.compute})),
                ("loss of the plan (law value)", f"median {g(r.loss_median)}, 90% interval {g(r.loss_lower_90)} "
                                                 f"to {g(r.loss_upper_90)}"),
                ("optimal loss at the same compute", f"median {g(r.optimal_loss_median)}"),
                ("loss regret", f"mean {g(r.regret_mean, 2)}, median {g(r.regret_median, 2)}, 95% quantile "
                                f"{g(r.regret_upper_90, 2)}"),
                ("compute efficiency", f"median {100 * r.efficiency_median:.1f}%, 5% quantile "
                                       f"{100 * r.efficiency_lower_90:.1f}%"),
                (f"P(within {100 * r.within:g}% of compute-optimal)", f"{r.p_within:.2f}")]
        out.append(Table(("", ""), tuple(rows), "Compute efficiency: the share of the plan's compute an optimal "
                                                "allocation needs to reach the plan's loss (100% = optimal)."))
    if a.target_text:
        out.append(Heading(3, f"Reaching the target loss {g(q.target)}"))
        out.append(Para(a.target_text))
        if a.target_compute is not None:
            out.append(Para(f"50% interval {g(a.target_compute.lower_50, 3)} to {g(a.target_compute.upper_50, 3)} "
                            "FLOPs (training compute with a compute-optimal split, over the stacked draws)."))
    return out


def _sensitivity(m: Memo) -> list:
    s = m.sensitivity
    out = [Heading(2, "Sensitivity", "sensitivity"),
           Para("The same answers under each fit alone (one law, one noise model): if they disagree, the "
                "choice of law matters more than the data can settle, and the stacked answer is a compromise.")]
    rows = []
    for r in s.rows:
        n_opt = "–" if r.N_opt is None else (f"{count(r.N_opt.median)} [{count(r.N_opt.lower_90)}, "
                                             f"{count(r.N_opt.upper_90)}]")
        rows.append((r.name, f"{r.weight:.3f}", med_int(r.plan_loss, 4),
                     "–" if r.p_below_target is None else f"{r.p_below_target:.2f}", med_int(r.ratio),
                     n_opt, "–" if r.loss_opt is None else g(r.loss_opt.median),
                     g(r.regret_mean, 2)))
    target = f"P(loss < {g(m.question.target)})" if m.question.target else "P(loss < target)"
    out.append(Table(("fit", "weight", "plan loss, median [90%]", target, "D*/N*, median [90%]",
                      "N*, median [90%]", "optimal loss", "plan regret (mean)"), tuple(rows)))
    items = list(s.summary)
    if m.answer.disagreement:
        items.insert(0, m.answer.disagreement)
    out.append(Bullets(tuple(items)))
    out += [FigureRef(f) for f in m.figures if f.name == "sensitivity"]
    return out


def _diagnostics(m: Memo) -> list:
    d = m.diagnostics
    out = [Heading(2, "Diagnostics", "diagnostics")]
    if d.banner:
        out.append(Banner(d.banner_kind or "fail", d.banner))
    out.append(Para(f"The fits behind the answer: **{d.answer_status.upper()}**; all fits: **{d.status.upper()}**. "
                    "The gate per fit: R-hat ≤ 1.01, bulk and tail ESS ≥ 400, no divergent transitions, maximum "
                    "tree depth reached in at most 1% of draws (fail otherwise; for a backtest or sensitivity-only "
                    "fit an ESS miss that keeps every ESS ≥ 200 is a warning: the answer does not use those draws); "
                    "Pareto k ≤ 0.7 for every run in PSIS-LOO (warn otherwise). Roles: *answer* (stacking weight "
                    "≥ 0.01), *sensitivity* (only in the Sensitivity table), *backtest* (refitted without the "
                    "held-out runs)."))
    rows = []
    for c in d.checks:
        rows.append((c.name, c.role, f"**{c.status.upper()}**" if c.status != PASS else "pass", f"{c.r_hat_max:.4f}",
                     f"{c.ess_bulk_min:.0f}", f"{c.ess_tail_min:.0f}", f"{c.divergences} / {c.draws}",
                     str(c.tree_depth_hits), "–" if c.max_pareto_k is None else f"{c.max_pareto_k:.2f}"))
    out.append(Table(("fit", "role", "status", "R-hat max", "ESS bulk min", "ESS tail min", "divergences",
                      "tree depth hits", "max Pareto k"), tuple(rows)))
    reasons = [f"{c.name} ({c.role}), {c.status}: " + "; ".join(c.reasons)
               + (" — try: " + "; ".join(c.advice) if c.advice else "") for c in d.checks if c.reasons]
    if reasons:
        out.append(Bullets(tuple(reasons)))
    return out


def _params(m: Memo) -> list:
    rows = m.evidence.params
    if not rows:
        return []
    has_truth = any(r.truth is not None for r in rows)
    header = ("fit", "parameter", "median", "90% interval", "R-hat", "ESS bulk") + \
        (("generating value", "inside 90%") if has_truth else ())
    body = []
    for r in rows:
        row = (r.fit, r.param, g(r.median), f"{g(r.lower_90)} to {g(r.upper_90)}", f"{r.r_hat:.3f}",
               f"{r.ess_bulk:.0f}")
        if has_truth:
            inside = "" if r.truth is None else ("yes" if r.lower_90 <= r.truth <= r.upper_90 else "**no**")
            row += (g(r.truth), inside)
        body.append(row)
    return [Heading(2, "Posterior parameters", "parameters"),
            Para("For reference: derived quantities (above) are what the data identify best; some parameters "
                 "(such as the coefficients A and B of the Chinchilla law) are weakly identified and have wide "
                 "intervals that matter little for the answer."),
            Table(header, tuple(body))]


def _repro(m: Memo) -> list:
    r = m.reproducibility
    rows = [("seed", str(r.seed)),
            ("sampler", ", ".join(f"{k} {v}" for k, v in r.sampler.items() if v is not None)),
            ("runs hash (used columns)", f"`{r.runs_hash}`"),
            ("data file SHA-256", f"`{r.file_sha256}`" if r.file_sha256 else "– (a DataFrame)"),
            ("law cards (hash)", ", ".join(f"`{k}` `{v}`" for k, v in r.cards.items())),
            ("versions", ", ".join(f"{k} {v}" for k, v in r.versions.items())),
            ("created (UTC)", r.created)]
    if r.wall_s is not None:
        rows.append(("built in", f"{r.wall_s:.1f} s"))
    return [Heading(2, "Reproducibility", "reproducibility"),
            Para("The fits are saved beside this memo in `fits/` (NetCDF, readable with `bayescale summary`, "
                 "`bayescale.load_fit` or ArviZ). To rebuild it:"),
            Code(r.command), Table(("", ""), tuple(rows))]


def layout(memo: Memo) -> list:
    """The memo's blocks, in reading order."""
    blocks = []
    for section in (_top, _question, _data, _laws, _answer, _sensitivity, _diagnostics, _params, _repro):
        blocks += section(memo)
    return blocks
