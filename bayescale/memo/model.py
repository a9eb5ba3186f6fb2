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

__all__ = ["AllocationAnswer", "Answer", "BacktestScore", "Coverage", "Decision", "DiagnosticsReport", "DataSummary",
           "Estimate", "Evidence", "Figure", "FitCheck", "FitScore", "LawCheck", "LawCheckRow", "Memo", "ParamRow", "PitRow", "PlanAnswer",
           "Question", "RangeRow", "Reproducibility", "Sensitivity", "SensitivityRow", "TruthRow"]

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
    cal_median_are: float | None = None        # the calibrated band's scores (None: not calibrated)
    cal_coverage_50: float | None = None
    cal_coverage_90: float | None = None
    cal_mean_rel_width_90: float | None = None
    cal_mean_lpd: float | None = None


@dataclass(frozen=True)
class Coverage:
    """How often one fit's 90% predictive intervals covered the held-out runs of the backtest.

    ``below_nominal``: clearly below 90% given the number of held-out runs, i.e.
    ``P(X <= covered)`` < 0.05 for X ~ Binomial(n_test, 0.9) (``p_value``).
    """

    name: str
    weight: float             # the fit's stacking weight in the answer
    n_test: int
    covered: int              # held-out runs inside their central 90% predictive interval
    coverage_90: float
    coverage_50: float
    p_value: float
    below_nominal: bool
    calibrated: bool = False  # the scores are of the calibrated band (the memo's default intervals)


@dataclass(frozen=True)
class PitRow:
    """The LOO-PIT check of one fit behind the answer (see :mod:`bayescale.evidence.predictive`)."""

    name: str
    n: int
    ks: float
    ks_bound: float
    outside_90: float
    inside_50: float
    calibrated: bool
    verdict: str


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
class LawCheckRow:
    """One law of the law check: a named law (in the answer) or an alternative (a check only)."""

    name: str
    law: str
    named: bool
    gate_passed: bool
    elpd_loo: float | None            # None: the LOO comparison could not be made
    elpd_diff: float | None           # to the best of all, <= 0
    dse: float | None
    backtest_n: int | None = None     # None: no backtest
    backtest_median_are: float | None = None
    backtest_coverage_90: float | None = None
    backtest_mean_lpd: float | None = None


@dataclass(frozen=True)
class LawCheck:
    """The catalogue's other laws the runs allow, fitted beside the named ones as a sensitivity check.

    ``loo_prefers`` / ``backtest_prefers``: an alternative that is clearly better than every named law
    (:mod:`bayescale.evidence.lawcheck`'s rule), else None; ``sentences`` say it plainly.  The
    alternatives never enter the stacked answer.
    """

    rows: tuple[LawCheckRow, ...]
    loo_prefers: str | None
    loo_lead: float | None
    loo_se: float | None
    backtest_prefers: str | None
    backtest_lead: float | None
    backtest_se: float | None
    sentences: tuple[str, ...]
    caveats: tuple[str, ...] = ()     # what the Summary says: only when an alternative is clearly better


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
    coverage: tuple[Coverage, ...] = ()   # the backtest's 90% coverage of every fit
    pit: tuple[PitRow, ...] = ()          # LOO-PIT of every fit behind the answer
    law_check: LawCheck | None = None     # the catalogue's other laws as a check (None: not run)

    @property
    def weights(self) -> dict:
        return {s.name: s.weight for s in self.scores}


@dataclass(frozen=True)
class PlanAnswer:
    """The loss the planned run will reach, from the stacked mixture."""

    inputs: dict
    compute: float | None
    extrapolation: float
    loss: Estimate         # the default band: calibrated when ``calibration`` is set, else posterior predictive
    law_loss: Estimate     # the law's value (parameter uncertainty only)
    p_below_target: float | None
    loss_raw: Estimate | None = None          # the posterior predictive alone, when ``loss`` is calibrated
    p_below_target_raw: float | None = None
    calibration: str | None = None            # the calibrated band's label (what it rests on, n)


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
class Decision:
    """The memo's opening: one sentence a lead can act on, its basis, one recommended allocation.

    ``action``: ``approve`` (the plan's split is near-optimal), ``change`` (switch
    to ``allocation``), ``run`` (no plan was given: run ``allocation``),
    ``pilots`` (the laws disagree on the decision and the data cannot settle
    it: run the suggested pilots first), ``rerun`` (the fits behind the answer
    failed the diagnostics gate) or ``predict`` (no allocation can be made for
    the laws: the sentence states the prediction only).
    """

    action: str
    sentence: str             # Markdown (**bold**), human units
    basis: str                # what the probabilities are read from
    allocation: dict | None   # the one allocation recommended: {"N": ..., "D": ...} (exact values)
    source: str | None        # where it comes from: "plan" or the utility ("expected loss", ...)
    pilots: tuple = ()        # suggested pilot runs: ({"N": ..., "D": ..., "C": ...}, ...)


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
    decision: Decision | None = None
    disagreement: str | None = None  # the laws disagree on the decision: what and how much (Summary)
    target_text: str | None = None   # the compute an optimal split needs to reach the target, in words
    coverage_text: str | None = None  # the backtest coverage stated beside the headline interval


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
    p_within: float | None = None     # P(the plan within 5% of compute-optimal) under this fit alone


@dataclass(frozen=True)
class Sensitivity:
    rows: tuple[SensitivityRow, ...]
    summary: tuple[str, ...]


@dataclass(frozen=True)
class FitCheck:
    """The diagnostics verdict of one fit (a fit of the answer, or a backtest fit)."""

    name: str
    role: str                 # "answer", "sensitivity" (stacking weight < 1%) or "backtest"
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
    banner: str | None        # set when a fit failed the gate
    banner_kind: str | None = None   # "fail" (a fit behind the answer failed) or "warn" (only supporting fits)
    answer_status: str = PASS        # the worst status over the fits behind the answer

    @property
    def failed(self) -> tuple[FitCheck, ...]:
        return tuple(c for c in self.checks if c.status == FAIL)

    @property
    def answer_failed(self) -> bool:
        return self.answer_status == FAIL


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
        """A fit behind the answer failed the diagnostics gate (backtest and sensitivity fits do not count)."""
        return self.diagnostics.answer_failed

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
        if self.answer.decision is not None:
            lines += [self.answer.decision.sentence, self.answer.decision.basis]
        lines += list(self.answer.headline)
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
