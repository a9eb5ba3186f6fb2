"""Fitting and scoring the folds of a backtest: every (law, split) pair with the same sampler settings.

:func:`bayescale.backtest`, :func:`bayescale.backtest.rollout` and
:func:`bayescale.evidence.rollout_compute` describe their splits (training rows, held-out rows, a
label) to a :class:`_Runner`, which checks each split leaves enough runs to fit, fits every law on
every split (all splits of a law in one :func:`bayescale.fit_many` batch when asked, else one
:func:`bayescale.fit` each), calibrates the fits when asked, scores each held-out run (prediction,
errors, interval hits and widths, log predictive density) and summarises per law.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd

from ..cards import Law
from ..compare import log_density, lpd
from ..errors import ConvergenceWarning, DataError
from ..predict import predict, prob_label


def _needed(law: Law) -> int:
    return len(law.params) + 2


def _check_enough(law: Law, n_train: int, n_total: int, desc: str) -> None:
    need = _needed(law)
    if n_train < need:
        raise DataError(f"holding out {desc} leaves {n_train} of {n_total} runs to fit; law {law.name!r} has "
                        f"{len(law.params)} parameters plus a noise scale, so it needs at least {need} runs: "
                        "hold out fewer runs")


def _score(fit, test: pd.DataFrame, probs) -> pd.DataFrame:
    """One row per test run: prediction, errors, interval hits and widths, lpd."""
    law = fit.law
    inputs = {k: test[k].to_numpy(float) for k in law.input_names}
    y = test[law.response.name].to_numpy(float)
    calibrated = getattr(fit, "calibration", None) is not None
    with warnings.catch_warnings():    # a failed fold fit is counted in fits_failed_gate and warned by fit()
        warnings.filterwarnings("ignore", message="the fit of .* used here failed", category=ConvergenceWarning)
        # the raw bands only: a calibrated fit's band is computed once, below, with its density
        pred = predict(replace(fit, calibration=None) if calibrated else fit, pd.DataFrame(inputs), prob=probs,
                       warn_beyond=math.inf)
    out = pd.DataFrame(inputs, index=test.index)
    out["observed"] = y
    out["predicted"] = pred["pred_median"].to_numpy()
    out["law_median"] = pred["median"].to_numpy()
    out["are"] = np.abs(out["predicted"] - y) / np.abs(y)
    for p in probs:
        lab = prob_label(p)
        lo, hi = pred[f"pred_lower_{lab}"].to_numpy(), pred[f"pred_upper_{lab}"].to_numpy()
        out[f"lower_{lab}"], out[f"upper_{lab}"] = lo, hi
        out[f"hit_{lab}"] = (lo <= y) & (y <= hi)
        out[f"width_{lab}"] = hi - lo
        out[f"rel_width_{lab}"] = (hi - lo) / np.abs(y)
    out["lpd"] = lpd(log_density(fit, inputs, y))
    out["extrapolation"] = pred["extrapolation"].to_numpy()
    if calibrated:                      # the calibrated band, scored beside the raw one
        from .calibrated import calibrated_forecast

        cal = calibrated_forecast(fit, pd.DataFrame(inputs), probs)
        out["cal_predicted"] = cal.median
        out["cal_are"] = np.abs(cal.median - y) / np.abs(y)
        for p in probs:
            lab = prob_label(p)
            lo, hi = cal.intervals[p]
            out[f"cal_hit_{lab}"] = (lo <= y) & (y <= hi)
            out[f"cal_rel_width_{lab}"] = (hi - lo) / np.abs(y)
        out["cal_lpd"] = cal.logpdf(y)
    return out


def _score_pooled(fit, test: pd.DataFrame, probs, column: str) -> pd.DataFrame:
    """:func:`_score` for a fit pooled over the groups of ``column``: each held-out run predicted by its
    group's view of the fit (:meth:`bayescale.result.Fit.group`), or, for a group with no training runs,
    by a new group's (a fresh offset per draw); columns ``group`` (the level) and ``new_group``."""
    from ..inference.pooling import NEW_GROUP

    labels = test[column].astype(str)
    parts = []
    for level in pd.unique(labels):
        rows = test[labels == level]
        fitted = level in fit.pooling.levels
        part = _score(fit.group(level if fitted else NEW_GROUP), rows, probs)
        part.insert(0, "new_group", not fitted)
        part.insert(0, "group", level)
        parts.append(part)
    return pd.concat(parts).loc[test.index]


def _summarise(table: pd.DataFrame, probs, gate: dict) -> pd.DataFrame:
    rows = []
    for law, part in table.groupby("law", sort=False):
        row = {"law": law, "n_test": len(part), "median_are": float(part["are"].median()),
               "mean_are": float(part["are"].mean())}
        for p in probs:
            lab = prob_label(p)
            row[f"coverage_{lab}"] = float(part[f"hit_{lab}"].mean())
            row[f"mean_width_{lab}"] = float(part[f"width_{lab}"].mean())
            row[f"mean_rel_width_{lab}"] = float(part[f"rel_width_{lab}"].mean())
        row["mean_lpd"] = float(part["lpd"].mean())
        if "cal_lpd" in part.columns:
            row["cal_median_are"] = float(part["cal_are"].median())
            for p in probs:
                lab = prob_label(p)
                row[f"cal_coverage_{lab}"] = float(part[f"cal_hit_{lab}"].mean())
                row[f"cal_mean_rel_width_{lab}"] = float(part[f"cal_rel_width_{lab}"].mean())
            row["cal_mean_lpd"] = float(part["cal_lpd"].mean())
        if "group" in part.columns:
            row["n_groups"] = int(part["group"].nunique())
        row["fits"], row["fits_failed_gate"] = gate.get(law, (0, 0))
        rows.append(row)
    return pd.DataFrame(rows).set_index("law")


class _Runner:
    """Fits and scores every (law, split) pair with the same sampler settings."""

    def __init__(self, laws, noise, probs, settings, calibrate: bool = False, batch: bool = False, pool=None):
        self.laws, self.noise, self.probs, self.settings = laws, noise, probs, settings
        self.calibrate, self.batch = calibrate, batch
        self.pool = pool      # None, or fit's pooling options {"group": column, "vary": ..., "offsets": ...}
        self.rows, self.fits, self.notes, self.jobs = [], [], [], []
        self.gate = {law.name: [0, 0] for law in laws}
        self.fit_seconds = 0.0

    def run(self, prepared: dict, train: np.ndarray, test: np.ndarray, desc: str, extra: dict) -> None:
        """Queue one split (its fits run in :meth:`result`, all splits of a law in one batch)."""
        for law in self.laws:
            _check_enough(law, int(train.sum()), len(train), desc)
        self.jobs.append((prepared, train, test, extra))

    def _fit_all(self, law) -> list:
        """The fits of ``law`` on every queued split's training rows, in order: one :func:`bayescale.fit_many`
        call when batching and there are several (the batch path), else :func:`bayescale.fit` each."""
        from ..fitting import fit as fit_law

        tables = [prepared[law.name].table[train].reset_index(drop=True) for prepared, train, _, _ in self.jobs]
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if self.pool is not None:      # one pooled NUTS fit per split (fit_many fits groups independently)
                fits = [fit_law(t, law=law, noise=self.noise, **self.pool, **self.settings) for t in tables]
            elif self.batch and len(tables) > 1:
                from ..inference.many import fit_many

                batch = fit_many(dict(enumerate(tables)), law=law, noise=self.noise, **self.settings)
                if batch.errors:
                    raise DataError(f"{law.name}: a split's training runs were refused: "
                                    + "; ".join(batch.errors.values()))
                fits = [batch[i] for i in range(len(tables))]
            else:
                fits = [fit_law(t, law=law, noise=self.noise, **self.settings) for t in tables]
        self.fit_seconds += time.perf_counter() - t0
        for w in caught:
            if w.category.__name__ == "DataWarning":
                self.notes.append(f"{law.name}: {w.message}")
        return fits

    def _score_all(self) -> None:
        fits = {law.name: self._fit_all(law) for law in self.laws}
        for j, (prepared, train, test, extra) in enumerate(self.jobs):
            for law in self.laws:
                fitted = fits[law.name][j]
                self.gate[law.name][0] += 1
                if not fitted.diagnostics.passed:
                    self.gate[law.name][1] += 1
                    where = ", ".join(f"{k} {v}" for k, v in extra.items())
                    self.notes.append(f"{law.name}{' (' + where + ')' if where else ''}: fit failed the "
                                      f"diagnostics gate: {'; '.join(fitted.diagnostics.problems)}")
                if self.calibrate:
                    fitted = self._calibrated(fitted, law, extra)
                test_rows = prepared[law.name].table[test]
                scored = (_score(fitted, test_rows, self.probs) if self.pool is None else
                          _score_pooled(fitted, test_rows, self.probs, self.pool["group"]))
                scored.insert(0, "run", np.flatnonzero(test))
                for k, v in reversed(list(extra.items())):
                    scored.insert(0, k, v)
                scored.insert(0, "noise", fitted.noise)
                scored.insert(0, "law", law.name)
                self.rows.append(scored.reset_index(drop=True))
                self.fits.append(fitted)
        self.jobs = []

    def _calibrated(self, fitted, law, extra):
        """The fold's fit calibrated by a compute rollout of its own training rows (or as it was, noted)."""
        from .calibration import calibrate

        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = calibrate(fitted)
        except DataError as exc:
            where = ", ".join(f"{k} {v}" for k, v in extra.items())
            self.notes.append(f"{law.name}{' (' + where + ')' if where else ''}: not calibrated ({exc}); its "
                              "calibrated scores are left out")
            out = fitted
        self.fit_seconds += time.perf_counter() - t0
        return out

    def result(self, holdout: str, t0: float):
        from ..backtest import Backtest

        self._score_all()
        table = pd.concat(self.rows, ignore_index=True)
        summary = _summarise(table, self.probs, {k: tuple(v) for k, v in self.gate.items()})
        n_fits = sum(v[0] for v in self.gate.values())
        timings = {"total_s": time.perf_counter() - t0, "fit_s": self.fit_seconds,
                   "fits": float(n_fits), "per_fit_s": self.fit_seconds / max(n_fits, 1)}
        return Backtest(table=table, summary=summary, holdout=holdout, probs=self.probs,
                        notes=tuple(dict.fromkeys(self.notes)), timings=timings, fits=tuple(self.fits))


