"""The diagnostics gate: R-hat, bulk and tail ESS, divergences, tree depth.

A fit that fails the gate is still returned, with a
:class:`~bayescale.errors.ConvergenceWarning` that says what failed and what
to try; the verdict travels with the fit (and into the memo).

R-hat and ESS follow Vehtari, Gelman, Simpson, Carpenter and Buerkner (2021),
as ArviZ computes them (``az.rhat(method="rank")``, ``az.ess(method="bulk"/"tail")``;
the test suite checks they agree to rounding): chains are split in halves;
R-hat is the larger of the classic split R-hat of the rank-normalised draws
and of the rank-normalised folded draws ``|x - median|``; bulk ESS is the ESS
of the rank-normalised split draws; tail ESS is the smaller ESS of the
indicators ``x <= q5`` and ``x <= q95``.  The ESS of a chain set uses Geyer's
initial monotone sequence, as Stan and ArviZ do.  They are computed here in
numpy (with the standard library's inverse normal CDF) so that a fit imports
neither ArviZ (~1.5 s) nor NumPyro's or SciPy's diagnostics (~0.5 s) unless
asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from statistics import NormalDist

import numpy as np

__all__ = ["GATE", "Diagnostics", "THIN_ADVICE", "diagnose", "diagnose_many", "ess_bulk", "ess_tail", "gate_statistics", "rank_rhat",
           "structure_advice", "verdict"]

#: Thresholds of the gate.
GATE = {"r_hat_max": 1.01, "ess_bulk_min": 400.0, "ess_tail_min": 400.0,
        "divergences_max": 0, "saturation_max": 0.01}


@dataclass(frozen=True)
class Diagnostics:
    r_hat: dict
    ess_bulk: dict
    ess_tail: dict
    divergences: int
    draws: int
    saturated: int
    max_tree_depth: int
    problems: tuple[str, ...]
    advice: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"passed": self.passed, "r_hat_max": max(self.r_hat.values()),
                "ess_bulk_min": min(self.ess_bulk.values()), "ess_tail_min": min(self.ess_tail.values()),
                "divergences": self.divergences, "draws": self.draws,
                "tree_depth_saturated": self.saturated, "max_tree_depth": self.max_tree_depth,
                "problems": list(self.problems), "advice": list(self.advice)}

    def __str__(self) -> str:
        d = self.as_dict()
        head = (f"R-hat max {d['r_hat_max']:.4f}, ESS bulk min {d['ess_bulk_min']:.0f}, ESS tail min "
                f"{d['ess_tail_min']:.0f}, divergences {self.divergences}/{self.draws}, "
                f"tree depth {self.max_tree_depth} hit {self.saturated} times")
        if self.passed:
            return f"diagnostics: PASS ({head})"
        return f"diagnostics: FAIL ({head})\n  " + "\n  ".join(self.problems + self.advice)


def _split(x: np.ndarray) -> np.ndarray:
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half:]], axis=0)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of the flattened ``x``, ties sharing their average rank (scipy's
    ``rankdata(method="average")``, without importing scipy.stats: ~0.4 s)."""
    _, inverse, counts = np.unique(x.ravel(), return_inverse=True, return_counts=True)
    before = np.cumsum(counts) - counts
    return (before + (counts + 1) / 2.0)[inverse.ravel()]


@lru_cache(maxsize=8)
def _normal_scores(size: int) -> np.ndarray:
    """Blom's normal scores ``Phi^-1((r - 3/8) / (size + 1/4))`` for every average rank r = 1, 1.5, ..., size."""
    inverse = NormalDist().inv_cdf
    ranks = np.arange(2, 2 * size + 1) / 2.0
    return np.array([inverse(p) for p in (ranks - 0.375) / (size + 0.25)])


def _z(x: np.ndarray) -> np.ndarray:
    """Rank-normalised draws (ties share their average rank, a half-integer at worst)."""
    ranks = _average_ranks(x).reshape(x.shape)
    return _normal_scores(x.size)[np.rint(2 * ranks).astype(np.int64) - 2]


def _rhat_basic(x: np.ndarray) -> float:
    n = x.shape[1]
    within = x.var(axis=1, ddof=1).mean()
    between = n * x.mean(axis=1).var(ddof=1)
    return float(np.sqrt(((n - 1) / n * within + between / n) / within))


def _autocovariance(x: np.ndarray) -> np.ndarray:
    """Biased autocovariance of each chain at lags 0 .. n-1 (zero-padded FFT)."""
    n = x.shape[1]
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(x - x.mean(axis=1, keepdims=True), n=size, axis=1)
    return np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :n] / n


def _ess(x: np.ndarray) -> float:
    """ESS of draws (chains, n) by Geyer's initial monotone sequence, as Stan and ArviZ estimate it.

    Autocorrelations are combined over chains (Vehtari et al. 2021, eq. 10); pairs
    ``rho_2k + rho_2k+1`` are summed up to the first non-positive pair, made
    non-increasing, and the next even-lag term is added when it is positive.
    """
    x = np.asarray(x, float)
    chains, n = x.shape
    if n < 5 or not np.all(np.isfinite(x)) or np.all(x == x.flat[0]):
        return float("nan")
    acov = _autocovariance(x)
    within = acov[:, 0].mean() * n / (n - 1)
    var_plus = within * (n - 1) / n + (x.mean(axis=1).var(ddof=1) if chains > 1 else 0.0)
    rho = 1.0 - (within - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    last = (n - 3) // 2                                       # the last pair the estimator may use
    pairs = rho[0:2 * last + 1:2] + rho[1:2 * last + 2:2]     # pairs 0 .. last
    stops = np.flatnonzero(pairs[1:] <= 0)
    k = int(stops[0]) + 1 if stops.size else last             # the pair that ends the sequence
    tau = -1.0 + 2.0 * np.minimum.accumulate(pairs[:k]).sum() + max(rho[2 * k], 0.0)
    total = chains * n
    return float(total / max(tau, 1.0 / np.log10(total)))


def rank_rhat(x: np.ndarray) -> float:
    """Rank-normalised split R-hat of draws shaped (chains, draws)."""
    s = _split(np.asarray(x, float))
    return max(_rhat_basic(_z(s)), _rhat_basic(_z(np.abs(s - np.median(s)))))


def ess_bulk(x: np.ndarray) -> float:
    return _ess(_z(_split(np.asarray(x, float))))


def ess_tail(x: np.ndarray) -> float:
    x = np.asarray(x, float)
    q05, q95 = np.quantile(x, [0.05, 0.95])
    return min(_ess(_split((x <= q05).astype(float))), _ess(_split((x <= q95).astype(float))))


def diagnose(posterior: dict, sample_stats: dict, var_names, max_tree_depth: int,
             noise: str | None = None) -> Diagnostics:
    """Run the gate on ``var_names`` of ``posterior`` (name -> (chains, draws) arrays).

    The advice names each setting as a Python argument with its command-line
    flag (``draws=`` / ``--draws``); ``noise`` (the fit's noise model) keeps it
    from recommending the noise model the fit already uses.
    """
    r_hat = {k: rank_rhat(posterior[k]) for k in var_names}
    ess_b = {k: ess_bulk(posterior[k]) for k in var_names}
    ess_t = {k: ess_tail(posterior[k]) for k in var_names}
    stuck = sorted({int(c) for k in var_names for c in np.flatnonzero(np.ptp(np.asarray(posterior[k]), axis=1) == 0)})
    single = np.asarray(posterior[var_names[0]]).shape[1] <= 1
    return verdict(r_hat, ess_b, ess_t, [] if single else stuck, sample_stats, max_tree_depth, noise)


def verdict(r_hat: dict, ess_b: dict, ess_t: dict, stuck: list, sample_stats: dict, max_tree_depth: int,
            noise: str | None = None) -> Diagnostics:
    """The gate's :class:`Diagnostics` from the per-parameter R-hat and ESS and the chains that never moved."""
    divergences = int(np.asarray(sample_stats["diverging"]).sum())
    depth = np.asarray(sample_stats["tree_depth"])
    saturated = int((depth >= max_tree_depth).sum())
    draws = int(depth.size)
    problems, advice = [], []
    if stuck:
        problems.append(f"chain{'s' if len(stuck) > 1 else ''} {', '.join(map(str, stuck))} never moved "
                        f"(some parameter has the same value in every draw)")
        advice.append("the density is flat, infinite or not finite in float32 near the start: check that "
                      "the data, the priors and the law stay well inside float32's range (1e-38 to 3e38)")
    bad = {k: v for k, v in r_hat.items() if not v <= GATE["r_hat_max"]}
    if bad:
        problems.append("R-hat above 1.01 for " + ", ".join(f"{k} ({v:.3f})" for k, v in bad.items()))
        advice.append("chains disagree: run longer (more warmup= and draws=; command line --warmup, --draws), "
                      "or check the law is identified by the data (a parameter whose posterior equals its prior)")
    low = {k: v for k, v in ess_b.items() if not v >= GATE["ess_bulk_min"]}
    low_tail = {k: v for k, v in ess_t.items() if not v >= GATE["ess_tail_min"]}
    if low or low_tail:
        what = ", ".join(f"{k} (bulk {ess_b[k]:.0f}, tail {ess_t[k]:.0f})" for k in sorted({**low, **low_tail}))
        problems.append(f"effective sample size below 400 for {what}")
        advice.append("increase draws= (command line --draws), or tighten weakly identified priors")
    if divergences > GATE["divergences_max"]:
        problems.append(f"{divergences} divergent transitions out of {draws}")
        persist = ("check for outlying runs or tighten weakly identified priors" if noise == "student_t_log" else
                   "use the robust student_t_log noise model or check for outlying runs")
        advice.append(f"raise target_accept= (command line --target-accept), e.g. to 0.95; if they persist, {persist}")
    if saturated > GATE["saturation_max"] * draws:
        problems.append(f"tree depth {max_tree_depth} reached in {saturated} of {draws} draws")
        advice.append("the posterior is badly scaled: raise max_tree_depth= (command line --max-tree-depth), or "
                      "state priors on the dimensionless (scaled) parameters as the built-in cards do")
    return Diagnostics(r_hat, ess_b, ess_t, divergences, draws, saturated, max_tree_depth,
                       tuple(problems), tuple(advice))


#: Advice added to a failed gate when the fit kept many checkpoints per run (measured on Gemstones'
#: two-shape pairs, ~170 checkpoints per run: 3 of 3 failed with all checkpoints, passed with 8).
THIN_ADVICE = ("thin the checkpoints (checkpoints='logspaced:8'; command line --checkpoints logspaced:8): dense "
               "checkpoints of a few runs pin the loss along each curve so tightly that the trade-off between "
               "the runs' sizes mixes slowly")
_DENSE = 8


def structure_advice(diagnostics: Diagnostics, structure) -> Diagnostics:
    """A failed gate of a fit that kept more than ``_DENSE`` checkpoints per run (``structure``: its
    :class:`~bayescale.evidence.structure.RunStructure`, or None) also advises thinning them."""
    dense = (structure is not None and structure.run_ids is not None and structure.checkpoints == "all"
             and (structure.max_checkpoints or 1) > _DENSE)
    if diagnostics.passed or not dense or THIN_ADVICE in diagnostics.advice:
        return diagnostics
    return replace(diagnostics, advice=diagnostics.advice + (THIN_ADVICE,))


# ---------------------------------------------------------------- many problems at once (fit_many)


def _average_ranks_rows(x: np.ndarray) -> np.ndarray:
    """:func:`_average_ranks` of each row of ``x`` (rows, n), ties sharing their average rank."""
    rows, n = x.shape
    order = np.argsort(x, axis=1)
    s = np.take_along_axis(x, order, axis=1)
    idx = np.broadcast_to(np.arange(n), (rows, n))
    first = np.concatenate([np.ones((rows, 1), bool), s[:, 1:] != s[:, :-1]], axis=1)
    last = np.concatenate([s[:, 1:] != s[:, :-1], np.ones((rows, 1), bool)], axis=1)
    start = np.maximum.accumulate(np.where(first, idx, 0), axis=1)
    end = np.flip(np.minimum.accumulate(np.flip(np.where(last, idx, n - 1), axis=1), axis=1), axis=1)
    ranks = np.empty_like(s, dtype=float)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=1)
    return ranks


def _z_rows(x: np.ndarray) -> np.ndarray:
    """:func:`_z` of each problem: ``x`` (B, chains, n) rank-normalised over its chains and draws."""
    b = x.shape[0]
    flat = x.reshape(b, -1)
    ranks = _average_ranks_rows(flat)
    return _normal_scores(flat.shape[1])[np.rint(2 * ranks).astype(np.int64) - 2].reshape(x.shape)


def _split_rows(x: np.ndarray) -> np.ndarray:
    half = x.shape[2] // 2
    return np.concatenate([x[:, :, :half], x[:, :, x.shape[2] - half:]], axis=1)


def _rhat_basic_rows(x: np.ndarray) -> np.ndarray:
    n = x.shape[2]
    within = x.var(axis=2, ddof=1).mean(axis=1)
    between = n * x.mean(axis=2).var(axis=1, ddof=1)
    with np.errstate(all="ignore"):
        return np.sqrt(((n - 1) / n * within + between / n) / within)


def _ess_rows(x: np.ndarray) -> np.ndarray:
    """:func:`_ess` of each problem's draws ``x`` (B, chains, n)."""
    b, chains, n = x.shape
    out = np.full(b, np.nan)
    flat = x.reshape(b, -1)
    ok = np.all(np.isfinite(flat), axis=1) & ~np.all(flat == flat[:, :1], axis=1)
    if n < 5 or not ok.any():
        return out
    x = x[ok]
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(x - x.mean(axis=2, keepdims=True), n=size, axis=2)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=2)[:, :, :n] / n
    within = acov[:, :, 0].mean(axis=1) * n / (n - 1)
    var_plus = within * (n - 1) / n + (x.mean(axis=2).var(axis=1, ddof=1) if chains > 1 else 0.0)
    rho = 1.0 - (within[:, None] - acov.mean(axis=1)) / var_plus[:, None]
    rho[:, 0] = 1.0
    last = (n - 3) // 2
    pairs = rho[:, 0:2 * last + 1:2] + rho[:, 1:2 * last + 2:2]             # (B, last + 1)
    stop = pairs[:, 1:] <= 0
    k = np.where(stop.any(axis=1), np.argmax(stop, axis=1) + 1, last)
    mono = np.minimum.accumulate(pairs, axis=1)
    used = np.arange(pairs.shape[1])[None, :] < k[:, None]
    tail = np.maximum(np.take_along_axis(rho, (2 * k)[:, None], axis=1)[:, 0], 0.0)
    tau = -1.0 + 2.0 * np.where(used, mono, 0.0).sum(axis=1) + tail
    total = chains * n
    out[ok] = total / np.maximum(tau, 1.0 / np.log10(total))
    return out


#: Problems per block in :func:`gate_statistics`: a block's arrays stay in the CPU's caches (measured on
#: 1,000 problems x 4 chains x 1,000 draws: 3.9 s in one piece, 1.0 s in blocks of 8 to 128).
_BLOCK = 32


def gate_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rank R-hat, bulk ESS, tail ESS) of every problem's draws ``x`` (B, chains, draws) of one
    parameter: :func:`rank_rhat`, :func:`ess_bulk` and :func:`ess_tail` for each problem, vectorised
    over blocks of ``_BLOCK`` problems."""
    x = np.asarray(x, float)
    if len(x) > _BLOCK:
        parts = [_gate_block(x[i:i + _BLOCK]) for i in range(0, len(x), _BLOCK)]
        return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))
    return _gate_block(x)


def _gate_block(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    finite = np.all(np.isfinite(x.reshape(len(x), -1)), axis=1)
    if not finite.all():        # NaN's rank is numpy's choice: the one-problem functions decide
        out = tuple(np.empty(len(x)) for _ in range(3))
        for i in np.flatnonzero(~finite):
            with np.errstate(all="ignore"):
                out[0][i], out[1][i], out[2][i] = rank_rhat(x[i]), ess_bulk(x[i]), ess_tail(x[i])
        if finite.any():
            for o, v in zip(out, _gate_block(x[finite])):
                o[finite] = v
        return out
    s = _split_rows(x)
    z = _z_rows(s)
    med = np.median(s.reshape(len(s), -1), axis=1)[:, None, None]
    r_hat = np.maximum(_rhat_basic_rows(z), _rhat_basic_rows(_z_rows(np.abs(s - med))))
    bulk = _ess_rows(z)
    q05, q95 = np.quantile(x.reshape(len(x), -1), [0.05, 0.95], axis=1)
    low = _ess_rows(_split_rows((x <= q05[:, None, None]).astype(float)))
    high = _ess_rows(_split_rows((x <= q95[:, None, None]).astype(float)))
    tail = np.where(high < low, high, low)               # min(low, high) as Python's min treats a NaN
    return r_hat, bulk, tail


def diagnose_many(posteriors: list, sample_stats: list, var_names, max_tree_depth: int,
                  noise: str | None = None) -> list:
    """:func:`diagnose` of many fits (the gate's statistics vectorised over blocks of fits whose draws have
    one shape)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    names = list(var_names)
    shapes = [np.shape(p[names[0]]) for p in posteriors]
    if len(set(shapes)) > 1:                    # e.g. a NUTS refit with more draws among a batch's fits
        out = [None] * len(posteriors)
        for shape in dict.fromkeys(shapes):
            idx = [i for i, sh in enumerate(shapes) if sh == shape]
            for i, d in zip(idx, diagnose_many([posteriors[i] for i in idx], [sample_stats[i] for i in idx], names,
                                               max_tree_depth, noise)):
                out[i] = d
        return out
    def block(start):
        """The gate's statistics of fits start .. start + _BLOCK, and their chains that never moved."""
        part = posteriors[start:start + _BLOCK]
        stats, frozen = {}, None
        for n in names:
            x = np.stack([np.asarray(p[n], float) for p in part])
            stats[n] = _gate_block(x)
            still = np.ptp(x, axis=2) == 0
            frozen = still if frozen is None else frozen | still
        return stats, frozen

    # numpy's sorts and FFTs release the GIL: blocks of fits in threads, one per core; a block's arrays
    # are stacked in its thread, small enough to stay in the caches
    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        blocks = list(pool.map(block, range(0, len(posteriors), _BLOCK)))
    values = {n: tuple(np.concatenate([b[0][n][j] for b in blocks]) for j in range(3)) for n in names}
    frozen = np.concatenate([b[1] for b in blocks])
    single = np.shape(posteriors[0][names[0]])[-1] <= 1
    out = []
    for i, stats in enumerate(sample_stats):
        stuck = [] if single else [int(c) for c in np.flatnonzero(frozen[i])]
        out.append(verdict({n: float(values[n][0][i]) for n in names}, {n: float(values[n][1][i]) for n in names},
                           {n: float(values[n][2][i]) for n in names}, stuck, stats, max_tree_depth, noise))
    return out
