"""The evidence behind a memo: the fits, the backtests, the comparison table, the data summary."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from ..errors import DataError, DataWarning
from .model import BacktestScore, Coverage, DataSummary, Evidence, FitScore, ParamRow, PitRow, RangeRow

__all__ = ["ANSWER_WEIGHT", "_backtests", "_data_summary", "_evidence", "_fit_all", "_law_check", "binomial_cdf"]

#: A fit whose stacking weight is below this is not "behind the answer": it only shows in the sensitivity.
ANSWER_WEIGHT = 0.01


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), exactly (in log space: no overflow for large n)."""
    import math

    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
             + (n - i) * math.log1p(-p) for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _fit_all(runs, specs, mapping, settings, say, **pooling) -> tuple[list, list[str]]:
    from ..fitting import fit

    fits, notes = [], []
    for i, (law, noise) in enumerate(specs, 1):
        what = law if noise is None else f"{law} ({noise} noise)"
        say(f"fit {i} of {len(specs)}: {what}, {settings['chains']} chains x {settings['draws']} draws "
            f"after {settings['warmup']} warm-up")
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            f = fit(runs, law, noise=noise, mapping=mapping, progress=False, **pooling, **settings)
        notes += [" ".join(str(w.message).split()) for w in caught if issubclass(w.category, DataWarning)]
        verdict = "diagnostics pass" if f.diagnostics.passed else "diagnostics FAIL"
        say(f"  {f.law.name} on {len(f.runs)} runs: {time.perf_counter() - t0:.1f} s, {verdict}")
        fits.append(f)
    return fits, list(dict.fromkeys(notes))


def _pooled(f) -> dict:
    """A pooled fit's pooling as :func:`bayescale.backtest`'s arguments ({} for other fits)."""
    p = f.pooling
    if p is None:
        return {}
    return {"pool": p.column, "vary": dict(zip(p.vary, p.scales)), "offsets": "marginal" if p.marginal else "auto"}


def _fitted_rows(f):
    """The runs a fit was made on, with a pooled fit's group column beside them."""
    if f.pooling is None:
        return f.runs.table
    p = f.pooling
    return f.runs.table.assign(**{p.column: [p.levels[i] for i in p.index]})


def _backtests(frame, fits, names, mapping, holdout, holdout_top, by, split_column, say, calibrate=False):
    """Backtest each fit's law and noise model with its own sampler settings; merge the results.
    ``calibrate``: each fold's fit also gets a calibration from its own training rows, scored beside."""
    from ..backtest import Backtest, backtest

    parts, holdout_fits, notes, skipped = [], [], [], []
    description = None
    for i, (f, name) in enumerate(zip(fits, names), 1):
        s = f.settings
        say(f"backtest {i} of {len(fits)}: {name}, refitted without the held-out runs")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bt = backtest(frame if frame is not None else _fitted_rows(f), [f.law], noise=f.noise,
                              mapping=mapping if frame is not None else None, holdout=holdout,
                              holdout_top=holdout_top, by=by, split_column=split_column,
                              chains=s.get("chains", 4), warmup=s.get("warmup", 1000),
                              draws=s.get("draws", 1000), seed=s.get("seed", 0),
                              target_accept=s.get("target_accept", 0.8), calibrate=calibrate, **_pooled(f))
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
        cal = "" if _opt(row, "cal_coverage_90") is None else f" (calibrated {row['cal_coverage_90']:.2f})"
        say(f"  {name}: median ARE {row['median_are']:.3g}, 90% coverage {row['coverage_90']:.2f}{cal} "
            f"on {int(row['n_test'])} held-out runs")
    if not parts:
        return None, holdout_fits, notes, skipped
    merged = Backtest(table=pd.concat([p[0] for p in parts], ignore_index=True),
                      summary=pd.concat([p[1] for p in parts]), holdout=description,
                      probs=(0.5, 0.9), notes=tuple(dict.fromkeys(notes)),
                      fits=tuple(f for _, f in holdout_fits))
    return merged, holdout_fits, notes, skipped


def _opt(r, col):
    v = r.get(col) if hasattr(r, "get") else None
    return None if v is None or not np.isfinite(v) else float(v)


def _coverage(bt, weights: dict) -> list[Coverage]:
    """Each fit's backtest coverage of the intervals the memo states: the calibrated band's where the
    backtest scored one, else the posterior predictive's."""
    out = []
    for name, r in bt.summary.iterrows():
        n = int(r["n_test"])
        cal = _opt(r, "cal_coverage_90") is not None
        c90 = float(r["cal_coverage_90" if cal else "coverage_90"])
        c50 = float(r["cal_coverage_50" if cal else "coverage_50"])
        covered = int(round(c90 * n))
        p = binomial_cdf(covered, n, 0.9)
        out.append(Coverage(name=str(name), weight=float(weights.get(str(name), 0.0)), n_test=n, covered=covered,
                            coverage_90=c90, coverage_50=c50, p_value=p, below_nominal=p < 0.05, calibrated=cal))
    return out


def _pit(fits, names, weights: dict) -> list[PitRow]:
    from ..evidence.predictive import loo_pit, pit_check

    rows = []
    for f, name in zip(fits, names):
        if weights.get(name, 0.0) < ANSWER_WEIGHT:
            continue
        c = pit_check(loo_pit(f))
        rows.append(PitRow(name=name, n=c.n, ks=c.ks, ks_bound=c.ks_bound, outside_90=c.outside_90,
                           inside_50=c.inside_50, calibrated=c.calibrated, verdict=c.verdict))
    return rows


def _evidence(fits, names, comparison, bt, bt_notes, skipped, truth, weights) -> Evidence:
    scores = []
    if comparison is not None:
        for name, r in comparison.table.iterrows():
            scores.append(FitScore(
                name=str(name), law=str(r["law"]), noise=str(r["noise"]), elpd_loo=float(r["elpd_loo"]),
                se=float(r["se"]), elpd_diff=float(r["elpd_diff"]), dse=float(r["dse"]), p_loo=float(r["p_loo"]),
                weight=float(r["weight"]), n_pareto_bad=int(r["n_pareto_k_bad"]),
                max_pareto_k=float(r["max_pareto_k"]), n_refit=int(r["n_refit"]),
                elpd_waic=float(r["elpd_waic"])))
        verdict = comparison.verdict()
        notes = tuple(n for n in comparison.notes if "WAIC" not in n)   # WAIC is in memo.json, not for the reader
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
                mean_lpd=float(r["mean_lpd"]), fits_failed_gate=int(r["fits_failed_gate"]),
                cal_median_are=_opt(r, "cal_median_are"), cal_coverage_50=_opt(r, "cal_coverage_50"),
                cal_coverage_90=_opt(r, "cal_coverage_90"), cal_mean_rel_width_90=_opt(r, "cal_mean_rel_width_90"),
                cal_mean_lpd=_opt(r, "cal_mean_lpd")))
    params = []
    for f, name in zip(fits, names):
        table = f.summary()
        known = (truth or {}).get(f.law.name, {})
        for p, r in table.iterrows():
            params.append(ParamRow(fit=name, param=str(p), median=float(r["median"]), lower_90=float(r["q5"]),
                                   upper_90=float(r["q95"]), r_hat=float(r["r_hat"]),
                                   ess_bulk=float(r["ess_bulk"]), truth=known.get(str(p))))
    by_name = dict(zip(names, weights))
    return Evidence(scores=tuple(scores), verdict=verdict, notes=notes,
                    backtest_holdout=None if bt is None else bt.holdout, backtest=tuple(backtest),
                    backtest_notes=tuple(bt_notes), params=tuple(params), skipped=tuple(skipped),
                    coverage=tuple(_coverage(bt, by_name)) if bt is not None else (),
                    pit=tuple(_pit(fits, names, by_name)))


def display_source(source: str) -> str:
    """Where the runs came from, as a reader should see it: a file shipped with bayescale by its path in
    the package, ``bayescale/data/...`` (not the install location), a file under the working directory
    relative to it."""
    from pathlib import Path

    try:
        path = Path(source).resolve()
    except (OSError, RuntimeError, ValueError):
        return str(source)
    package = Path(__file__).resolve().parents[1]
    for root, shown in ((package, "bayescale"), (Path.cwd().resolve(), None)):
        try:
            rel = path.relative_to(root)
        except ValueError:
            continue
        return f"bayescale/{rel.as_posix()}" if shown else rel.as_posix()
    return str(source)


def _data_summary(fits, file_sha, plan_inputs, plan_extrap, budget, note, truth_rows) -> DataSummary:
    f0 = fits[0]
    table = f0.runs.table.copy()
    for f in fits[1:]:       # the same runs; laws may use different inputs of them
        for col in f.runs.table.columns:
            if col not in table.columns:
                table[col] = f.runs.table[col].to_numpy()
    cost_fit = next((f for f in fits if f.law.cost is not None), None)
    if cost_fit is not None and "C" not in table.columns:
        table["C"] = cost_fit.law.compute(cost_fit.runs.input_arrays())
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
    return DataSummary(n_runs=len(table), source=display_source(f0.runs.source), runs_hash=f0.runs.hash, file_sha256=file_sha,
                       ranges=tuple(ranges), n_budgets=n_budgets, plan_extrapolation=plan_extrap,
                       budget_extrapolation=budget_extrap, note=note, truth=tuple(truth_rows))


def _law_check(runs, frame, fits, names, mapping, settings, reloo, backtest_args, named_bt, say):
    """Fit the catalogue's other laws the runs allow beside the named ones, compare all by PSIS-LOO and
    (when the named laws were backtested) backtest the others the same way; returns
    (:class:`LawCheck` or None, notes)."""
    from ..compare import compare
    from ..errors import BayescaleError
    from ..evidence.lawcheck import alternative_laws, backtest_preference, loo_preference
    from .model import LawCheck, LawCheckRow

    source, source_mapping = (runs, mapping) if runs is not None else (fits[0].runs.table, None)
    alternatives = alternative_laws([f.law for f in fits], source, source_mapping)
    if not alternatives:
        return None, ["law check: no other built-in law can be fitted to these runs"]
    say(f"law check: fitting the other built-in laws these runs allow ({', '.join(a.name for a in alternatives)}); "
        "a check only, not part of the answer")
    alt_fits, _ = _fit_all(source, [(a.name, None) for a in alternatives], source_mapping, settings, say)
    alt_names = [f.law.name for f in alt_fits]
    notes = []
    table, loo = None, (None, None, None)
    try:
        comparison = compare(list(fits) + alt_fits, names=list(names) + alt_names, reloo=reloo)
        table = comparison.table
        loo = loo_preference(table, list(names))
    except BayescaleError as exc:
        notes.append(f"law check: the LOO comparison with the other laws could not be made: {exc}")
    alt_bt = None
    if named_bt is not None:
        alt_bt, _, _, skipped = _backtests(frame, alt_fits, alt_names, mapping, *backtest_args, say)
        notes += skipped
    bt_pref = (None, None, None)
    if alt_bt is not None:
        both = pd.concat([named_bt.table, alt_bt.table], ignore_index=True)
        try:
            bt_pref = backtest_preference(both, list(names), alt_names)
        except BayescaleError as exc:
            notes.append(f"law check: {exc}")
    rows = []
    summaries = [s for s in (named_bt, alt_bt) if s is not None]
    for f, name, named in [(f, n, True) for f, n in zip(fits, names)] + [(f, n, False) for f, n in
                                                                          zip(alt_fits, alt_names)]:
        r = table.loc[name] if table is not None and name in table.index else None
        b = next((s.summary.loc[name] for s in summaries if name in s.summary.index), None)
        rows.append(LawCheckRow(
            name=name, law=f.law.name, named=named, gate_passed=bool(f.diagnostics.passed),
            elpd_loo=None if r is None else float(r["elpd_loo"]),
            elpd_diff=None if r is None else float(r["elpd_diff"]), dse=None if r is None else float(r["dse"]),
            backtest_n=None if b is None else int(b["n_test"]),
            backtest_median_are=None if b is None else float(b["median_are"]),
            backtest_coverage_90=None if b is None else float(b["coverage_90"]),
            backtest_mean_lpd=None if b is None else float(b["mean_lpd"])))
    sentences, caveats = _law_check_sentences(rows, names, loo, bt_pref, alt_bt is not None)
    check = LawCheck(rows=tuple(rows), loo_prefers=loo[0], loo_lead=_finite(loo[1]), loo_se=_finite(loo[2]),
                     backtest_prefers=bt_pref[0], backtest_lead=_finite(bt_pref[1]), backtest_se=_finite(bt_pref[2]),
                     sentences=tuple(sentences), caveats=tuple(caveats))
    return check, notes


def _finite(v):
    return None if v is None or not np.isfinite(v) else float(v)


def _law_check_sentences(rows, names, loo, bt_pref, backtested: bool) -> tuple[list[str], list[str]]:
    """(every sentence of the law check, the ones the Summary repeats: an alternative clearly better)."""
    named = ", ".join(f"`{n}`" for n in names)
    others = [r for r in rows if not r.named]
    listed = ", ".join(f"`{r.name}`" for r in others)
    out, caveats = [], []
    if loo[0] is not None:
        out.append(f"LOO clearly prefers `{loo[0]}`, a law not named for the answer, over {named}: its elpd_loo is "
                   f"higher by {loo[1]:.1f} (SE of the difference {loo[2]:.1f}).")
        caveats.append(out[-1])
    elif loo[1] is not None and np.isfinite(loo[1]):
        lead = max((r for r in others if r.elpd_loo is not None), key=lambda r: r.elpd_loo, default=None)
        if lead is not None and loo[1] < 0:
            out.append(f"By LOO the best of the other laws ({listed}) is `{lead.name}`, {-loo[1]:.1f} below the "
                       f"best named fit (SE {loo[2]:.1f}): it fits no better than what was named.")
        elif lead is not None:
            out.append(f"By LOO `{lead.name}` is ahead of the named fits by {loo[1]:.1f} (SE {loo[2]:.1f}): not a "
                       "clear difference.")
    if bt_pref[0] is not None:
        out.append(f"The backtest clearly prefers `{bt_pref[0]}`: its held-out log predictive density is higher by "
                   f"{bt_pref[1]:.1f} in total (SE {bt_pref[2]:.1f}) than the best named law's.")
        caveats.append(out[-1])
    elif backtested and bt_pref[1] is not None and np.isfinite(bt_pref[1]):
        out.append(f"On the backtest no other law is clearly better than the named ones (the best other law's "
                   f"held-out log density differs by {bt_pref[1]:+.1f} in total, SE {bt_pref[2]:.1f}).")
    if loo[0] is not None or bt_pref[0] is not None:
        preferred = loo[0] or bt_pref[0]
        laws = ",".join(dict.fromkeys(r.law for r in rows if r.named))
        out.append(f"The answer still stacks only {named}; to let `{preferred}` count, rebuild the memo with it "
                   f"among the laws (`--laws {laws},{preferred}`), or read its numbers in the table.")
        caveats.append(out[-1])
    failed = [r.name for r in others if not r.gate_passed]
    if failed:
        out.append("Fits of other laws that failed the diagnostics gate (read their rows with care): "
                   + ", ".join(f"`{n}`" for n in failed) + ".")
    return out, caveats
