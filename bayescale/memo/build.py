"""``build_memo``: fit, compare, backtest, predict, allocate; return one frozen :class:`Memo`.

The order is the pipeline's: the runs are fitted by every law (x noise
model); the fits are compared by PSIS-LOO and their stacking weights give
the mixture every answer is read from; each law is backtested on the
largest runs; the plan's loss, the compute-optimal allocation at the
budget, the allocation chosen under the stated utility and the plan's
regret come from the mixture; the same answers per fit show how much the
choice of law and noise model moves them; every fit's diagnostics are
judged pass / warn / fail.  Progress (which fit is running) goes to stderr.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from ..checks import positive_number
from ..errors import BayescaleError
from ..progress import Steps
from ._common import _allocatable, _fit_names
from .answer import _answer, _plan_grid, _sensitivity, _truth_rows
from .checks import diagnostics_report
from .evidence import _backtests, _data_summary, _evidence, _fit_all, _law_check
from .fmt import count, flops, quantity
from .model import Memo, Question, Reproducibility

__all__ = ["build_memo"]

UTILITIES = ("mean", "quantile", "cvar")


# --------------------------------------------------------------------------- argument checks


def _names_list(value, what: str) -> list:
    if value is None:
        return [None]
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    else:
        items = list(value)
    if not items:
        raise BayescaleError(f"{what} must name at least one, got {value!r}")
    return items


def _check_plan(plan) -> dict | None:
    if plan is None:
        return None
    if not isinstance(plan, dict) or not plan:
        raise BayescaleError(f"plan must be a dict of the planned run's inputs such as "
                             f"{{'N': 7e10, 'D': 1.4e12}}, got {plan!r}")
    return {str(k): positive_number(f"plan {k}", v, allow_none=False) for k, v in plan.items()}


# --------------------------------------------------------------------------- small helpers


def _file_sha256(runs) -> str | None:
    if isinstance(runs, (str, Path)) and Path(runs).is_file():
        return hashlib.sha256(Path(runs).read_bytes()).hexdigest()
    return None


def _versions(fits) -> dict:
    from importlib import metadata

    out = dict(fits[0].versions) if fits else {}
    for pkg in ("matplotlib", "scipy", "arviz"):
        if pkg not in out:
            try:
                out[pkg] = metadata.version(pkg)
            except metadata.PackageNotFoundError:
                out[pkg] = "not installed"
    return out


def _calibrate_all(fits, names, say) -> tuple[list, list[str]]:
    """Every fit with a calibration (those given with one keep it); notes for those that could not be."""
    from ..errors import DataError
    from ..evidence.calibration import DEFAULT_FACTORS, calibrate

    cuts = " and ".join(f"C_max / {f:g}" for f in DEFAULT_FACTORS)
    out, notes = [], []
    for f, name in zip(fits, names):
        if getattr(f, "calibration", None) is not None:
            out.append(f)
            continue
        say(f"calibrating {name}: a compute rollout of its own runs (refits below {cuts})")
        try:
            out.append(calibrate(f))
        except DataError as exc:
            notes.append(f"{name} could not be calibrated ({exc}); the memo states the posterior predictive "
                         "intervals alone")
            out.append(f)
    if any(f.calibration is None for f in out):
        out = [replace(f, calibration=None) for f in out]     # the band needs every fit of the mixture
    return out, notes


def _thin_calibration(fits) -> str | None:
    """A caveat when a stated calibrated band rests on fewer rollout runs than a conformal factor needs."""
    from ..evidence.calibration import MIN_CONFORMAL

    n = min(f.calibration.n for f in fits)
    if n >= MIN_CONFORMAL:
        return None
    return (f"The calibrated band rests on only {n} rollout run{'s' if n != 1 else ''} (the runs above its compute "
            f"rollout's cuts, C_max / F), fewer than the {MIN_CONFORMAL} a conformal correction needs: "
            "its width is mostly its prior (learned on public data), not a measurement on these runs.")


def _title(plan, budget) -> str:
    if plan is not None and {"N", "D"} <= set(plan):
        return f"Decision memo: a run of {count(plan['N'])} parameters on {count(plan['D'])} tokens"
    if plan is not None:
        return "Decision memo: a run at " + ", ".join(quantity(k, v) for k, v in plan.items())
    if budget is not None:
        return f"Decision memo: spending {flops(budget)}"
    return "Decision memo"


def _command(command, laws, noises, budget, plan, target) -> str:
    if command:
        return command
    args = [f"laws={list(laws)!r}"]
    if noises and noises != (None,):
        args.append(f"noise={list(noises)!r}")
    for name, v in (("budget", budget), ("plan", plan), ("target", target)):
        if v is not None:
            args.append(f"{name}={v!r}")
    return f"bayescale.memo.build_memo(runs, {', '.join(args)}, ...)"


def build_memo(runs=None, laws=("chinchilla",), *, budget=None, plan=None, target=None, noise=None,
               fits=None, mapping=None, holdout_top="20%", holdout=None, split_column=None, by="C",
               backtest: bool = True, utility: str = "mean", q: float = 0.9, within: float = 0.05,
               reloo=None, chains: int = 4, warmup: int = 1000, draws: int = 1000, seed: int = 0,
               target_accept: float = 0.8, figures: bool = True, title=None, data_note=None, truth=None,
               command=None, progress=None, law_check="auto", calibrate="auto", group=None, pool=None, vary=None,
               offsets="auto") -> Memo:
    """Everything a decision memo states, computed once (see the module docstring).

    ``runs``: DataFrame or CSV path; ``laws``: names (or Laws), fitted with
    every noise model in ``noise`` (default: each card's); or ``fits``: fits
    already made (then ``runs`` is only used for a ``split_column``
    backtest).  ``budget`` (FLOPs; default the plan's compute), ``plan``
    (inputs of the planned run, e.g. ``{"N": 7e10, "D": 1.4e12}``) and
    ``target`` (a loss) are the question.  The backtest holds out
    ``holdout_top`` of the runs by ``by`` (or ``holdout="C>=1e21"``, or the
    runs marked by ``split_column``); ``backtest=False`` skips it.  The
    allocation to run minimises ``utility`` (``mean``, ``quantile`` or
    ``cvar`` at level ``q``).  ``truth``: for simulated data, the generating
    parameters per law name, shown beside the posterior.  ``command``: the
    command line to record (default: a description of this call).
    ``progress``: one line per step on stderr (default; ``False`` silences it).
    ``law_check``: also fit the other built-in laws the runs allow, compare them with the named ones
    by PSIS-LOO and backtest them the same way, and say plainly when one is clearly better
    (:mod:`bayescale.evidence.lawcheck`); they never enter the answer.  ``"auto"`` (default) does so
    when ``laws`` names exactly one law (not for ``fits``), ``True`` always, ``False`` never.
    ``calibrate``: the stated intervals are the extrapolation-calibrated band
    (:func:`bayescale.calibrate`: a compute rollout of each fit's own runs), labelled, with the
    posterior predictive beside it, and the backtest scores that band too (each fold calibrated on
    its own training rows).  ``"auto"`` (default): when the memo fits the laws, or when every given
    fit already carries a calibration; ``True`` calibrates given fits that lack one; ``False`` never.
    ``pool`` and ``vary`` (with ``runs``): fit each law partially pooled over the groups of column
    ``pool`` (``fit(..., group=pool, vary=vary, offsets=offsets)``); ``group``: for fits pooled over
    groups (fitted here or given), the group the memo answers for, a level or ``"new"`` (a group not in
    the data).  Pooled fits are compared whole, backtested as one pooled model per split
    (:func:`bayescale.backtest`, ``pool=``), and answered for ``group``; their band is the posterior
    predictive (the extrapolation calibration and the law check are not available for them yet).
    """
    t_start = time.perf_counter()
    say = Steps("memo", progress is not False)
    budget = positive_number("budget", budget)
    target = positive_number("target", target)
    plan = _check_plan(plan)
    if utility not in UTILITIES:
        raise BayescaleError(f"utility must be one of {', '.join(UTILITIES)}, got {utility!r}")
    if not (isinstance(q, (int, float)) and 0 < q < 1):
        raise BayescaleError(f"q must be in (0, 1), got {q!r}")
    if backtest and sum(x is not None for x in (holdout, holdout_top, split_column)) != 1:
        if holdout is not None or split_column is not None:
            holdout_top = None
        if sum(x is not None for x in (holdout, holdout_top, split_column)) != 1:
            raise BayescaleError("choose one of holdout_top, holdout and split_column for the backtest "
                                 "(or backtest=False)")
    if law_check not in ("auto", True, False):
        raise BayescaleError(f"law_check must be 'auto', True or False, got {law_check!r}")
    if calibrate not in ("auto", True, False):
        raise BayescaleError(f"calibrate must be 'auto', True or False, got {calibrate!r}")
    settings = {"chains": chains, "warmup": warmup, "draws": draws, "seed": seed, "target_accept": target_accept}
    asked = (law_check, calibrate)       # before "auto" is resolved: what a pooled memo must refuse

    frame, file_sha = None, None
    if runs is not None:
        from ..runs import read_table

        file_sha = _file_sha256(runs)
        frame, _ = read_table(runs)
    data_notes = []
    if fits is None:
        if runs is None:
            raise BayescaleError("build_memo needs runs (a DataFrame or CSV path) or fits")
        law_list = _names_list(laws, "laws")
        if law_list == [None]:
            raise BayescaleError("laws must name at least one law, e.g. ['chinchilla', 'kaplan']")
        specs = [(law, n) for law in law_list for n in _names_list(noise, "noise")]
        pooling = _pool_arguments(pool, vary, offsets, group, *asked)
        fits, data_notes = _fit_all(runs, specs, mapping, settings, say, **pooling)
        if law_check == "auto":
            law_check = len(law_list) == 1
        if calibrate == "auto":
            calibrate = True
    else:
        from ..result import Fit

        if pool is not None or vary is not None:
            raise BayescaleError("pool and vary say how to fit the runs; with fits=, the fits' own pooling is used")
        fits = [fits] if isinstance(fits, Fit) else list(fits)
        if not fits or not all(isinstance(f, Fit) for f in fits):
            raise BayescaleError("fits must be a Fit or a non-empty list of Fit objects")
        say(f"using {len(fits)} fitted law(s): " + ", ".join(f.law.name for f in fits))
        if law_check == "auto":
            law_check = False
        if calibrate == "auto":
            calibrate = all(getattr(f, "calibration", None) is not None for f in fits)
    names = _fit_names(fits)
    group_note = _pooled_memo(fits, group, *asked)
    if group_note is not None:
        law_check, calibrate = False, False
        data_notes = list(data_notes) + [group_note]
    if calibrate:
        fits, cal_notes = _calibrate_all(fits, names, say)
        data_notes = list(data_notes) + cal_notes
        calibrate = all(f.calibration is not None for f in fits)

    comparison = None
    if len(fits) > 1:
        say(f"comparing {len(fits)} fits by PSIS-LOO (exact refits for runs with Pareto k > 0.7)")
        from ..compare import compare

        comparison = compare(fits, names=names, reloo=reloo)
        weights = [comparison.weights[n] for n in names]
        say(f"  {comparison.verdict()}")
    else:
        weights = [1.0]

    bt, holdout_fits, bt_notes, skipped = None, [], [], []
    if backtest:
        bt, holdout_fits, bt_notes, skipped = _backtests(frame, fits, names, mapping, holdout, holdout_top,
                                                         by, split_column, say, calibrate=calibrate)
    else:
        skipped.append("no backtest was asked for (backtest=False / --no-backtest)")
    fits_whole = fits                   # what the memo keeps and saves: pooled fits whole
    if group_note is not None:          # from here on, every answer is the named group's
        from ..mixture import for_group

        fits = for_group(fits, group)

    check = None
    if law_check:
        check, check_notes = _law_check(runs, frame, fits, names, mapping, settings, reloo,
                                        (holdout, holdout_top, by, split_column), bt, say)
        skipped += check_notes

    plan_inputs = _plan_grid(fits, plan) if plan is not None else None
    plan_compute = None if plan_inputs is None else plan_inputs.get("C")
    if budget is None:
        budget = plan_compute
    say("checking calibration (LOO-PIT) and every fit's diagnostics")
    evidence = replace(_evidence(fits, names, comparison, bt, bt_notes, skipped, truth, weights), law_check=check)
    report = diagnostics_report(fits, names, comparison, holdout_fits, weights)
    question = Question(
        title=title or _title(plan_inputs, budget), budget=budget, plan=plan_inputs, plan_compute=plan_compute,
        target=target, laws=tuple(dict.fromkeys(f.law.name for f in fits)),
        noises=tuple(dict.fromkeys(f.noise for f in fits)), utility=utility, q=float(q))
    allocatable = _allocatable(fits)
    regret_ok = allocatable and budget is not None and plan_inputs is not None and {"N", "D"} <= set(plan_inputs)
    say("sensitivity: the answers under each fit alone")
    sens = _sensitivity(fits, names, weights, plan_inputs, target, budget, regret_ok, allocatable)
    say("the stacked answer: the plan's loss, the allocation at the budget, the plan's regret")
    answer = _answer(fits, weights, names, plan_inputs, question, evidence, within, data_notes, sens, report)
    if check is not None and check.caveats:
        answer = replace(answer, caveats=tuple(answer.caveats) + check.caveats)
    thin = _thin_calibration(fits) if answer.plan is not None and answer.plan.calibration else None
    if thin:
        answer = replace(answer, caveats=tuple(answer.caveats) + (thin,))
    truth_rows = _truth_rows(truth, fits, plan_inputs, budget) if truth else []
    data = _data_summary(fits, file_sha, plan_inputs, None if answer.plan is None else answer.plan.extrapolation,
                         budget, data_note, truth_rows)

    figs = ()
    if figures:
        from .figures import memo_figures

        figs = memo_figures(fits, weights, plan_inputs, budget, comparison, bt, sens,
                            plan_loss=None if answer.plan is None else answer.plan.loss,
                            ratio=None if answer.allocation is None else answer.allocation.ratio,
                            target=target, names=names, say=say)
    first = fits[0].settings
    repro = Reproducibility(
        versions=_versions(fits), seed=first.get("seed"),
        sampler={k: first.get(k) for k in ("chains", "warmup", "draws", "target_accept", "dense_mass",
                                           "max_tree_depth", "chain_method")},
        runs_hash=fits[0].runs.hash, file_sha256=file_sha,
        cards={f.law.name: f.card_hash for f in fits},
        command=_command(command, [f.law.name for f in fits], tuple(dict.fromkeys(f.noise for f in fits)),
                         budget, plan, target),
        created=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        wall_s=time.perf_counter() - t_start)
    say(f"memo built in {repro.wall_s:.1f} s; diagnostics {report.status.upper()}")
    return Memo(title=question.title, question=question, data=data, evidence=evidence, answer=answer,
                sensitivity=sens, diagnostics=report, reproducibility=repro, figures=figs, fits=tuple(fits_whole),
                holdout_fits=tuple(holdout_fits))


def _pool_arguments(pool, vary, offsets, group, law_check, calibrate) -> dict:
    """``fit``'s pooling arguments for the memo's own fits ({} when not pooling), checked before any fit."""
    if pool is None and vary is None:
        return {}
    if pool is None or vary is None:
        raise BayescaleError("a pooled memo needs both pool (the group column) and vary (the parameters that vary "
                             "by group, e.g. vary=['L_c'])")
    if group is None:
        raise BayescaleError(f"a memo pooled over {pool!r} answers for one group: give group=LEVEL (CLI --group "
                             "LEVEL), or 'new' for a group not in the data")
    _refuse_for_pooled(law_check, calibrate)
    return {"group": pool, "vary": vary, "offsets": offsets}


def _refuse_for_pooled(law_check, calibrate) -> None:
    for name, value in (("law_check", law_check), ("calibrate", calibrate)):
        if value is True:
            raise BayescaleError(f"{name}=True is not available for fits pooled over groups yet")


def _pooled_memo(fits, group, law_check, calibrate) -> str | None:
    """For fits pooled over groups: check ``group`` and what cannot be combined; the data note saying whose
    answer the memo gives.  None when no fit is pooled (then ``group`` must be None)."""
    pooled = [f for f in fits if f.pooling is not None]
    if not pooled:
        if group is not None:
            raise BayescaleError(f"group={group!r} is given, but no fit is pooled over groups (fit with pool= and "
                                 "vary=, CLI --pool COL --vary P)")
        return None
    p = pooled[0].pooling
    if len(pooled) != len(fits) or any(f.pooling.column != p.column for f in pooled):
        raise BayescaleError("a memo's fits must all be pooled over the same group column, or none of them")
    if group is None:
        shown = ", ".join(map(repr, p.levels[:12])) + (" ..." if len(p.levels) > 12 else "")
        raise BayescaleError(f"the fits are pooled over {len(p.levels)} groups of {p.column!r}: say which group the "
                             f"memo answers for, group=LEVEL (CLI --group LEVEL): one of {shown}, or 'new'")
    _refuse_for_pooled(law_check, calibrate)
    index = p.level_index(group)       # a clear error for a level that is not in the data
    whose = "a new group (one not in the data: a fresh group offset per draw)" if index is None else \
        f"group {str(group)!r}"
    return (f"The answers are for {whose} of column {p.column!r}, from one model partially pooled over its "
            f"{len(p.levels)} groups ({', '.join(p.vary)} varying by group, the rest shared); the stated bands are "
            "the posterior predictive (the extrapolation calibration is not available for pooled fits yet).")
