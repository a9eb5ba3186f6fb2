"""Held-out extrapolation backtests: fit on the small runs, predict the big ones.

A law that describes the runs it was fitted on may still extrapolate badly;
the only direct check is to hide the largest runs, fit on the rest and score
the predictions of the hidden ones.  For every held-out run and every law:

* ``predicted``: the posterior predictive median of the run's response, and
  ``ARE = |predicted - observed| / observed`` (absolute relative error);
* the central 50% and 90% posterior predictive intervals (parameters + noise,
  as :func:`bayescale.predict.predict` computes them), whether the observed
  value falls inside (``hit_50``, ``hit_90``) and their widths;
* ``lpd = log mean_s p(observed | theta_s)``: the log predictive density of
  the observed value (higher is better; it rewards calibrated width).

The summary per law gives the median and mean ARE, the 50% and 90% coverage
(well calibrated: near 0.5 and 0.9), mean widths and mean lpd.

Which runs are held out (one of):

* ``holdout="C>=1e21"``: a comparison ``<column> <op> <number>`` with ``op``
  one of ``>= > <= < == !=`` (parsed, never evaluated); the column may be a
  table column, an input the law derives (``D`` from ``C`` and ``N``) or
  ``C`` from the law's compute cost;
* ``holdout_top=0.2`` (or ``"20%"``) with ``by="C"``: the top fraction of
  runs by that column (ties at the threshold are held out together);
* ``split_column="Training"``: a column that marks the training runs: 1/0 or
  True/False (1 = fit on it), or two labels such as ``fit``/``extrapolate``
  or ``train``/``test`` (``train_value`` names the training label when it
  cannot be recognised).

``group=[...]`` runs the backtest separately on every group of rows (one
learning curve each), pooling the held-out runs in the summary;
``pool="family", vary=[...]`` instead fits one model partially pooled over
the groups and predicts each held-out run by its group's fit.
:func:`rollout` is the expanding-window variant: fit on runs below each of
``k`` increasing thresholds of ``by``, predict the next band.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .cards import Law, resolve_law
from .checks import check_int
from .errors import BayescaleError, DataError, format_rows
from .predict import prob_label
from .runs import prepare_grid, prepare_runs, read_table, rename_columns

__all__ = ["Backtest", "backtest", "parse_holdout", "rollout"]

#: Whether a rollout's windows (or a compute rollout's factors) are batched by default (``batch=None``): on
#: Epoch's runs (benchmarks/rollout_batch.py) the batch took 2.7 s against 3.2 s (k = 3) and 0.7 s against
#: 1.4 s (F = 2, 4, 8), same scores.  A single window stays a NUTS fit.
ROLLOUT_BATCH_DEFAULT = True

_OPS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less,
        "==": np.equal, "!=": np.not_equal}
_HOLDOUT = re.compile(r"^\s*(?P<col>[A-Za-z_][A-Za-z0-9_ .\-]*?)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
                      r"(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_TRAIN_LABELS = {"fit", "train", "training", "in", "in_sample", "insample", "1", "true", "yes"}
_TEST_LABELS = {"extrapolate", "extrapolation", "test", "holdout", "held_out", "heldout", "validation",
                "valid", "val", "eval", "out", "out_of_sample", "0", "false", "no"}


@dataclass(frozen=True)
class Backtest:
    """Per-held-out-run predictions (``table``) and their summary per law (``summary``)."""

    table: pd.DataFrame
    summary: pd.DataFrame
    holdout: str
    probs: tuple[float, ...]
    notes: tuple[str, ...] = ()
    timings: dict = field(default_factory=dict)
    fits: tuple = field(default=(), repr=False, compare=False)
    law_check: dict | None = None     # other laws backtested beside the named ones (``law_check=True``)

    def as_dict(self) -> dict:
        """JSON-ready: summary per law, every held-out run, notes, timings."""
        def records(frame):
            out = []
            for rec in frame.reset_index().to_dict(orient="records"):
                out.append({str(k): _plain(v) for k, v in rec.items()})
            return out

        return {"holdout": self.holdout, "intervals": [f"central {prob_label(p)}% posterior predictive"
                                                       for p in self.probs],
                "summary": records(self.summary), "runs": records(self.table), "notes": list(self.notes),
                "timings": {k: float(v) for k, v in self.timings.items()},
                "law_check": None if self.law_check is None else {k: _plain(v) if not isinstance(v, list) else v
                                                                  for k, v in self.law_check.items()}}

    def __str__(self) -> str:
        labels = [prob_label(p) for p in self.probs]
        cols = ["n_test", "median_are", "mean_are"] + [f"coverage_{lab}" for lab in labels] + \
               [f"mean_rel_width_{labels[-1]}", "mean_lpd", "fits_failed_gate"]
        lines = [f"Backtest: held out {self.holdout}",
                 self.summary[[c for c in cols if c in self.summary.columns]].to_string(
                     float_format=lambda v: f"{v:.4g}"),
                 "ARE = |predictive median - observed| / observed; coverage = share of held-out runs "
                 "inside the central posterior predictive interval; rel_width = width / observed; "
                 "lpd = log predictive density of the observed value."]
        if len(self.table) <= 40:
            show = ["law", "observed", "predicted", "are", f"lower_{labels[-1]}", f"upper_{labels[-1]}",
                    f"hit_{labels[-1]}", "lpd"]
            extra = [c for c in ("group", "window") if c in self.table.columns]
            lines += ["", self.table[extra + show].to_string(float_format=lambda v: f"{v:.4g}")]
        lines += [f"note: {n}" for n in self.notes]
        if self.law_check is not None:
            lines.append(f"law check: {self.law_check['sentence']}")
        return "\n".join(lines)


def _plain(v):
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return v


# --------------------------------------------------------------------------- holdout selection


def parse_holdout(text: str) -> tuple[str, str, float]:
    """``"C>=1e21"`` -> ``("C", ">=", 1e21)``; a DataError for anything else."""
    if not isinstance(text, str):
        raise DataError(f"holdout must be a string such as 'C>=1e21', got {text!r}")
    m = _HOLDOUT.match(text)
    if not m:
        raise DataError(f"holdout {text!r} is not a comparison '<column> <op> <number>' with op one of "
                        ">=, >, <=, <, ==, != (e.g. 'C>=1e21' or 'N > 1e9')")
    value = float(m.group("num"))
    if not math.isfinite(value):
        raise DataError(f"holdout {text!r}: the number must be finite")
    return m.group("col").strip(), m.group("op"), value


def _parse_fraction(value) -> float:
    raw = value
    if isinstance(value, str):
        s = value.strip()
        try:
            value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
        except ValueError:
            raise DataError(f"holdout_top {raw!r} is not a fraction (0.2) or a percentage ('20%')") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise DataError(f"holdout_top must be a fraction in (0, 1) or a percentage such as '20%', got {raw!r}")
    return float(value)


def _column(frame: pd.DataFrame, raw: pd.DataFrame, name: str, laws, where: str) -> np.ndarray:
    """Values of ``name``: a (renamed or original) column, a derived input, or C from a law's cost."""
    for source in (frame, raw):
        if name in source.columns:
            values = pd.to_numeric(source[name], errors="coerce").to_numpy(float)
            if np.isnan(values).any():
                raise DataError(f"{where}: column {name!r} has non-numeric or missing values")
            return values
    for law in laws:
        if name in law.input_names:
            return prepare_grid(frame, law)[name].to_numpy(float)
        if name == "C" and law.cost is not None:
            grid = prepare_grid(frame, law)
            return np.asarray(law.compute({k: grid[k].to_numpy(float) for k in grid.columns}), float)
    raise DataError(f"{where}: unknown column {name!r}; columns are {list(map(str, raw.columns))}"
                    + (" (C is available for laws with a compute cost, e.g. chinchilla)" if name == "C" else ""))


def _split_mask(frame: pd.DataFrame, raw: pd.DataFrame, column: str, train_value) -> tuple[np.ndarray, str]:
    """Boolean mask of *training* rows from a split column, and a description."""
    src = frame if column in frame.columns else raw if column in raw.columns else None
    if src is None:
        raise DataError(f"split column {column!r} does not exist; columns are {list(map(str, raw.columns))}")
    col = src[column]
    if col.isna().any():
        raise DataError(f"split column {column!r} has missing values")
    if train_value is not None:
        train = (col.astype(str) == str(train_value)).to_numpy()
        if not train.any():
            raise DataError(f"split column {column!r} has no value {train_value!r}; values are "
                            f"{sorted(map(str, col.unique()))}")
        return train, f"rows with {column} != {train_value!r}"
    values = sorted(map(str, col.unique()))
    if col.dtype == bool or pd.api.types.is_numeric_dtype(col):
        num = col.astype(float).to_numpy()
        if not set(np.unique(num)) <= {0.0, 1.0}:
            raise DataError(f"split column {column!r} must hold 1/0 or True/False (1 = fit on the run) or two "
                            f"labels such as fit/extrapolate; it has values {values[:8]}")
        return num == 1.0, f"rows with {column} == 0"
    if len(values) != 2:
        raise DataError(f"split column {column!r} must hold two labels (one for fitting, one held out); it "
                        f"has {len(values)}: {values[:8]}")
    train_like = [v for v in values if v.lower() in _TRAIN_LABELS]
    test_like = [v for v in values if v.lower() in _TEST_LABELS]
    if len(train_like) == 1:
        label = train_like[0]
    elif len(test_like) == 1:
        label = next(v for v in values if v != test_like[0])
    else:
        raise DataError(f"split column {column!r} has labels {values}: say which marks the training runs "
                        f"with train_value (CLI: --train-value)")
    held = next(v for v in values if v != label)
    return (col.astype(str) == label).to_numpy(), f"rows with {column} == {held!r}"


def _holdout_mask(frame, raw, laws, holdout, holdout_top, by, split_column, train_value):
    """Boolean mask of held-out rows and its description (exactly one way must be chosen)."""
    chosen = [x is not None for x in (holdout, holdout_top, split_column)]
    if sum(chosen) != 1:
        raise BayescaleError("choose exactly one of holdout ('C>=1e21'), holdout_top (0.2 or '20%', with by) "
                             "and split_column (a 1/0 or fit/test column)")
    if holdout is not None:
        col, op, value = parse_holdout(holdout)
        values = _column(frame, raw, col, laws, f"holdout {holdout!r}")
        mask = _OPS[op](values, value)
        if not mask.any():
            raise DataError(f"holdout {holdout!r} selects none of the {len(values)} runs ({col} ranges "
                            f"{values.min():.4g} to {values.max():.4g}); nothing would be predicted")
        return mask, holdout.strip()
    if holdout_top is not None:
        frac = _parse_fraction(holdout_top)
        values = _column(frame, raw, by, laws, f"holdout_top by {by!r}")
        n_hold = max(1, int(round(frac * len(values))))
        threshold = np.sort(values)[len(values) - n_hold]
        mask = values >= threshold
        return mask, f"top {100 * frac:.4g}% of runs by {by} ({by} >= {threshold:.4g})"
    train, desc = _split_mask(frame, raw, split_column, train_value)
    if train.all():
        raise DataError(f"split column {split_column!r} marks every run for fitting; nothing would be predicted")
    return ~train, desc


# --------------------------------------------------------------------------- fitting and scoring


def _laws(laws) -> list[Law]:
    if isinstance(laws, (str, Law)):
        laws = [laws]
    if not isinstance(laws, (list, tuple)) or not laws:
        raise BayescaleError("laws must be a law name, a Law, or a non-empty list of them")
    out = [resolve_law(law) for law in laws]
    names = [law.name for law in out]
    if len(set(names)) != len(names):
        raise BayescaleError(f"laws must be distinct, got {names}")
    return out


def _frames(runs, mapping):
    raw, source = read_table(runs)
    return raw, rename_columns(raw, mapping), source


def _groups(raw, frame, group):
    if group is None:
        return [(None, raw, frame)]
    group = [group] if isinstance(group, str) else list(group)
    missing = [g for g in group if g not in raw.columns]
    if missing:
        raise DataError(f"group columns {missing} do not exist; columns are {list(map(str, raw.columns))}")
    out = []
    for key, part in raw.groupby(group, sort=True):
        idx = part.index
        key = key if isinstance(key, tuple) else (key,)
        label = " / ".join(str(k) for k in key)
        out.append((label, raw.loc[idx].reset_index(drop=True), frame.loc[idx].reset_index(drop=True)))
    return out


def _settings(chains, warmup, draws, seed, target_accept, progress) -> dict:
    return {"chains": chains, "warmup": warmup, "draws": draws, "seed": seed,
            "target_accept": target_accept, "progress": bool(progress)}


def _probs(prob) -> tuple[float, ...]:
    probs = (prob,) if isinstance(prob, (int, float)) else tuple(prob)
    if not probs or not all(isinstance(p, (int, float)) and 0 < p < 1 for p in probs):
        raise BayescaleError(f"prob must be interval probabilities in (0, 1), e.g. (0.5, 0.9); got {prob!r}")
    return tuple(sorted(set(float(p) for p in probs)))


def _prepare(laws, frame, noise) -> dict:
    return {law.name: prepare_runs(frame, law, noise=noise) for law in laws}


def backtest(runs, laws, *, holdout: str | None = None, holdout_top=None, by: str = "C",
             split_column: str | None = None, train_value=None, group=None, noise: str | None = None,
             mapping=None, prob=(0.5, 0.9), chains: int = 4, warmup: int = 1000, draws: int = 1000,
             seed: int = 0, target_accept: float = 0.8, progress: bool = False, law_check: bool = False,
             calibrate: bool = False, batch: bool | None = None, pool: str | None = None, vary=None,
             offsets: str = "auto") -> Backtest:
    """Fit each law on the runs not held out, predict the held-out runs (module docstring).

    ``runs``: DataFrame or CSV path; ``laws``: a name, a Law or a list;
    ``mapping`` renames columns (``{"x": "Seen Examples", "loss": "Loss"}``);
    ``group``: column(s) whose groups (learning curves) are backtested
    separately (a group whose split leaves too few runs is skipped, with a
    note); each law's fits of all the groups run in one batch
    (:func:`bayescale.fit_many`: lockstep HMC; fits that fail the gate are
    sampled again in the batch with 3x the steps, then refitted by NUTS if
    they still fail; group ``j`` in order gets the seed ``group_seed(seed, j)``)
    unless ``batch=False`` (NUTS, ``fit``, for every group; ``batch=None``, the
    default, batches when there are groups).  Sampler settings apply to every fit.  ``law_check``: also
    backtest the other built-in laws the runs allow (same split and
    settings; :mod:`bayescale.evidence.lawcheck`), add them to the tables
    (summary column ``named`` False) and say in ``law_check`` whether one
    of them is clearly better on the held-out runs (the command line does
    this by default when one law is named).  ``calibrate``: calibrate
    each fold's fit by a compute rollout of its own training rows
    (:func:`bayescale.calibrate`) and score its calibrated band beside
    the raw one (``cal_*`` columns of both tables).  ``pool`` and ``vary``: one model partially
    pooled over the groups of column ``pool`` (``fit(..., group=pool, vary=vary, offsets=offsets)``,
    :mod:`bayescale.inference.pooling`) fitted on the training runs of every group together; each
    held-out run is predicted by its group's view of the fit, or as a new group's run when its group
    has no training runs (a leave-one-group-out split: ``split_column``); table columns ``group``
    and ``new_group``.
    """
    pool_options = _pool_options(pool, vary, offsets, group=group, calibrate=calibrate, law_check=law_check)
    if law_check:
        from .evidence.lawcheck import backtest_with_law_check

        return backtest_with_law_check(runs, laws, dict(
            holdout=holdout, holdout_top=holdout_top, by=by, split_column=split_column, train_value=train_value,
            group=group, noise=noise, mapping=mapping, prob=prob, chains=chains, warmup=warmup, draws=draws,
            seed=seed, target_accept=target_accept, progress=progress, calibrate=calibrate, batch=batch))
    t0 = time.perf_counter()
    laws = _laws(laws)
    probs = _probs(prob)
    raw, frame, _ = _frames(runs, mapping)
    settings = _settings(chains, warmup, draws, seed, target_accept, progress)
    from .evidence.folds import _Runner

    # every group's fits of a law in one batch (fit_many); a single split stays a NUTS fit
    runner = _Runner(laws, noise, probs, settings, calibrate=calibrate,
                     batch=group is not None if batch is None else bool(batch), pool=pool_options)
    description = None
    groups = _groups(raw, frame, group)
    for label, graw, gframe in groups:
        try:
            held, desc = _holdout_mask(gframe, graw, laws, holdout, holdout_top, by, split_column, train_value)
            description = desc
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prepared = _prepare(laws, gframe, noise)
            if pool is not None:
                prepared = _with_labels(prepared, graw, pool)
            extra = {} if label is None else {"group": label}
            runner.run(prepared, ~held, held, desc, extra)
        except DataError as exc:
            if label is None:
                raise
            runner.notes.append(f"group {label!r} skipped: {exc}")
    if not runner.jobs:
        raise DataError("no group could be backtested: " + "; ".join(runner.notes[:3]))
    if group is not None:
        if holdout_top is not None:  # the threshold differs between groups
            description = f"top {100 * _parse_fraction(holdout_top):.4g}% of runs by {by}"
        description = f"{description} in each group of {group if isinstance(group, str) else list(group)}"
    if pool is not None:
        names = vary if isinstance(vary, str) else ", ".join(map(str, vary))
        description = f"{description}; one model partially pooled over {pool!r} ({names} varying by group)"
    return runner.result(description, t0)


def _pool_options(pool, vary, offsets, *, group, calibrate, law_check) -> dict | None:
    """``fit``'s pooling arguments for a pooled backtest, or None; clear errors for what it cannot combine."""
    if pool is None and vary is None:
        return None
    if pool is None or vary is None:
        raise BayescaleError("a pooled backtest needs both pool (the group column) and vary (the parameters "
                             "that vary by group, e.g. vary=['L_c'])")
    if not isinstance(pool, str):
        raise BayescaleError(f"pool must be one column name, got {pool!r}")
    for name, used in (("group (separate learning curves)", group is not None), ("calibrate", calibrate),
                       ("law_check", law_check)):
        if used:
            raise BayescaleError(f"a pooled backtest (pool={pool!r}) cannot be combined with {name}")
    return {"group": pool, "vary": vary, "offsets": offsets}


def _with_labels(prepared: dict, raw: pd.DataFrame, column: str) -> dict:
    """Each law's prepared runs with the pool column's labels beside the inputs (rows align with ``raw``)."""
    from dataclasses import replace

    if column not in raw.columns:
        raise DataError(f"pool column {column!r} does not exist; columns are {list(map(str, raw.columns))}")
    labels = raw[column]
    missing = np.flatnonzero(labels.isna().to_numpy())
    if len(missing):
        raise DataError(f"pool column {column!r} is missing at {format_rows(missing)}; every run needs a group")
    out = {}
    for name, runs in prepared.items():
        if column in runs.table.columns:
            raise DataError(f"pool column {column!r} is also an input or the response of law {name!r}; "
                            "name a label column")
        out[name] = replace(runs, table=runs.table.assign(**{column: labels.astype(str).to_numpy()}))
    return out


def _rollout_thresholds(values: np.ndarray, k: int, start: float) -> list[float]:
    v = np.sort(values)
    n = len(v)
    out = []
    for j in range(k):
        q = start + (1 - start) * j / k
        t = v[min(n - 1, int(math.ceil(q * n)))]
        if not out or t > out[-1]:
            out.append(float(t))
    return out


def rollout(runs, laws, *, by: str = "C", k: int = 3, start: float = 0.5, thresholds=None,
            noise: str | None = None, mapping=None, prob=(0.5, 0.9), chains: int = 4, warmup: int = 1000,
            draws: int = 1000, seed: int = 0, target_accept: float = 0.8, progress: bool = False,
            batch: bool | None = None) -> Backtest:
    """Expanding-window backtest: for thresholds ``t_1 < ... < t_k`` of ``by``, fit on runs with
    ``by < t_j`` and predict the band ``t_j <= by < t_{j+1}`` (the last band is open).
    ``batch``: fit each law's windows in one :func:`bayescale.fit_many` batch (``True``), or each
    by NUTS (``False``); ``None`` (default): batched (:data:`ROLLOUT_BATCH_DEFAULT`).

    Default thresholds: the ``start + (1 - start) j / k`` quantiles of ``by``
    (``j = 0..k-1``), so the first fit uses the lowest ``start`` share of the
    runs and each later one adds the band it was just scored on.
    """
    t0 = time.perf_counter()
    laws = _laws(laws)
    probs = _probs(prob)
    k = check_int("k", k, 1)
    if not (isinstance(start, (int, float)) and 0 < start < 1):
        raise BayescaleError(f"start must be a fraction in (0, 1), got {start!r}")
    raw, frame, _ = _frames(runs, mapping)
    values = _column(frame, raw, by, laws, f"rollout by {by!r}")
    if thresholds is None:
        thresholds = _rollout_thresholds(values, k, start)
    else:
        thresholds = sorted(float(t) for t in thresholds)
        if not thresholds or not all(math.isfinite(t) for t in thresholds):
            raise BayescaleError(f"thresholds must be finite numbers, got {thresholds!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = _prepare(laws, frame, noise)
    from .evidence.folds import _Runner

    runner = _Runner(laws, noise, probs, _settings(chains, warmup, draws, seed, target_accept, progress),
                     batch=ROLLOUT_BATCH_DEFAULT if batch is None else bool(batch))
    bounds = list(thresholds) + [math.inf]
    for j, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        train = values < lo
        test = (values >= lo) & (values < hi)
        if not test.any():
            runner.notes.append(f"window {j}: no runs with {lo:.4g} <= {by} < {hi:.4g}; skipped")
            continue
        desc = f"{by} >= {lo:.4g} (window {j})"
        runner.run(prepared, train, test, desc, {"window": j, "threshold": lo})
    if not runner.jobs:
        raise DataError(f"rollout by {by!r}: every band is empty for thresholds {thresholds}")
    desc = f"expanding window by {by}: fit on {by} < t, predict the next band, t in " + \
           ", ".join(f"{t:.4g}" for t in thresholds)
    return runner.result(desc, t0)
