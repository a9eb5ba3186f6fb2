"""Posterior draws of one fit, or of several fits mixed with weights.

``predict`` and ``optimal`` accept one :class:`~bayescale.result.Fit` or a list
of fits with weights (e.g. stacking weights from ``compare``): the result is
the weighted mixture of the fits' posteriors, so an answer need not bet on
one law.  Each member contributes its own draws, each draw weighted
``w_member / n_draws``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .errors import BayescaleError, ConvergenceWarning
from .result import Fit

__all__ = ["Member", "members", "probability", "warn_failed", "weighted_quantile"]


@dataclass(frozen=True)
class Member:
    fit: Fit
    weight: float

    def params(self) -> dict:
        """Posterior draws of every law parameter and sigma, flattened, float64."""
        return {k: self.fit.draws(k).astype(float) for k in self.fit.var_names}


def warn_failed(fits) -> None:
    """A :class:`~bayescale.errors.ConvergenceWarning` for every fit in ``fits`` that failed the gate."""
    for f in fits:
        if not f.diagnostics.passed:
            warnings.warn(f"the fit of {f.law.name!r} ({f.noise} noise) used here failed the diagnostics gate ("
                          + "; ".join(f.diagnostics.problems) + "): its draws may not represent the posterior, "
                          "so numbers read from them may be wrong; refit it as its diagnostics advise",
                          ConvergenceWarning, stacklevel=4)


def for_group(fits, group):
    """``fits`` (one Fit or a sequence) with every fit pooled over groups replaced by its fit of
    ``group`` (a level, or ``"new"``; :meth:`~bayescale.result.Fit.group`).  ``group=None`` returns
    ``fits`` unchanged."""
    if group is None:
        return fits
    many = isinstance(fits, (list, tuple))
    items = list(fits) if many else [fits]
    if not any(isinstance(f, Fit) and f.pooling is not None for f in items):
        raise BayescaleError(f"group={group!r} is given, but no fit here is pooled over groups "
                             "(fit with group=... and vary=[...])")
    items = [f.group(group) if isinstance(f, Fit) and f.pooling is not None else f for f in items]
    return items if many else items[0]


def members(fits, weights=None) -> list[Member]:
    """Normalise ``fits`` (one Fit or a sequence) and ``weights`` into members; warn about failed fits.

    A fit pooled over groups must first be narrowed to one group (:func:`for_group`).
    """
    if isinstance(fits, Fit):
        fits = [fits]
    fits = list(fits) if isinstance(fits, (list, tuple)) else None
    if not fits or not all(isinstance(f, Fit) for f in fits):
        raise BayescaleError("expected a Fit or a non-empty list of Fit objects")
    pooled = [f for f in fits if f.pooling is not None]
    if pooled:
        p = pooled[0].pooling
        shown = ", ".join(map(repr, p.levels[:6])) + (" ..." if len(p.levels) > 6 else "")
        raise BayescaleError(f"the fit of {pooled[0].law.name!r} is pooled over {len(p.levels)} groups of "
                             f"{p.column!r}: say which group to answer for, group='<level>' ({shown}) or "
                             "group='new' for a group not in the data (CLI --group), or pass fit.group(level)")
    warn_failed(fits)
    if weights is None:
        if len(fits) > 1:
            from .compare import stacking_weights

            weights = stacking_weights(fits)
        else:
            weights = [1.0]
    weights = np.asarray(weights, float)
    if weights.shape != (len(fits),) or not np.all(np.isfinite(weights)) or np.any(weights < 0) \
            or weights.sum() <= 0:
        raise BayescaleError(f"weights must be {len(fits)} non-negative numbers with a positive sum, "
                             f"got {weights.tolist()}")
    weights = weights / weights.sum()
    return [Member(f, float(w)) for f, w in zip(fits, weights) if w > 0]


def weighted_quantile(values: np.ndarray, weights: np.ndarray, probs) -> np.ndarray:
    """Quantiles along axis 0 of ``values`` (S, G) with draw weights (S,): shape (len(probs), G)."""
    order = np.argsort(values, axis=0)
    v = np.take_along_axis(values, order, axis=0)
    w = weights[order]
    cw = np.cumsum(w, axis=0) - 0.5 * w
    cw /= w.sum(axis=0)
    out = np.empty((len(probs), values.shape[1]))
    for j in range(values.shape[1]):
        out[:, j] = np.interp(probs, cw[:, j], v[:, j])
    return out


def probability(weights: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """The weighted share of draws where ``flags`` (S,) or (S, G) holds, clipped to [0, 1]: a sum of
    weights that add up to 1 can round to 1.0000000000000004."""
    flags = np.asarray(flags, float)
    w = weights if flags.ndim == 1 else weights[:, None]
    return np.clip((w * flags).sum(axis=0), 0.0, 1.0)
