"""Decisions under posterior uncertainty: one allocation to run, and a plan's regret.

* :func:`choose_allocation` picks the single ``(N, D)`` at a budget that
  minimises a utility of the loss over the posterior: its expected value
  (``"mean"``), a quantile (``"quantile"``, e.g. the 90% worst case) or the
  conditional value at risk (``"cvar"``: the mean of the worst ``1 - q``
  tail).  Candidates are a fine grid in ``log N`` (resolution 0.2% in N)
  spanning the posterior of ``N*``.
* :func:`plan_regret` scores a plan ``(N, D)`` against each draw's optimum at
  the plan's own compute: the loss regret ``L(plan) - L*``, and the compute
  efficiency ``C_eq / C_plan``, where ``C_eq`` is the compute an optimal
  allocation needs to reach the plan's loss (1 = the plan is optimal).
* :func:`compute_for_loss` is the inverse problem: per draw, the least
  training (+ inference) compute whose optimal allocation reaches a target
  loss (Sardana et al. 2023 when ``inference_tokens`` > 0).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .checks import positive_number
from .errors import BayescaleError
from .mixture import members, probability, weighted_quantile
from .optimal import _flops_per_param_token, _inputs, _solve, allocation_law_inputs, optimal

__all__ = ["Choice", "PlanRegret", "choose_allocation", "compute_for_loss", "plan_regret"]

UTILITIES = ("mean", "quantile", "cvar")


def _loss_at(member, N, D, unique=None) -> np.ndarray:
    """Law value per draw (S, K) at allocations N, D of shape (K,) or (S, K)."""
    law = member.fit.law
    params = {k: v[:, None] for k, v in member.params().items()}
    N, D = np.asarray(N, float), np.asarray(D, float)
    U = np.full_like(D, unique) if unique is not None else D
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(law.mean(params, _inputs(law, N, D, U), xp="numpy"), float) * np.ones(
            (len(params["sigma"]), 1))


def _utility(losses: np.ndarray, w: np.ndarray, utility: str, q: float) -> np.ndarray:
    """Utility (lower is better) per column of losses (S, K)."""
    if utility == "mean":
        return (w[:, None] * losses).sum(axis=0)
    var = weighted_quantile(losses, w, [q])[0]
    if utility == "quantile":
        return var
    tail = losses >= var[None, :]
    return (w[:, None] * losses * tail).sum(axis=0) / np.maximum((w[:, None] * tail).sum(axis=0), 1e-300)


@dataclass(frozen=True)
class Choice:
    """The allocation chosen under a utility, with the loss distribution it implies."""

    budget: float
    N: float
    D: float
    utility: str
    q: float
    utility_value: float
    loss_median: float
    loss_lower_90: float
    loss_upper_90: float
    expected_regret: float

    @property
    def ratio(self) -> float:
        return self.D / self.N

    def as_dict(self) -> dict:
        return {**self.__dict__, "ratio": self.ratio}

    def __str__(self) -> str:
        what = {"mean": "expected loss", "quantile": f"{100 * self.q:g}% quantile of loss",
                "cvar": f"CVaR{100 * self.q:g} of loss"}[self.utility]
        return (f"allocation minimising the {what} at C = {self.budget:.3g}: N {self.N:.3g}, D {self.D:.3g} "
                f"(D/N {self.ratio:.3g}); loss median {self.loss_median:.4g} "
                f"[{self.loss_lower_90:.4g}, {self.loss_upper_90:.4g}] (90%), expected regret "
                f"{self.expected_regret:.2g} vs each draw's own optimum")


def choose_allocation(fit, budget: float, *, utility: str = "mean", q: float = 0.9, weights=None,
                      max_tokens=None, n_bounds=None) -> Choice:
    """The one ``(N, D)`` spending ``budget`` FLOPs that minimises the utility over the posterior."""
    if utility not in UTILITIES:
        raise BayescaleError(f"utility must be one of {', '.join(UTILITIES)}, got {utility!r}")
    if not (isinstance(q, (int, float)) and 0 < q < 1):
        raise BayescaleError(f"q must be in (0, 1), got {q!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alloc = optimal(fit, [budget], max_tokens=max_tokens, n_bounds=n_bounds, weights=weights)
    mems = members(fit, weights)
    k = _flops_per_param_token(mems[0].fit.law)
    logn = np.log(alloc.N[:, 0])
    lo, hi = logn.min() - 0.5, logn.max() + 0.5
    n_lo, n_hi = alloc.settings["n_bounds"]
    lo = max(lo, np.log(n_lo))
    hi = min(hi, np.log(n_hi) if n_hi else hi, np.log(budget / k))
    if max_tokens is not None and not any("U" in m.fit.law.input_names for m in mems):
        lo = max(lo, np.log(budget / (k * max_tokens)))
    grid = np.linspace(lo, hi, max(2, int(np.ceil((hi - lo) / 0.002)) + 1))
    N = np.exp(grid)
    D = budget / (k * N)
    unique = max_tokens if max_tokens is not None else None
    losses = np.concatenate([_loss_at(m, N, D, unique if "U" in m.fit.law.input_names else None)
                             for m in mems])
    w = alloc.weights
    values = _utility(losses, w, utility, q)
    j = int(np.nanargmin(values))
    chosen = losses[:, j]
    qs = weighted_quantile(chosen[:, None], w, [0.5, 0.05, 0.95])[:, 0]
    regret = float((w * np.maximum(chosen - alloc.loss[:, 0], 0.0)).sum())
    return Choice(float(budget), float(N[j]), float(D[j]), utility, float(q), float(values[j]),
                  float(qs[0]), float(qs[1]), float(qs[2]), regret)


def compute_for_loss(fit, target: float, *, inference_tokens: float = 0.0, weights=None,
                     max_tokens=None, iters: int = 50):
    """Per draw: least compute (training + inference FLOPs) whose optimal allocation reaches
    ``target``; returns ``(C, N, D, weights)`` arrays with NaN where the target is unreachable
    (at or below the draw's irreducible loss)."""
    mems = members(fit, weights)
    target = positive_number("target loss", target, False)
    out_c, out_n, out_d, out_w = [], [], [], []
    for m in mems:
        law = m.fit.law
        allocation_law_inputs(law)
        params = m.params()
        S = len(params["sigma"])
        kw = dict(d_inf=float(inference_tokens), unique=max_tokens if "U" in law.input_names else None,
                  cap=max_tokens, n_lo=1.0, n_hi=None)
        _, f_hi, _, _, _ = _solve(law, params, np.full((S, 1), 1e40), **kw)
        reachable = np.exp(f_hi[:, 0]) < target
        hi = _least_log_compute(law, params, target, np.log(1e6), np.log(1e40), iters, **kw)
        u, _, D, _, _ = _solve(law, params, np.exp(hi), **kw)
        C = np.exp(hi[:, 0])
        nan = ~reachable
        out_c.append(np.where(nan, np.nan, C))
        out_n.append(np.where(nan, np.nan, np.exp(u[:, 0])))
        out_d.append(np.where(nan, np.nan, D[:, 0]))
        out_w.append(np.full(S, m.weight / S))
    result = tuple(np.concatenate(x) for x in (out_c, out_n, out_d, out_w))
    unreachable = float((result[3] * np.isnan(result[0])).sum())
    if unreachable > 0:
        names = [m.fit.law.irreducible for m in mems if m.fit.law.irreducible]
        why = (f"it is at or below the irreducible loss ({', '.join(sorted(set(names)))}) in those draws, "
               f"so no finite compute reaches it") if names else "the law never reaches it"
        warnings.warn(f"target loss {target:g} is unreachable in {100 * unreachable:.0f}% of posterior "
                      f"draws: {why}; those draws are NaN", UserWarning, stacklevel=2)
    return result


@dataclass(frozen=True)
class PlanRegret:
    """How a planned run compares with each draw's optimum at the same compute."""

    N: float
    D: float
    compute: float
    loss_median: float
    loss_lower_90: float
    loss_upper_90: float
    optimal_loss_median: float
    regret_mean: float
    regret_median: float
    regret_upper_90: float
    efficiency_median: float
    efficiency_lower_90: float
    within: float
    p_within: float
    optimal_ratio_median: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def __str__(self) -> str:
        return (f"plan N {self.N:.3g}, D {self.D:.3g} (C {self.compute:.3g}): loss median "
                f"{self.loss_median:.4g} [{self.loss_lower_90:.4g}, {self.loss_upper_90:.4g}] (90%); "
                f"regret vs the optimum at the same compute: mean {self.regret_mean:.3g}, 95% quantile "
                f"{self.regret_upper_90:.3g}; compute efficiency median {self.efficiency_median:.3f} "
                f"(5% quantile {self.efficiency_lower_90:.3f}); P(efficiency >= {1 - self.within:.2f}) = "
                f"{self.p_within:.2f}; optimal D/N at this compute: median {self.optimal_ratio_median:.3g}")


def plan_regret(fit, N: float, D: float, *, within: float = 0.05, weights=None) -> PlanRegret:
    """Loss regret and compute efficiency of a planned ``(N, D)`` (see the module docstring)."""
    N, D = positive_number("plan N", N, False), positive_number("plan D", D, False)
    if not (isinstance(within, (int, float)) and 0 < within < 1):
        raise BayescaleError(f"within must be a fraction in (0, 1), got {within!r}")
    mems = members(fit, weights)
    for m in mems:
        allocation_law_inputs(m.fit.law)
    k = _flops_per_param_token(mems[0].fit.law)
    C = k * N * D
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alloc = optimal(fit, [C], weights=weights)
    plan_loss = np.concatenate([_loss_at(m, np.array([N]), np.array([D]))[:, 0] for m in mems])
    w = alloc.weights
    regret = np.maximum(plan_loss - alloc.loss[:, 0], 0.0)   # >= 0 up to solver rounding
    c_eq = _equivalent_compute(mems, plan_loss, C)
    eff = np.clip(c_eq / C, 0, 1)
    lq = weighted_quantile(plan_loss[:, None], w, [0.5, 0.05, 0.95])[:, 0]
    rq = weighted_quantile(regret[:, None], w, [0.5, 0.95])[:, 0]
    eq = weighted_quantile(eff[:, None], w, [0.5, 0.05])[:, 0]
    return PlanRegret(
        N=float(N), D=float(D), compute=float(C), loss_median=float(lq[0]), loss_lower_90=float(lq[1]),
        loss_upper_90=float(lq[2]),
        optimal_loss_median=float(weighted_quantile(alloc.loss, w, [0.5])[0, 0]),
        regret_mean=float((w * regret).sum()), regret_median=float(rq[0]), regret_upper_90=float(rq[1]),
        efficiency_median=float(eq[0]), efficiency_lower_90=float(eq[1]), within=float(within),
        p_within=float(probability(w, eff >= 1 - within)),
        optimal_ratio_median=float(weighted_quantile(alloc.ratio, w, [0.5])[0, 0]))


def _equivalent_compute(mems, plan_loss: np.ndarray, C: float, iters: int = 40) -> np.ndarray:
    """Per draw: compute at which the optimal allocation's loss equals the plan's loss (<= C)."""
    out, start = [], 0
    for m in mems:
        params = m.params()
        S = len(params["sigma"])
        target = plan_loss[start:start + S][:, None]
        start += S
        hi = _least_log_compute(m.fit.law, params, target, np.log(C) - 12.0, np.log(C), iters,
                                d_inf=0.0, unique=None, cap=None, n_lo=1.0, n_hi=None)
        out.append(np.exp(hi[:, 0]))
    return np.concatenate(out)


def _least_log_compute(law, params: dict, target, log_lo: float, log_hi: float, iters: int, **kw):
    """Per draw, by bisection on log C: the smallest compute in [e^log_lo, e^log_hi] whose optimal
    allocation's loss is <= ``target`` (scalar or (S, 1)); returns log C shaped (S, 1)."""
    S = len(params["sigma"])
    lo, hi = np.full((S, 1), log_lo), np.full((S, 1), log_hi)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        _, f, _, _, _ = _solve(law, params, np.exp(mid), **kw)
        reached = np.exp(f) <= target
        hi = np.where(reached, mid, hi)
        lo = np.where(reached, lo, mid)
    return hi
