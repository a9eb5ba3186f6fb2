"""The diagnostics gate: R-hat, bulk and tail ESS, divergences, tree depth.

A fit that fails the gate is still returned, with a
:class:`~bayescale.errors.ConvergenceWarning` that says what failed and what
to try; the verdict travels with the fit (and into the memo).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import azstats

__all__ = ["GATE", "Diagnostics", "diagnose"]

#: Thresholds of the gate.
GATE = {"r_hat_max": 1.01, "ess_bulk_min": 400.0, "ess_tail_min": 400.0,
        "divergences_max": 0, "saturation_max": 0.01}


@dataclass(frozen=True)
class Diagnostics:
    r_hat: dict
    ess_bulk: dict
    ess_tail: dict
    divergences: int
    draws: int
    saturated: int
    max_tree_depth: int
    problems: tuple[str, ...]
    advice: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"passed": self.passed, "r_hat_max": max(self.r_hat.values()),
                "ess_bulk_min": min(self.ess_bulk.values()), "ess_tail_min": min(self.ess_tail.values()),
                "divergences": self.divergences, "draws": self.draws,
                "tree_depth_saturated": self.saturated, "max_tree_depth": self.max_tree_depth,
                "problems": list(self.problems), "advice": list(self.advice)}

    def __str__(self) -> str:
        d = self.as_dict()
        head = (f"R-hat max {d['r_hat_max']:.4f}, ESS bulk min {d['ess_bulk_min']:.0f}, ESS tail min "
                f"{d['ess_tail_min']:.0f}, divergences {self.divergences}/{self.draws}, "
                f"tree depth {self.max_tree_depth} hit {self.saturated} times")
        if self.passed:
            return f"diagnostics: PASS ({head})"
        return f"diagnostics: FAIL ({head})\n  " + "\n  ".join(self.problems + self.advice)


def diagnose(idata, var_names, max_tree_depth: int) -> Diagnostics:
    """Run the gate on ``var_names`` of ``idata``."""
    r_hat = azstats.rhat(idata, var_names)
    ess_bulk = azstats.ess(idata, var_names, "bulk")
    ess_tail = azstats.ess(idata, var_names, "tail")
    stats = idata.sample_stats
    divergences = int(np.asarray(stats["diverging"]).sum())
    depth = np.asarray(stats["tree_depth"])
    saturated = int((depth >= max_tree_depth).sum())
    draws = int(depth.size)
    problems, advice = [], []
    bad = {k: v for k, v in r_hat.items() if not v <= GATE["r_hat_max"]}
    if bad:
        problems.append("R-hat above 1.01 for " + ", ".join(f"{k} ({v:.3f})" for k, v in bad.items()))
        advice.append("chains disagree: run longer (--warmup/--draws), or check the law is identified "
                      "by the data (a parameter whose posterior equals its prior)")
    low = {k: v for k, v in ess_bulk.items() if not v >= GATE["ess_bulk_min"]}
    low_tail = {k: v for k, v in ess_tail.items() if not v >= GATE["ess_tail_min"]}
    if low or low_tail:
        what = ", ".join(f"{k} (bulk {ess_bulk[k]:.0f}, tail {ess_tail[k]:.0f})" for k in sorted({**low, **low_tail}))
        problems.append(f"effective sample size below 400 for {what}")
        advice.append("increase --draws, or tighten weakly identified priors")
    if divergences > GATE["divergences_max"]:
        problems.append(f"{divergences} divergent transitions out of {draws}")
        advice.append("raise --target-accept (e.g. 0.95); if they persist, use the robust "
                      "student_t_log noise model or check for outlying runs")
    if saturated > GATE["saturation_max"] * draws:
        problems.append(f"tree depth {max_tree_depth} reached in {saturated} of {draws} draws")
        advice.append("the posterior is badly scaled: raise --max-tree-depth, or state priors on "
                      "the dimensionless (scaled) parameters as the built-in cards do")
    return Diagnostics(r_hat, ess_bulk, ess_tail, divergences, draws, saturated, max_tree_depth,
                       tuple(problems), tuple(advice))
