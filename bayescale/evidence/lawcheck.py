"""The right law is part of honesty: the catalogue's other laws as a check on the one a user named.

A law fitted alone cannot say that another law describes the runs better: on data whose
tokens per parameter vary widely, a Chinchilla fit's extrapolation can be biased one way while
the over-training law is not.  :func:`alternative_laws` lists the built-in laws that the runs
allow (their response and every input present, or derivable as the card says, e.g. ``M = D / N``)
besides the named ones.  :func:`loo_preference` and :func:`backtest_preference` say whether one of
them is *clearly* better than every named law, by the rule :meth:`bayescale.compare.Comparison.verdict`
uses for LOO: a difference of at least 4 in log predictive density that is at least 2 standard
errors of the paired difference.  For the backtest the difference is the sum over the held-out runs
of the paired difference of their log predictive densities, and its standard error is
``sd * sqrt(n)`` of the per-run differences.  The rule is the package's existing one, stated before
any data were looked at; it is not tuned.

The memo (:func:`bayescale.memo.build_memo`, ``law_check=``) and ``bayescale backtest`` use these;
the check never changes which laws the answer stacks (``--laws`` decides that).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ..errors import BayescaleError

__all__ = ["CLEAR_DIFF", "CLEAR_RATIO", "alternative_laws", "backtest_preference", "backtest_with_law_check", "clear",
           "loo_preference"]

CLEAR_DIFF = 4.0      # compare's verdict: a difference of at least 4 ...
CLEAR_RATIO = 2.0     # ... that is at least 2 standard errors


def clear(diff: float, se: float) -> bool:
    """Whether a log-density difference is clear by compare's rule (>= 4 and >= 2 SE)."""
    if not math.isfinite(diff) or diff < CLEAR_DIFF:
        return False
    return se <= 0 or diff / se >= CLEAR_RATIO


def alternative_laws(named, runs, mapping=None) -> list:
    """Built-in laws other than ``named`` (Laws or names) that can be fitted to ``runs``.

    A law qualifies when :func:`bayescale.runs.prepare_runs` accepts the runs for it: the response
    column of the named laws and every input (or what it is derived from) present and valid, and
    enough runs for its parameters.  Catalogue order.
    """
    from ..cards import list_laws, load_law, resolve_law
    from ..runs import prepare_runs

    named = [resolve_law(n) for n in named]
    if not named:
        raise BayescaleError("alternative_laws needs at least one named law")
    taken = {law.name for law in named}
    response = named[0].response.name
    out = []
    for name in list_laws():
        if name in taken:
            continue
        law = load_law(name)
        if law.response.name != response:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prepare_runs(runs, law, mapping=mapping)
        except BayescaleError:
            continue
        out.append(law)
    return out


def loo_preference(table: pd.DataFrame, named: list[str]) -> tuple[str | None, float, float]:
    """(alternative LOO clearly prefers over every named fit or None, its elpd lead, SE of the lead).

    ``table``: :attr:`bayescale.compare.Comparison.table` of the named and alternative fits
    together (best first, ``elpd_diff``/``dse`` relative to the best).
    """
    best = str(table.index[0])
    rows = [n for n in table.index if str(n) in named]
    if not rows:
        raise BayescaleError("loo_preference: none of the named fits is in the comparison table")
    top_named = table.loc[rows].sort_values("elpd_loo", ascending=False).iloc[0]
    lead, se = -float(top_named["elpd_diff"]), float(top_named["dse"])
    if best in named:
        return None, lead, se
    return (best if clear(lead, se) else None), lead, se


def backtest_preference(table: pd.DataFrame, named: list[str], alternatives: list[str]
                        ) -> tuple[str | None, float, float]:
    """(alternative whose held-out log predictive density is clearly above every named law's or None,
    its lead summed over the held-out runs, SE of that sum).

    ``table``: a backtest's per-run table (``law``, ``observed``, ``lpd``), or several such tables
    concatenated; the laws' rows are paired by ``run`` (and ``group`` / ``window``) when the table has
    that column (held-out runs only some laws were scored on are left out), else by position.
    """
    keys = [k for k in ("group", "window", "run") if k in table.columns]
    parts = {str(k): v for k, v in table.groupby("law", sort=False)}
    named = [n for n in named if n in parts]
    alternatives = [a for a in alternatives if a in parts]
    if not named or not alternatives:
        return None, math.nan, math.nan
    total = {k: float(v["lpd"].sum()) for k, v in parts.items()}
    top_named = max(named, key=total.get)
    top_alt = max(alternatives, key=total.get)
    a, b = parts[top_alt], parts[top_named]
    if "run" in keys:        # pair by the held-out run (a law may have skipped a group), not by position
        a, b = (p.set_index(keys) for p in (a, b))
        common = a.index.intersection(b.index)
        a, b = a.loc[common], b.loc[common]
    if len(a) != len(b) or len(a) < 2 or not np.allclose(a["observed"].to_numpy(float),
                                                        b["observed"].to_numpy(float), rtol=1e-12):
        raise BayescaleError(f"backtest_preference: {top_alt!r} and {top_named!r} were not scored on the same "
                             "held-out runs in the same order")
    d = a["lpd"].to_numpy(float) - b["lpd"].to_numpy(float)
    lead, se = float(d.sum()), float(np.std(d, ddof=1) * math.sqrt(len(d)))
    return (top_alt if clear(lead, se) else None), lead, se


def backtest_with_law_check(runs, laws, options: dict):
    """:func:`bayescale.backtest` of the named ``laws`` with ``options``, then of each other built-in law the
    runs allow on the same split, merged into one :class:`~bayescale.backtest.Backtest` whose
    ``law_check`` says whether one of the others is clearly better on the held-out runs."""
    from dataclasses import replace

    from ..backtest import Backtest, _frames, _laws, backtest
    from ..errors import DataError

    named = backtest(runs, laws, **options)
    names = list(named.summary.index)
    raw, _, _ = _frames(runs, options["mapping"])
    alternatives = alternative_laws(_laws(laws), raw, options["mapping"])
    check = {"named": names, "alternatives": [law.name for law in alternatives], "prefers": None,
             "lead": None, "se": None}
    if not alternatives:
        check["sentence"] = "no other built-in law can be fitted to these runs"
        return replace(named, law_check=check)
    notes, done = list(named.notes), []
    for law in alternatives:            # one at a time: a law with too many parameters for the split skips alone
        try:
            done.append(backtest(runs, [law], **options))
        except DataError as exc:
            notes.append(f"law check: {law.name} could not be backtested: {exc}")
    check["alternatives"] = [b.summary.index[0] for b in done]
    if not done:
        check["sentence"] = "none of the other laws could be backtested on this split (see the notes)"
        return replace(named, notes=tuple(dict.fromkeys(notes)), law_check=check)
    others = Backtest(table=pd.concat([b.table for b in done], ignore_index=True),
                      summary=pd.concat([b.summary for b in done]), holdout=named.holdout, probs=named.probs,
                      timings={k: sum(b.timings.get(k, 0.0) for b in done) for k in ("total_s", "fit_s", "fits")},
                      fits=sum((b.fits for b in done), ()))
    notes += [n for b in done for n in b.notes]
    table = pd.concat([named.table, others.table], ignore_index=True)
    summary = pd.concat([named.summary.assign(named=True), others.summary.assign(named=False)])
    try:
        prefers, lead, se = backtest_preference(table, names, list(others.summary.index))
    except BayescaleError as exc:
        prefers, lead, se = None, math.nan, math.nan
        notes.append(f"law check: {exc}")
    check.update(prefers=prefers, lead=None if not math.isfinite(lead) else lead,
                 se=None if not math.isfinite(se) else se)
    listed = ", ".join(check["alternatives"])
    if prefers is not None:
        check["sentence"] = (f"the held-out runs clearly prefer {prefers}, a law not named, over "
                             f"{', '.join(names)}: its log predictive density is higher by {lead:.1f} in total "
                             f"(SE {se:.1f}); rerun with --law {','.join(names)},{prefers} to compare them as equals")
    elif math.isfinite(lead):
        check["sentence"] = (f"none of the other laws ({listed}) is clearly better on the held-out runs (the best "
                             f"of them differs from the best named law by {lead:+.1f} in total log predictive "
                             f"density, SE {se:.1f}; clear means >= 4 and >= 2 SE)")
    else:
        check["sentence"] = f"the other laws ({listed}) could not be paired with the named ones on the held-out runs"
    timings = {k: named.timings.get(k, 0.0) + others.timings.get(k, 0.0) for k in ("total_s", "fit_s", "fits")}
    timings["per_fit_s"] = timings["fit_s"] / max(timings["fits"], 1.0)
    return Backtest(table=table, summary=summary, holdout=named.holdout, probs=named.probs,
                    notes=tuple(dict.fromkeys(notes)), timings=timings, fits=named.fits + others.fits,
                    law_check=check)
