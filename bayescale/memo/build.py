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
import math
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import BayescaleError, DataError
from ..mixture import weighted_quantile
from .checks import diagnostics_report
from .fmt import g, interval, med_int, sentence
from .model import (LEVELS, AllocationAnswer, Answer, BacktestScore, DataSummary, Estimate, Evidence,
                    FitScore, Memo, ParamRow, PlanAnswer, Question, RangeRow, Reproducibility, Sensitivity,
                    SensitivityRow, TruthRow)

__all__ = ["build_memo"]

UTILITIES = ("mean", "quantile", "cvar")


class Progress:
    """One line per step on stderr: ``[memo   12.3 s] fitting kaplan ...``."""

    def __init__(self, enabled: bool, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"[memo {time.perf_counter() - self.t0:6.1f} s] {message}", file=self.stream, flush=True)


# --------------------------------------------------------------------------- argument checks


def _positive(name: str, value, allow_none: bool = True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise BayescaleError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


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
    return {str(k): _positive(f"plan {k}", v, allow_none=False) for k, v in plan.items()}


# --------------------------------------------------------------------------- small helpers


def _estimate(values, weights=None) -> Estimate:
    values = np.asarray(values, float).reshape(-1)
    w = np.full(values.size, 1.0 / values.size) if weights is None else np.asarray(weights, float)
    ok = np.isfinite(values)
    if not ok.any():
        return Estimate(*(math.nan,) * 5)
    return Estimate.from_quantiles(weighted_quantile(values[ok][:, None], w[ok], LEVELS)[:, 0])


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


def _caught(records) -> list[str]:
    return [" ".join(str(w.message).split()) for w in records
            if not issubclass(w.category, (FutureWarning, DeprecationWarning))]


def _fit_names(fits) -> list[str]:
    from ..compare import _names

    return _names(fits, None)


def _allocatable(fits) -> bool:
    from ..optimal import allocation_law_inputs

    try:
        for f in fits:
            allocation_law_inputs(f.law)
    except BayescaleError:
        return False
    return True


# --------------------------------------------------------------------------- the steps


def _fit_all(runs, specs, mapping, settings, say) -> tuple[list, list[str]]:
    from ..fitting import fit

    fits, notes = [], []
    for i, (law, noise) in enumerate(specs, 1):
        what = law if noise is None else f"{law} ({noise} noise)"
        say(f"fit {i} of {len(specs)}: {what}, {settings['chains']} chains x {settings['draws']} draws "
            f"after {settings['warmup']} warm-up")
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            f = fit(runs, law, noise=noise, mapping=mapping, progress=False, **settings)
        notes += [m for m, w in zip(_caught(caught), caught)
                  if w.category.__name__ == "DataWarning"]
        verdict = "diagnostics pass" if f.diagnostics.passed else "diagnostics FAIL"
        say(f"  {f.law.name} on {len(f.runs)} runs: {time.perf_counter() - t0:.1f} s, {verdict}")
        fits.append(f)
    return fits, list(dict.fromkeys(notes))


def _backtests(frame, fits, names, mapping, holdout, holdout_top, by, split_column, say):
    """Backtest each fit's law and noise model with its own sampler settings; merge the results."""
    from ..backtest import Backtest, backtest

    parts, holdout_fits, notes, skipped = [], [], [], []
    description = None
    for i, (f, name) in enumerate(zip(fits, names), 1):
        s = f.settings
        say(f"backtest {i} of {len(fits)}: {name}, refitted without the held-out runs")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bt = backtest(frame if frame is not None else f.runs.table, [f.law], noise=f.noise,
                              mapping=mapping if frame is not None else None, holdout=holdout,
                              holdout_top=holdout_top, by=by, split_column=split_column,
                              chains=s["chains"], warmup=s["warmup"], draws=s["draws"], seed=s["seed"],
                              target_accept=s["target_accept"])
        except DataError as exc:
            skipped.append(f"backtest of {name} skipped: {exc}")
            say(f"  skipped: {exc}")
            continue
        description = bt.holdout
        table = bt.table.copy()
        table["law"] = name
        summary = bt.summary.copy()
        summary.index = [name]
        summary.index.name = "law"
        parts.append((table, summary))
        notes += [n.replace(f.law.name, name, 1) if n.startswith(f.law.name) else n for n in bt.notes]
        for hf in bt.fits:
            holdout_fits.append((name, hf))
        row = summary.iloc[0]
        say(f"  {name}: median ARE {row['median_are']:.3g}, 90% coverage {row['coverage_90']:.2f} "
            f"on {int(row['n_test'])} held-out runs")
    if not parts:
        return None, holdout_fits, notes, skipped
    merged = Backtest(table=pd.concat([p[0] for p in parts], ignore_index=True),
                      summary=pd.concat([p[1] for p in parts]), holdout=description,
                      probs=(0.5, 0.9), notes=tuple(dict.fromkeys(notes)),
                      fits=tuple(f for _, f in holdout_fits))
    return merged, holdout_fits, notes, skipped


def _evidence(fits, names, comparison, bt, bt_notes, skipped, truth) -> Evidence:
    scores = []
    if comparison is not None:
        for name, r in comparison.table.iterrows():
            scores.append(FitScore(
                name=str(name), law=str(r["law"]), noise=str(r["noise"]), elpd_loo=float(r["elpd_loo"]),
                se=float(r["se"]), elpd_diff=float(r["elpd_diff"]), dse=float(r["dse"]), p_loo=float(r["p_loo"]),
                weight=float(r["weight"]), n_pareto_bad=int(r["n_pareto_k_bad"]),
                max_pareto_k=float(r["max_pareto_k"]), n_refit=int(r["n_refit"]),
                elpd_waic=float(r["elpd_waic"])))
        verdict, notes = comparison.verdict(), tuple(comparison.notes)
    else:
        verdict = f"only one fit ({names[0]}): nothing to compare; its weight is 1"
        notes = ()
    backtest = []
    if bt is not None:
        for name, r in bt.summary.iterrows():
            backtest.append(BacktestScore(
                name=str(name), n_test=int(r["n_test"]), median_are=float(r["median_are"]),
                mean_are=float(r["mean_are"]), coverage_50=float(r["coverage_50"]),
                coverage_90=float(r["coverage_90"]), mean_rel_width_90=float(r["mean_rel_width_90"]),
                mean_lpd=float(r["mean_lpd"]), fits_failed_gate=int(r["fits_failed_gate"])))
    params = []
    for f, name in zip(fits, names):
        table = f.summary()
        known = (truth or {}).get(f.law.name, {})
        for p, r in table.iterrows():
            params.append(ParamRow(fit=name, param=str(p), median=float(r["median"]), lower_90=float(r["q5"]),
                                   upper_90=float(r["q95"]), r_hat=float(r["r_hat"]),
                                   ess_bulk=float(r["ess_bulk"]), truth=known.get(str(p))))
    return Evidence(scores=tuple(scores), verdict=verdict, notes=notes,
                    backtest_holdout=None if bt is None else bt.holdout, backtest=tuple(backtest),
                    backtest_notes=tuple(bt_notes), params=tuple(params), skipped=tuple(skipped))


def _data_summary(fits, file_sha, plan_inputs, plan_extrap, budget, note, truth_rows) -> DataSummary:
    f0 = fits[0]
    table = f0.runs.table.copy()
    cost_law = next((f.law for f in fits if f.law.cost is not None), None)
    if cost_law is not None and "C" not in table.columns:
        table["C"] = cost_law.compute(f0.runs.input_arrays())
    ranges = []
    cols = [c for c in table.columns if c != f0.runs.response] + [f0.runs.response]
    for col in cols:
        values = table[col].to_numpy(float)
        pv = None if plan_inputs is None else plan_inputs.get(col)
        ranges.append(RangeRow(column=col, min=float(values.min()), max=float(values.max()),
                               plan=None if pv is None else float(pv),
                               ratio_to_max=None if pv is None else float(pv / values.max())))
    n_budgets = None
    budget_extrap = None
    if "C" in table.columns:
        distinct = len(np.unique(np.round(np.log10(table["C"].to_numpy(float)), 3)))
        n_budgets = distinct if distinct <= len(table) / 2 else None
        if budget is not None:
            budget_extrap = float(budget / table["C"].max())
    return DataSummary(n_runs=len(table), source=f0.runs.source, runs_hash=f0.runs.hash, file_sha256=file_sha,
                       ranges=tuple(ranges), n_budgets=n_budgets, plan_extrapolation=plan_extrap,
                       budget_extrapolation=budget_extrap, note=note, truth=tuple(truth_rows))


def _plan_grid(fits, plan) -> dict:
    """The plan's inputs for every law (derived inputs filled in, e.g. D from C and N)."""
    from ..runs import prepare_grid

    out = dict(plan)
    for f in fits:
        grid = prepare_grid(pd.DataFrame([plan]), f.law)
        for k in grid.columns:
            out.setdefault(k, float(grid[k].iloc[0]))
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
    inputs = {k: float(r[k]) for k in plan}
    return PlanAnswer(inputs=inputs, compute=float(r["C"]) if "C" in p.columns else None,
                      extrapolation=float(r["extrapolation"]), loss=loss, law_loss=law,
                      p_below_target=None if target is None else float(r["p_below_target"])), _caught(caught)


def _row_estimate(row, prefix: str) -> Estimate:
    """An Estimate from a predict() row: ``prefix`` "pred_" (predictive band) or "law_" (law band)."""
    median = row["pred_median"] if prefix == "pred_" else row["median"]
    return Estimate(float(median), *(float(row[f"{prefix}{side}_{p}"]) for p in (50, 90)
                                     for side in ("lower", "upper")))


def _allocation(fits, weights, budget) -> tuple[AllocationAnswer, list[str]]:
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
        exponent_b=exps[1], p_outside_domain=float((w * a.outside_domain[:, 0]).sum()),
        p_at_bound=float((w * (a.at_n_bound[:, 0] | a.at_token_cap[:, 0])).sum()))
    return ans, _caught(caught)


def _plan_verdict(regret, alloc: AllocationAnswer | None, plan_inputs: dict) -> tuple[str, str]:
    ratio = plan_inputs["D"] / plan_inputs["N"]
    near = regret.p_within >= 0.5
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
        plan_loss = p_below = ratio = n_opt = l_opt = regret = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if plan is not None:
                p = predict(f, pd.DataFrame([plan]), prob=(0.5, 0.9), target=target, warn_beyond=math.inf).iloc[0]
                plan_loss = _row_estimate(p, "pred_")
                p_below = None if target is None else float(p["p_below_target"])
            if allocatable and budget is not None:
                a = optimal(f, [budget])
                ratio, n_opt, l_opt = _estimate(a.ratio[:, 0]), _estimate(a.N[:, 0]), _estimate(a.loss[:, 0])
            if regret_ok:
                regret = plan_regret(f, plan["N"], plan["D"]).regret_mean
        rows.append(SensitivityRow(name=name, law=f.law.name, noise=f.noise, weight=float(w), plan_loss=plan_loss,
                                   p_below_target=p_below, ratio=ratio, N_opt=n_opt, loss_opt=l_opt,
                                   regret_mean=regret))
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
                       "laws (--laws) or noise models (--noise) to see how much they move it.")
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


def _headline(question, evidence, plan_ans, alloc, choice, regret, status, target_c, reach) -> list[str]:
    lines = []
    if plan_ans is not None:
        e = plan_ans.loss
        where = ", ".join(f"{k} = {g(v, 3)}" for k, v in plan_ans.inputs.items())
        lines.append(f"Predicted loss of the plan ({where}): median **{g(e.median)}**, 50% interval "
                     f"{interval(e, 50)}, 90% interval {interval(e, 90)} (posterior predictive: parameters and "
                     f"run-to-run noise, stacked over the laws).")
        if plan_ans.p_below_target is not None:
            lines.append(f"P(loss < {g(question.target)}) = **{plan_ans.p_below_target:.2f}**.")
    if alloc is not None:
        lines.append(f"Compute-optimal split of {g(alloc.budget)} FLOPs: N* {med_int(alloc.N)}, D* "
                     f"{med_int(alloc.D)}, D*/N* **{med_int(alloc.ratio)}** tokens per parameter (medians and 90% "
                     f"intervals).")
    if choice is not None:
        lines.append(f"Allocation to run (it minimises the {_utility_words(choice.utility, choice.q)} over the "
                     f"posterior): N {g(choice.N, 3)}, D {g(choice.D, 3)} (D/N {g(choice.ratio, 3)}).")
    if regret is not None:
        lines.append(f"The plan is **{status}**: expected loss regret {g(regret.regret_mean, 2)} against the "
                     f"optimum at its compute; P(within {100 * regret.within:g}% of compute-optimal) = "
                     f"{regret.p_within:.2f}.")
    if target_c is not None:
        lines.append(f"Compute an optimal allocation needs to reach loss {g(question.target)}: median "
                     f"{g(target_c.median, 3)} FLOPs, 90% interval {interval(target_c, 90, 3)}"
                     + (f" (reachable at all in {100 * reach:.0f}% of the posterior)" if reach < 0.995 else "")
                     + ".")
    elif reach is not None:
        lines.append(f"Loss {g(question.target)} is not reachable at any compute under the posterior "
                     f"(it is below the irreducible loss).")
    if evidence.scores:
        lines.append(f"Laws: {evidence.verdict} Stacking weights: "
                     + ", ".join(f"{s.name} {s.weight:.2f}" for s in evidence.scores) + ".")
    return lines


def _title(plan, budget) -> str:
    if plan is not None and {"N", "D"} <= set(plan):
        return f"Decision memo: a run of N = {g(plan['N'], 3)} parameters on D = {g(plan['D'], 3)} tokens"
    if budget is not None:
        return f"Decision memo: spending {g(budget, 3)} FLOPs"
    return "Decision memo"


def _utility_words(utility: str, q: float) -> str:
    return {"mean": "expected loss", "quantile": f"{100 * q:g}% quantile of the loss",
            "cvar": f"expected loss in the worst {100 * (1 - q):g}% of outcomes (CVaR)"}[utility]


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
               command=None, progress=None) -> Memo:
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
    ``progress``: step lines on stderr (default: when stderr is a terminal).
    """
    t_start = time.perf_counter()
    say = Progress(sys.stderr.isatty() if progress is None else bool(progress))
    budget = _positive("budget", budget)
    target = _positive("target", target)
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
    settings = {"chains": chains, "warmup": warmup, "draws": draws, "seed": seed, "target_accept": target_accept}

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
        fits, data_notes = _fit_all(runs, specs, mapping, settings, say)
    else:
        from ..result import Fit

        fits = [fits] if isinstance(fits, Fit) else list(fits)
        if not fits or not all(isinstance(f, Fit) for f in fits):
            raise BayescaleError("fits must be a Fit or a non-empty list of Fit objects")
        say(f"using {len(fits)} fitted law(s): " + ", ".join(f.law.name for f in fits))
    names = _fit_names(fits)

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
                                                         by, split_column, say)
    else:
        skipped.append("no backtest was asked for (backtest=False / --no-backtest)")

    say("predicting the plan, allocating the budget, scoring the plan's regret")
    caveats = list(data_notes)
    plan_inputs = _plan_grid(fits, plan) if plan is not None else None
    plan_compute = None if plan_inputs is None else plan_inputs.get("C")
    if budget is None:
        budget = plan_compute
    allocatable = _allocatable(fits)
    plan_ans = None
    if plan is not None:
        plan_ans, msgs = _predict_plan(fits, weights, plan, target)
        caveats += msgs
    alloc = choice = regret = status = verdict = target_c = reach = None
    if allocatable and budget is not None:
        from ..decision import choose_allocation, plan_regret

        alloc, msgs = _allocation(fits, weights, budget)
        caveats += msgs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            choice = choose_allocation(fits, budget, utility=utility, q=q, weights=weights)
        if plan_inputs is not None and {"N", "D"} <= set(plan_inputs):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                regret = plan_regret(fits, plan_inputs["N"], plan_inputs["D"], within=within, weights=weights)
            status, verdict = _plan_verdict(regret, alloc, plan_inputs)
        if target is not None:
            target_c, reach, msgs = _target_compute(fits, weights, target)
            caveats += msgs
    elif not allocatable:
        skipped.append("no compute-optimal allocation: it needs laws of N and D with a compute cost "
                       f"(fitted: {', '.join(f.law.name for f in fits)})")
    if plan_ans is not None and plan_ans.extrapolation > 10:
        caveats.insert(0, f"The plan lies {plan_ans.extrapolation:.3g}x beyond the largest fitted run (in its "
                          "largest input or compute): the answer rests on the law's form holding that far "
                          "out, which no run can confirm; the backtest shows how well the laws extrapolated "
                          "over a much shorter distance.")
    if alloc is not None and alloc.p_outside_domain > 0.5 and not (plan_ans and plan_ans.extrapolation > 10):
        caveats.append(f"The optimum at the budget lies outside the fitted runs' N or D range in "
                       f"{100 * alloc.p_outside_domain:.0f}% of the posterior.")

    say("sensitivity: the same answers under each fit alone")
    sens = _sensitivity(fits, names, weights, plan_inputs, target, budget,
                        regret is not None, allocatable)
    truth_rows = _truth_rows(truth, fits, plan_inputs, budget) if truth else []

    data = _data_summary(fits, file_sha, plan_inputs, None if plan_ans is None else plan_ans.extrapolation,
                         budget, data_note, truth_rows)
    evidence = _evidence(fits, names, comparison, bt, bt_notes, skipped, truth)
    question = Question(
        title=title or _title(plan_inputs, budget), budget=budget, plan=plan_inputs, plan_compute=plan_compute, target=target,
        laws=tuple(dict.fromkeys(f.law.name for f in fits)), noises=tuple(dict.fromkeys(f.noise for f in fits)),
        utility=utility, q=float(q))
    headline = _headline(question, evidence, plan_ans, alloc, choice, regret, status, target_c, reach)
    answer = Answer(plan=plan_ans, allocation=alloc, choice=choice, regret=regret, target_compute=target_c,
                    target_reachable=reach, plan_status=status, plan_verdict=verdict, headline=tuple(headline),
                    caveats=tuple(dict.fromkeys(sentence(c) for c in caveats)))
    report = diagnostics_report(fits, names, comparison, holdout_fits)

    figs = ()
    if figures:
        say("drawing figures")
        from .figures import memo_figures

        figs = memo_figures(fits, weights, plan_inputs, budget, comparison, bt, sens,
                            plan_loss=None if plan_ans is None else plan_ans.loss,
                            ratio=None if alloc is None else alloc.ratio)
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
                sensitivity=sens, diagnostics=report, reproducibility=repro, figures=figs, fits=tuple(fits),
                holdout_fits=tuple(holdout_fits))
