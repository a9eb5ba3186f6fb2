"""Pass / warn / fail for every fit behind a memo, with reasons, and alarms in proportion to the harm.

Fits have one of three roles: **answer** (its stacking weight is at least
:data:`~bayescale.memo.evidence.ANSWER_WEIGHT`: the answer is read from its
draws), **sensitivity** (weight below that: it only shows in the
Sensitivity table) and **backtest** (a refit without the held-out runs).

* **fail**: the fit failed the sampler's diagnostics gate
  (:data:`bayescale.diagnostics.GATE`: R-hat <= 1.01, bulk and tail ESS >= 400,
  no divergent transitions, tree depth saturated in at most 1% of draws) and
  its draws cannot be trusted.  Exception: a *marginal* miss of a backtest or
  sensitivity fit (only the ESS, and every ESS at least
  :data:`MARGINAL_ESS`) is a **warn**: its few hundred draws still give the
  intervals it is scored on, and the answer does not use it.
* **warn**: the draws are fine but something deserves a look: PSIS-LOO is
  unreliable for some runs (Pareto k > 0.7; replaced by exact refits when
  ``compare`` made them), an exact leave-one-out refit failed the gate, the
  tree depth was reached in a few draws (below the gate's 1%), or the
  marginal miss above.
* **pass**: nothing to report.

The banner: red (``fail``) when a fit behind the answer failed, since then
the answer cannot be acted on; orange (``warn``) when only backtest or
sensitivity fits failed, since then only their rows are unreliable; none
otherwise.
"""

from __future__ import annotations

from .evidence import ANSWER_WEIGHT
from .model import FAIL, PASS, WARN, DiagnosticsReport, FitCheck

__all__ = ["MARGINAL_ESS", "diagnostics_report"]

#: A backtest or sensitivity fit whose only problem is an ESS at or above this (half the gate's 400) warns.
MARGINAL_ESS = 200.0

_ORDER = {PASS: 0, WARN: 1, FAIL: 2}


def _marginal(d) -> bool:
    """Only the ESS missed the gate, and not by much (every bulk and tail ESS >= MARGINAL_ESS)."""
    only_ess = all(p.startswith("effective sample size") for p in d.problems)
    ess = list(d.ess_bulk.values()) + list(d.ess_tail.values())
    return bool(d.problems) and only_ess and min(ess) >= MARGINAL_ESS


def _check(fit, name: str, role: str, comparison=None) -> FitCheck:
    d = fit.diagnostics
    summary = d.as_dict()
    reasons, advice = list(d.problems), list(d.advice)
    status = FAIL if reasons else PASS
    if status == FAIL and role != "answer" and _marginal(d):
        status = WARN
        reasons = [r + f" (marginal: every ESS >= {MARGINAL_ESS:.0f}; the answer does not use this fit)"
                   for r in reasons]
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


_ROLE = {"answer": "behind the answer", "sensitivity": "sensitivity only", "backtest": "backtest"}


def diagnostics_report(fits, names, comparison, holdout_fits, weights=None) -> DiagnosticsReport:
    """Checks of the answer's fits (with their Pareto k), of sensitivity-only and backtest fits; the banner."""
    weights = [1.0] * len(fits) if weights is None else list(weights)
    checks = [_check(f, n, "answer" if w >= ANSWER_WEIGHT else "sensitivity", comparison)
              for f, n, w in zip(fits, names, weights)]
    checks += [_check(f, n, "backtest") for n, f in holdout_fits]
    status = max((c.status for c in checks), key=_ORDER.get, default=PASS)
    answer_status = max((c.status for c in checks if c.role == "answer"), key=_ORDER.get, default=PASS)
    failed = [c for c in checks if c.status == FAIL]
    banner = kind = None
    if failed:
        which = "; ".join(f"{c.name} ({_ROLE[c.role]}): " + ", ".join(dict.fromkeys(_kind(r) for r in c.reasons))
                          for c in failed)
        tries = "; ".join(dict.fromkeys(a for c in failed for a in c.advice))
        if any(c.role == "answer" for c in failed):
            kind = FAIL
            banner = (f"DIAGNOSTICS FAILED for {len(failed)} of {len(checks)} fits, including fits behind the "
                      f"answer. {which} (details under Diagnostics). The answers below come from draws that "
                      f"cannot be trusted: do not act on them until the failing fits are rerun and pass. "
                      f"What to try: {tries}.")
        else:
            kind = WARN
            roles = sorted({_ROLE[c.role] for c in failed})
            banner = (f"Supporting fits failed the diagnostics gate ({' and '.join(roles)}): {which}. The fits "
                      f"behind the answer pass, so the answer stands, but the rows of the failing fits (in the "
                      f"backtest or sensitivity tables) are unreliable. What to try: {tries}.")
    return DiagnosticsReport(checks=tuple(checks), status=status, banner=banner, banner_kind=kind,
                             answer_status=answer_status)
