"""The compute rollout: a backtest that is always available inside the training data.

A largest-N backtest needs several model sizes above the fitting range; a
pilot with two model sizes has none.  The compute rollout needs only compute
that varies: for a factor ``F``,

* fit on the rows with ``C < C_max / F`` (``C_max`` the largest compute in
  the table; ``C`` a column, or the law's cost of N and D; for a law of one
  input without a cost, such as a learning curve in x, that input);
* score every run that the cut truncated: with a ``run`` column, a run with
  any checkpoint at ``C >= C_max / F`` is scored at its *final* checkpoint
  (its last, by D), from the fit that saw only its early checkpoints (if
  any); without one, every row is a run and the rows above the cut are
  scored.

With a run column the result's table also says which run each scored row
is (``run_id``), its progress value (``progress``, e.g. D) and how far that
run's own curve was seen by the fit (``seen_progress``; NaN for a run
entirely above the cut).  Each scored run is an extrapolation in compute by up to ``F`` (in N too for
runs entirely above the cut), so the scores say how far the raw posterior
band can be trusted at a known distance; :mod:`bayescale.evidence.calibration`
learns the band's correction from them.  Several factors give one window
each (``window`` = the factor's index), pooled in the summary.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from dataclasses import replace

from ..backtest import ROLLOUT_BATCH_DEFAULT, Backtest, _column, _frames, _laws, _prepare, _probs, _settings
from .folds import _Runner
from ..errors import BayescaleError, DataError
from .structure import progress_column, structure_runs

__all__ = ["compute_cut", "rollout_compute"]


def _factors(factor) -> list[float]:
    values = [factor] if isinstance(factor, (int, float)) and not isinstance(factor, bool) else factor
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise BayescaleError(f"rollout factor must be a number > 1 or a list of them, got {factor!r}") from None
    if not values or not all(math.isfinite(v) and v > 1 for v in values):
        raise BayescaleError(f"rollout factor must be > 1 (fit on C < C_max / F), got {factor!r}")
    return sorted(set(values))


def _compute(frame, raw, laws) -> np.ndarray:
    """C from the table or the law's cost; for a law of one input without a cost, that input."""
    single = {law.input_names[0] for law in laws if len(law.input_names) == 1 and law.cost is None}
    if "C" not in frame.columns and "C" not in raw.columns and len(single) == 1 and len(laws) == 1:
        return _column(frame, raw, single.pop(), laws, "rollout_compute")
    return _column(frame, raw, "C", laws, "rollout_compute")


def compute_cut(compute: np.ndarray, factor: float, run_ids=None, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks ``(train, test)`` of a compute rollout at ``factor`` (module docstring).

    ``run_ids`` (one label per row) and ``progress`` (the column ordering a
    run's checkpoints) make it score each truncated run at its final row.
    """
    compute = np.asarray(compute, float)
    cut = compute.max() / factor
    train = compute < cut
    if run_ids is None:
        return train, ~train
    ids = np.asarray(run_ids).astype(str)
    progress = np.asarray(progress, float)
    test = np.zeros(len(ids), bool)
    for rid in np.unique(ids[~train]):
        rows = np.flatnonzero(ids == rid)
        test[rows[np.argmax(progress[rows])]] = True
    return train, test


def rollout_compute(runs, laws, factor=4.0, *, run: str | None = None, noise: str | None = None, mapping=None,
                    prob=(0.5, 0.9), chains: int = 4, warmup: int = 1000, draws: int = 1000, seed: int = 0,
                    target_accept: float = 0.8, progress: bool = False, batch: bool | None = None) -> Backtest:
    """Compute-rollout backtest: fit ``C < C_max / F``, score each truncated run's final loss.

    ``factor``: F, or a list of factors (one fit per factor and law).
    ``run``: the column naming each row's training run (checkpoint data).
    ``batch``: as :func:`bayescale.backtest.rollout` (each law's factors in one batch).
    Other arguments as :func:`bayescale.backtest`.
    """
    t0 = time.perf_counter()
    laws = _laws(laws)
    probs = _probs(prob)
    factors = _factors(factor)
    raw, frame, _ = _frames(runs, mapping)
    compute = _compute(frame, raw, laws)
    run_ids = order = None
    if run is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure_runs(frame, laws[0], run=run)          # validates: N constant within a run, ...
        run_ids = frame[run].astype(str).to_numpy()
        order = _column(frame, raw, progress_column(frame, laws[0]), laws, "rollout_compute")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = _prepare(laws, frame, noise)
    runner = _Runner(laws, noise, probs, _settings(chains, warmup, draws, seed, target_accept, progress),
                     batch=ROLLOUT_BATCH_DEFAULT if batch is None else bool(batch))
    for j, f in enumerate(factors):
        train, test = compute_cut(compute, f, run_ids, order)
        cut = compute.max() / f
        if not test.any():
            runner.notes.append(f"factor {f:g}: nothing above C = {cut:.4g}; skipped")
            continue
        desc = f"C >= {cut:.4g} = C_max / {f:g}"
        try:
            runner.run(prepared, train, test, desc, {"window": j, "factor": f})
        except DataError as exc:
            runner.notes.append(f"factor {f:g} skipped: {exc}")
    if not runner.jobs:
        raise DataError("compute rollout: no factor left enough runs to fit below the cut: "
                        + "; ".join(runner.notes[:3]))
    what = "each truncated run's final checkpoint" if run is not None else "the runs above the cut"
    desc = (f"compute rollout: fit on C < C_max / F, score {what}, F in " + ", ".join(f"{f:g}" for f in factors))
    result = runner.result(desc, t0)
    if run_ids is None:
        return result
    # which run each scored row is, and how far its own curve had been seen in that window's fit
    table = result.table.copy()
    rows = table["run"].to_numpy(int)
    table["run_id"] = run_ids[rows]
    seen = np.full(len(table), np.nan)
    for i, (row, j) in enumerate(zip(rows, table["window"].to_numpy(int))):
        train, _ = compute_cut(compute, factors[j], run_ids, order)
        own = train & (run_ids == run_ids[row])
        if own.any():
            seen[i] = order[own].max()
    table["progress"] = order[rows]
    table["seen_progress"] = seen
    return replace(result, table=table)
