"""The memo as frozen data: every number a renderer shows, computed once by ``build_memo``.

Plain frozen dataclasses, no behaviour beyond small read-only helpers and
``as_dict`` (JSON-ready).  Renderers (:mod:`.markdown`, :mod:`.html`) only
read these objects; they never fit, predict or optimise anything.

Intervals are central (equal-tailed) posterior or posterior predictive
intervals; an :class:`Estimate` always carries both the 50% and the 90% one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

__all__ = ["AllocationAnswer", "Answer", "BacktestScore", "DiagnosticsReport", "DataSummary", "Estimate",
           "Evidence", "Figure", "FitCheck", "FitScore", "Memo", "ParamRow", "PlanAnswer", "Question",
           "RangeRow", "Reproducibility", "Sensitivity", "SensitivityRow", "TruthRow"]

PASS, WARN, FAIL = "pass", "warn", "fail"


@dataclass(frozen=True)
class Estimate:
    """A median with its central 50% and 90% intervals."""

    median: float
    lower_50: float
    upper_50: float
    lower_90: float
    upper_90: float

    @classmethod
    def from_quantiles(cls, q) -> "Estimate":
        """From the quantiles (0.5, 0.25, 0.75, 0.05, 0.95), in that order."""
        return cls(*(float(v) for v in q))

    def contains(self, value: float, prob: int = 90) -> bool:
        lo, hi = (self.lower_90, self.upper_90) if prob == 90 else (self.lower_50, self.upper_50)
        return lo <= value <= hi


#: The quantile levels an Estimate is built from, in its field order.
LEVELS = (0.5, 0.25, 0.75, 0.05, 0.95)


@dataclass(frozen=True)
class Question:
    """What the memo answers: a budget, a planned run, a target loss."""

    title: str
    budget: float | None
    plan: dict | None            # inputs of the planned run, e.g. {"N": 7e10, "D": 1.4e12}
    plan_compute: float | None   # the plan's training compute by the laws' cost
    target: float | None
    laws: tuple[str, ...]
    noises: tuple[str, ...]
    utility: str                 # mean | quantile | cvar
    q: float                     # quantile level of the quantile / cvar utility


@dataclass(frozen=True)
class RangeRow:
    """One column of the runs: its range, and the plan's value against the largest run."""

    column: str
    min: float
    max: float
    plan: float | None
    ratio_to_max: float | None


@dataclass(frozen=True)
class TruthRow:
    """A quantity the simulated data let us check against its generating value."""

    quantity: str
    estimate: Estimate
    truth: float

    @property
    def inside_90(self) -> bool:
        return self.estimate.contains(self.truth, 90)


@dataclass(frozen=True)
class DataSummary:
    n_runs: int
    source: str
    runs_hash: str
    file_sha256: str | None
    ranges: tuple[RangeRow, ...]
    n_budgets: int | None            # distinct compute budgets among the runs (isoFLOP grids)
    plan_extrapolation: float | None  # the plan's largest ratio to the largest run (inputs and compute)
    budget_extrapolation: float | None
    note: str | None = None           # e.g. "the data are simulated"
    truth: tuple[TruthRow, ...] = ()


@dataclass(frozen=True)
class FitScore:
    """One fit's row of the PSIS-LOO comparison."""

    name: str
    law: str
    noise: str
    elpd_loo: float
    se: float
    elpd_diff: float
    dse: float
    p_loo: float
    weight: float
    n_pareto_bad: int
    max_pareto_k: float
    n_refit: int
    elpd_waic: float


@dataclass(frozen=True)
class BacktestScore:
    """One fit's held-out scores."""

    name: str
    n_test: int
    median_are: float
    mean_are: float
    coverage_50: float
    coverage_90: float
    mean_rel_width_90: float
    mean_lpd: float
    fits_failed_gate: int


@dataclass(frozen=True)
class ParamRow:
    """A posterior summary of one parameter of one fit (90% central interval)."""

    fit: str
    param: str
    median: float
    lower_90: float
    upper_90: float
    r_hat: float
    ess_bulk: float
    truth: float | None = None


@dataclass(frozen=True)
class Evidence:
    """Which laws were compared and how they did: LOO, stacking weights, the backtest."""

    scores: tuple[FitScore, ...]
    verdict: str
    notes: tuple[str, ...]
    backtest_holdout: str | None
    backtest: tuple[BacktestScore, ...]
    backtest_notes: tuple[str, ...]
    params: tuple[ParamRow, ...]
    skipped: tuple[str, ...] = ()    # what could not be done and why

    @property
    def weights(self) -> dict:
        return {s.name: s.weight for s in self.scores}


@dataclass(frozen=True)
class PlanAnswer:
    """The loss the planned run will reach, from the stacked mixture."""

    inputs: dict
    compute: float | None
    extrapolation: float
    loss: Estimate         # posterior predictive (parameters + run-to-run noise)
    law_loss: Estimate     # the law's value (parameter uncertainty only)
    p_below_target: float | None


@dataclass(frozen=True)
class AllocationAnswer:
    """The compute-optimal split of the budget, per posterior draw, summarised."""

    budget: float
    N: Estimate
    D: Estimate
    ratio: Estimate
    loss: Estimate
    exponent_a: Estimate | None
    exponent_b: Estimate | None
    p_outside_domain: float
    p_at_bound: float


@dataclass(frozen=True)
class Answer:
    plan: PlanAnswer | None
    allocation: AllocationAnswer | None
    choice: object | None           # bayescale.decision.Choice
    regret: object | None           # bayescale.decision.PlanRegret
    target_compute: Estimate | None  # compute an optimal allocation needs to reach the target
    target_reachable: float | None   # posterior probability that the target is reachable at all
    plan_status: str | None          # "near-optimal" or "off-optimal"
    plan_verdict: str | None
    headline: tuple[str, ...]
    caveats: tuple[str, ...]


@dataclass(frozen=True)
class SensitivityRow:
    """The answer under one fit alone (one law, one noise model)."""

    name: str
    law: str
    noise: str
    weight: float
    plan_loss: Estimate | None
    p_below_target: float | None
    ratio: Estimate | None
    N_opt: Estimate | None
    loss_opt: Estimate | None
    regret_mean: float | None


@dataclass(frozen=True)
class Sensitivity:
    rows: tuple[SensitivityRow, ...]
    summary: tuple[str, ...]


@dataclass(frozen=True)
class FitCheck:
    """The diagnostics verdict of one fit (a fit of the answer, or a backtest fit)."""

    name: str
    role: str                 # "answer" or "backtest"
    status: str               # pass | warn | fail
    r_hat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences: int
    draws: int
    tree_depth_hits: int
    max_pareto_k: float | None
    n_pareto_bad: int | None
    reasons: tuple[str, ...]
    advice: tuple[str, ...]


@dataclass(frozen=True)
class DiagnosticsReport:
    checks: tuple[FitCheck, ...]
    status: str               # the worst status over the checks
    banner: str | None        # set when any fit failed

    @property
    def failed(self) -> tuple[FitCheck, ...]:
        return tuple(c for c in self.checks if c.status == FAIL)


@dataclass(frozen=True)
class Reproducibility:
    versions: dict
    seed: int | None
    sampler: dict
    runs_hash: str
    file_sha256: str | None
    cards: dict               # law name -> card hash
    command: str
    created: str              # UTC, ISO 8601
    wall_s: float | None = None


@dataclass(frozen=True)
class Figure:
    """A rendered figure: PNG bytes plus what it shows."""

    name: str                 # file stem: memo/<name>.png
    title: str
    caption: str
    png: bytes = field(repr=False)


@dataclass(frozen=True)
class Memo:
    """A decision memo: computed once by :func:`bayescale.memo.build_memo`, rendered many times."""

    title: str
    question: Question
    data: DataSummary
    evidence: Evidence
    answer: Answer
    sensitivity: Sensitivity
    diagnostics: DiagnosticsReport
    reproducibility: Reproducibility
    figures: tuple[Figure, ...] = ()
    fits: tuple = field(default=(), repr=False, compare=False)
    holdout_fits: tuple = field(default=(), repr=False, compare=False)

    @property
    def failed(self) -> bool:
        return self.diagnostics.status == FAIL

    def as_dict(self) -> dict:
        """JSON-ready: every section, figures by name and caption (no image bytes, no fits)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("fits", "holdout_fits"):
                continue
            out[f.name] = _plain(getattr(self, f.name))
        return out

    def __str__(self) -> str:
        lines = [self.title]
        if self.diagnostics.banner:
            lines.append(self.diagnostics.banner)
        lines += list(self.answer.headline)
        lines.append(f"diagnostics: {self.diagnostics.status.upper()} "
                     f"({sum(c.status == PASS for c in self.diagnostics.checks)} of "
                     f"{len(self.diagnostics.checks)} fits pass)")
        return "\n".join(lines).replace("**", "")


def _plain(obj):
    """Dataclasses, tuples and numpy scalars as JSON-ready values (NaN/inf -> None, bytes dropped)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if isinstance(obj, Figure):
            return {"name": obj.name, "title": obj.title, "caption": obj.caption, "file": f"{obj.name}.png"}
        if hasattr(obj, "as_dict"):   # decision.Choice / PlanRegret (Choice adds its ratio)
            return _plain(obj.as_dict())
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, bytes):
        return None
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
