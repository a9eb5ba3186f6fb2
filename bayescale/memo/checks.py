"""Pass / warn / fail for every fit behind a memo, with reasons.

* **fail**: the fit failed the sampler's diagnostics gate
  (:data:`bayescale.diagnostics.GATE`: R-hat <= 1.01, bulk and tail ESS >= 400,
  no divergent transitions, tree depth saturated in at most 1% of draws);
  its draws cannot be trusted, and the memo carries a banner.
* **warn**: the draws are fine but something deserves a look: PSIS-LOO is
  unreliable for some runs (Pareto k > 0.7; replaced by exact refits when
  ``compare`` made them), an exact leave-one-out refit failed the gate, or
  the tree depth was reached in a few draws (below the gate's 1%).
* **pass**: nothing to report.
"""

from __future__ import annotations

from .model import FAIL, PASS, WARN, DiagnosticsReport, FitCheck

__all__ = ["diagnostics_report"]


def _check(fit, name: str, role: str, comparison=None) -> FitCheck:
    d = fit.diagnostics
    summary = d.as_dict()
    reasons, advice = list(d.problems), list(d.advice)
    status = FAIL if reasons else PASS
    k_max = n_bad = None
    if comparison is not None and name in comparison.pareto_k:
        k = comparison.pareto_k[name]
        k_max = float(k.max())
        bad = [int(i) for i in (k > comparison.k_threshold).nonzero()[0]]
        n_bad = len(bad)
        if bad:
            fixed = name in comparison.refitted
            rows = ", ".join(map(str, bad[:8])) + (" ..." if len(bad) > 8 else "")
            reasons.append(f"Pareto k > {comparison.k_threshold:g} for {n_bad} run(s) (rows {rows}; max "
                           f"{k_max:.2f}): PSIS-LOO is unreliable there"
                           + ("; those values were replaced by exact leave-one-out refits" if fixed else ""))
            if not fixed:
                advice.append("compare with reloo=True (CLI: --reloo) for exact leave-one-out refits of those runs")
            failed = [n for n in comparison.notes if n.startswith(f"{name}:") and "refits" in n and "failed" in n]
            reasons += failed
            status = status if status == FAIL else WARN
    if 0 < d.saturated and not any("tree depth" in p for p in d.problems):
        reasons.append(f"maximum tree depth {d.max_tree_depth} reached in {d.saturated} of {d.draws} draws "
                       "(below the gate's 1%)")
        status = status if status == FAIL else WARN
    return FitCheck(name=name, role=role, status=status, r_hat_max=float(summary["r_hat_max"]),
                    ess_bulk_min=float(summary["ess_bulk_min"]), ess_tail_min=float(summary["ess_tail_min"]),
                    divergences=int(d.divergences), draws=int(d.draws), tree_depth_hits=int(d.saturated),
                    max_pareto_k=k_max, n_pareto_bad=n_bad, reasons=tuple(reasons), advice=tuple(advice))


def _kind(reason: str) -> str:
    """The kind of a problem without its per-parameter detail: 'R-hat above 1.01 for E (1.04)' -> 'R-hat above 1.01'."""
    return reason.split(" for ")[0].split(" (rows")[0]


def diagnostics_report(fits, names, comparison, holdout_fits) -> DiagnosticsReport:
    """Checks of the answer's fits (with their Pareto k) and of the backtest fits; the banner."""
    checks = [_check(f, n, "answer", comparison) for f, n in zip(fits, names)]
    checks += [_check(f, n, "backtest") for n, f in holdout_fits]
    order = {PASS: 0, WARN: 1, FAIL: 2}
    status = max((c.status for c in checks), key=order.get, default=PASS)
    banner = None
    failed = [c for c in checks if c.status == FAIL]
    if failed:
        which = "; ".join(f"{c.name} ({'fit behind the answer' if c.role == 'answer' else 'backtest fit'}): "
                          + ", ".join(dict.fromkeys(_kind(r) for r in c.reasons)) for c in failed)
        answer_failed = any(c.role == "answer" for c in failed)
        consequence = ("The answers below come from draws that cannot be trusted: do not act on them until the "
                       "failing fits are rerun and pass." if answer_failed else
                       "The answers below come from fits that passed, but the backtest numbers of the failing "
                       "fits are unreliable.")
        banner = (f"DIAGNOSTICS FAILED for {len(failed)} of {len(checks)} fits. {which} (details under "
                  f"Diagnostics). {consequence} "
                  "What to try: " + "; ".join(dict.fromkeys(a for c in failed for a in c.advice)) + ".")
    return DiagnosticsReport(checks=tuple(checks), status=status, banner=banner)
