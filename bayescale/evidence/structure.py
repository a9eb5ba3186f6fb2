"""Runs with structure: checkpoints of one training run, and groups of runs.

A runs table may name a ``run`` column (rows that are checkpoints of one
training run: a learning curve) and ``group`` columns (model family, data
mix, shape, setup).  :func:`structure_runs` validates both and thins the
checkpoints *before* the fit:

* every input of kind ``parameters`` (N) must be constant within a run, and
  a run must lie in one group (errors naming the run and its rows);
* a run id or group label may not be missing (error); a group with a single
  row, or with a single run, is a warning (nothing separates the group from
  that one run);
* checkpoints of one run are **not independent runs**: the law's likelihood
  treats every row as a separate run, so 170 checkpoints of 16 runs make the
  law band about sqrt(170/16) times narrower than 16 final losses would,
  without adding evidence about how the law extrapolates in N.  A run column
  with more than one row per run therefore gives a :class:`DataWarning`
  saying so, unless ``checkpoints`` thins them:

  - ``"all"`` (default): keep every row;
  - ``"final"``: each run's last checkpoint (largest progress value: D, else
    M, else C, else the law's only input);
  - ``"logspaced:K"``: per run, the K checkpoints nearest to K points spaced
    evenly in log progress between its first and its last (the last always
    kept; fewer when the run has fewer rows).

The result is the thinned table (all columns kept, original row order) and a
frozen :class:`RunStructure` that records what was done; ``fit`` stores it
with the fit.  Run and group columns are *not* terms of the model here:
per-run offsets are collinear with the law's N term along a run's
checkpoints (prototyped on Gemstones: they absorbed the N trend), so the
curve-to-curve correlation is left to the calibration of the predictive band
(:mod:`bayescale.evidence.calibration`).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import BayescaleError, DataError, DataWarning, format_rows, plural

__all__ = ["RunStructure", "parse_checkpoints", "progress_column", "structure_runs"]

_LOGSPACED = re.compile(r"^\s*logspaced\s*:\s*(\d+)\s*$")


@dataclass(frozen=True)
class RunStructure:
    """What the run and group columns say about the fitted rows."""

    run: str | None
    groups: tuple[str, ...]
    checkpoints: str
    rows_given: int
    rows_kept: int
    n_runs: int | None
    n_groups: dict
    run_ids: tuple | None = None
    group_ids: dict | None = None        # group column -> the label of every kept row

    def labels(self, by: str) -> tuple:
        """Every kept row's unit for ``by``: ``"run"`` (the run column), ``"group"`` (the one group
        column) or a group column's name."""
        from ..errors import BayescaleError

        if by == "run":
            if self.run_ids is None:
                raise BayescaleError("by='run' needs a fit with a run column (run=..., CLI --run COL)")
            return self.run_ids
        if by == "group":
            if len(self.groups) != 1:
                raise BayescaleError(f"by='group' needs exactly one group column; the fit has {list(self.groups)}: "
                                     "name one")
            by = self.groups[0]
        if not self.group_ids or by not in self.group_ids:
            raise BayescaleError(f"{by!r} is not a run or group column of the fit (run {self.run!r}, groups "
                                 f"{list(self.groups)})")
        return self.group_ids[by]

    @property
    def max_checkpoints(self) -> int | None:
        if self.run_ids is None:
            return None
        return int(pd.Series(self.run_ids).value_counts().max())

    def as_dict(self) -> dict:
        return {"run": self.run, "groups": list(self.groups), "checkpoints": self.checkpoints,
                "rows_given": self.rows_given, "rows_kept": self.rows_kept, "n_runs": self.n_runs,
                "n_groups": dict(self.n_groups),
                "run_ids": None if self.run_ids is None else [str(r) for r in self.run_ids],
                "group_ids": None if self.group_ids is None else {k: [str(v) for v in vals]
                                                                  for k, vals in self.group_ids.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "RunStructure":
        ids = d.get("run_ids")
        return cls(run=d.get("run"), groups=tuple(d.get("groups", ())), checkpoints=d.get("checkpoints", "all"),
                   rows_given=int(d["rows_given"]), rows_kept=int(d["rows_kept"]), n_runs=d.get("n_runs"),
                   n_groups=dict(d.get("n_groups", {})), run_ids=None if ids is None else tuple(ids),
                   group_ids=None if d.get("group_ids") is None else
                   {str(k): tuple(map(str, v)) for k, v in d["group_ids"].items()})


def parse_checkpoints(value) -> tuple[str, int | None]:
    """``"all"`` -> ("all", None); ``"final"`` -> ("final", None); ``"logspaced:8"`` -> ("logspaced", 8)."""
    if isinstance(value, str):
        s = value.strip().lower()
        if s in ("all", "final"):
            return s, None
        m = _LOGSPACED.match(s)
        if m and int(m.group(1)) >= 2:
            return "logspaced", int(m.group(1))
    raise BayescaleError(f"checkpoints must be 'all', 'final' or 'logspaced:K' with K >= 2 "
                         f"(e.g. 'logspaced:8'), got {value!r}")


def _names(value, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value]
    else:
        raise BayescaleError(f"{what} must be a column name or a list of column names, got {value!r}")
    if not names:
        raise BayescaleError(f"{what} names no column")
    return tuple(names)


def progress_column(frame: pd.DataFrame, law) -> str:
    """The column that orders a run's checkpoints: D, else M, else C, else the law's only input."""
    for name in ("D", "M", "C"):
        if name in frame.columns:
            return name
    if len(law.input_names) == 1 and law.input_names[0] in frame.columns:
        return law.input_names[0]
    raise DataError("cannot order the checkpoints of a run: the table has no D, M or C column "
                    f"(columns are {list(map(str, frame.columns))})")


def _labels(frame: pd.DataFrame, col: str, what: str) -> pd.Series:
    if col not in frame.columns:
        raise DataError(f"{what} column {col!r} does not exist; columns are {list(map(str, frame.columns))}")
    values = frame[col]
    missing = np.flatnonzero(values.isna().to_numpy())
    if len(missing):
        raise DataError(f"{what} column {col!r} has {plural(len(missing), 'missing value')} at "
                        f"{format_rows(missing)}; every row needs a {what} label")
    return values.astype(str)


def _check_constant_within(frame: pd.DataFrame, runs: pd.Series, col: str, why: str) -> None:
    values = frame[col]
    counts = values.groupby(runs, sort=False).nunique()
    bad = counts[counts > 1]
    if len(bad):
        name = bad.index[0]
        rows = np.flatnonzero((runs == name).to_numpy())
        seen = sorted(map(str, values[runs == name].unique()))[:4]
        raise DataError(f"run {name!r} has {counts[name]} different values of {col!r} ({', '.join(seen)}) at "
                        f"{format_rows(rows)}; {why}" +
                        (f" ({len(bad) - 1} more runs like it)" if len(bad) > 1 else ""))


def _thin(frame: pd.DataFrame, runs: pd.Series, progress: str, how: str, k: int | None) -> np.ndarray:
    """Boolean mask of the rows kept."""
    keep = np.zeros(len(frame), bool)
    x = pd.to_numeric(frame[progress], errors="coerce").to_numpy(float)
    if np.isnan(x).any() or (how == "logspaced" and np.any(x <= 0)):
        raise DataError(f"column {progress!r} orders the checkpoints and must hold positive numbers")
    for _, idx in runs.groupby(runs, sort=False).indices.items():
        order = idx[np.argsort(x[idx], kind="mergesort")]
        if how == "final" or len(order) == 1:
            keep[order[-1]] = True
            continue
        if len(order) <= k:
            keep[order] = True
            continue
        lx = np.log(x[order])
        targets = np.linspace(lx[0], lx[-1], k)
        chosen = {len(order) - 1}
        for t in targets[:-1]:
            chosen.add(int(np.argmin(np.abs(lx - t))))
        keep[order[sorted(chosen)]] = True
    return keep


def structure_runs(data: pd.DataFrame, law, *, run=None, group=None, checkpoints="all", run_effects: bool = False):
    """Validate run and group columns of ``data`` and thin checkpoints (module docstring).

    Returns ``(table, structure)``: the kept rows (every column, original
    order, a fresh index) and a :class:`RunStructure`; ``structure`` is None
    when neither ``run`` nor ``group`` is given (``checkpoints`` must then
    stay ``"all"``).  ``run_effects``: the fit models each run's offset, so its checkpoints are not
    counted as independent runs (no warning that they are).
    """
    how, k = parse_checkpoints(checkpoints)
    runs_col = _names(run, "run")
    if len(runs_col) > 1:
        raise BayescaleError(f"run must name one column (the training run of each row), got {list(runs_col)}")
    run_col = runs_col[0] if runs_col else None
    group_cols = _names(group, "group")
    if run_col is None and not group_cols:
        if how != "all":
            raise BayescaleError(f"checkpoints={checkpoints!r} needs a run column (run=..., CLI --run COL) "
                                 "saying which rows are checkpoints of the same training run")
        return data, None
    if run_col is not None and run_col in group_cols:
        raise BayescaleError(f"column {run_col!r} is given as both run and group")
    frame = data.reset_index(drop=True)
    rows_given = len(frame)
    groups = {g: _labels(frame, g, "group") for g in group_cols}
    runs = None
    if run_col is not None:
        runs = _labels(frame, run_col, "run")
        for spec in law.inputs:
            if spec.kind == "parameters" and spec.name in frame.columns:
                _check_constant_within(frame, runs, spec.name,
                                       f"{spec.name} ({spec.meaning}) must be constant over the checkpoints of "
                                       "one run; give each model its own run id")
        for g in group_cols:
            _check_constant_within(frame, runs, g, "a run must belong to one group")
        per_run = runs.value_counts()
        if how != "all":
            keep = _thin(frame, runs, progress_column(frame, law), how, k)
            frame = frame[keep].reset_index(drop=True)
            runs = runs[keep].reset_index(drop=True)
            groups = {g: v[keep].reset_index(drop=True) for g, v in groups.items()}
        elif per_run.max() > 1 and not run_effects:
            warnings.warn(
                f"{len(frame)} rows are checkpoints of {len(per_run)} runs (up to {per_run.max()} per run, column "
                f"{run_col!r}); the likelihood counts every row as an independent run, so the law band is "
                f"too narrow by up to sqrt({len(frame)}/{len(per_run)}) = {np.sqrt(len(frame) / len(per_run)):.1f}x "
                "for what the runs can say about larger models. Thin them (checkpoints='final' or "
                "'logspaced:K'; CLI --checkpoints) and/or calibrate the band on a compute rollout "
                "(bayescale.calibrate).", DataWarning, stacklevel=3)
    n_groups = {}
    for g, labels in groups.items():
        counts = labels.value_counts()
        n_groups[g] = int(len(counts))
        single = counts[counts == 1]
        if len(single):
            warnings.warn(f"group column {g!r}: {plural(len(single), 'group')} with a single row "
                          f"({', '.join(map(repr, single.index[:4]))}); nothing in the data separates such a "
                          "group's offset from that row's noise", DataWarning, stacklevel=3)
        if runs is not None:
            runs_per = runs.groupby(labels).nunique()
            lone = runs_per[(runs_per == 1) & (counts.reindex(runs_per.index) > 1)]
            if len(lone):
                warnings.warn(f"group column {g!r}: {plural(len(lone), 'group')} with a single run "
                              f"({', '.join(map(repr, lone.index[:4]))}); its checkpoints say nothing about "
                              "how runs of that group differ from each other", DataWarning, stacklevel=3)
        if len(counts) == 1:
            warnings.warn(f"group column {g!r} has one value ({counts.index[0]!r}) for every row", DataWarning,
                          stacklevel=3)
    structure = RunStructure(run=run_col, groups=group_cols, checkpoints=checkpoints if how == "all" else
                             (how if k is None else f"{how}:{k}"), rows_given=rows_given, rows_kept=len(frame),
                             n_runs=None if runs is None else int(runs.nunique()), n_groups=n_groups,
                             run_ids=None if runs is None else tuple(runs),
                             group_ids={g: tuple(v.astype(str)) for g, v in groups.items()} or None)
    return frame, structure


def apply_structure(data, law, *, mapping=None, run=None, group=None, checkpoints="all", run_effects: bool = False):
    """Read ``data`` (DataFrame or CSV path), rename by ``mapping``, then :func:`structure_runs`.

    Returns ``(frame, structure, source)``: the renamed, thinned table (to be
    validated by :func:`bayescale.runs.prepare_runs` with no further
    renaming), the :class:`RunStructure` (None without run/group columns) and
    where the table came from.
    """
    from ..runs import read_table, rename_columns

    frame, source = read_table(data)
    frame = rename_columns(frame, mapping)
    frame, structure = structure_runs(frame, law, run=run, group=group, checkpoints=checkpoints,
                                      run_effects=run_effects)
    return frame, structure, source
