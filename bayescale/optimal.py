"""Compute-optimal allocation, per posterior draw.

For each posterior draw and each budget ``C``, the ``N*`` and ``D*`` that
minimise the law's loss subject to the card's training cost (``6 N D`` for
the built-in laws) plus, optionally, inference FLOPs ``2 N D_inf`` (Sardana
et al. 2023):

    minimise L(N, D)   subject to   cost(N, D) + 2 N D_inf = C.

The cost is linear in ``D`` at fixed ``N`` for every card with a cost, so
``D`` is eliminated and the search is one-dimensional in ``u = log N``: a
coarse grid over the feasible range finds the basin, golden-section search
refines it.  All of it runs in JAX in float64, vectorised over draws x
budgets (no Python loop over draws), compiled once per law.

Constraints: ``n_bounds`` bounds ``N``; ``max_tokens`` caps the tokens
available.  For laws without a unique-data input the cap bounds ``D``; for
the data-constrained law (input ``U``) it is the number of *unique* tokens
``U``, and ``D`` may exceed it by repeating epochs, which the law discounts.
Laws in ``N`` and ``M = D / N`` (over-training) are handled through ``M``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from .cards import Law
from .checks import positive_number
from .errors import BayescaleError, ExtrapolationWarning
from .mixture import for_group, members, probability, weighted_quantile
from .predict import prob_label

__all__ = ["Allocation", "allocate", "allocation_law_inputs", "optimal"]

_GRID = 24
#: Largest budget accepted, in FLOPs: the laws are evaluated in float32's range (~3.4e38), and the
#: allocation exponents at ten times the budgets.
MAX_BUDGET = 1e37
_NEWTON = 6
_SUPPORTED = {"N", "D", "M", "U"}


def allocation_law_inputs(law: Law) -> None:
    """Raise unless ``law`` can be allocated over (N, D)."""
    names = set(law.input_names)
    if "N" not in names or not ({"D", "M"} & names) or not names <= _SUPPORTED or law.cost is None:
        raise BayescaleError(
            f"law {law.name!r} has inputs {', '.join(law.input_names)}; compute-optimal allocation needs "
            f"a law of N and D (or N and M = D/N, optionally U) with a compute cost")
    _flops_per_param_token(law)


def _inputs(law: Law, N, D, U):
    out = {"N": N}
    if "D" in law.input_names:
        out["D"] = D
    if "M" in law.input_names:
        out["M"] = D / N
    if "U" in law.input_names:
        out["U"] = U
    return out


def _flops_per_param_token(law: Law) -> float:
    """k in cost(N, D) = k N D (checked: cost is linear in N and in D at the other fixed)."""
    def cost(n, d):
        ins = _inputs(law, np.array([n]), np.array([d]), np.array([d]))
        return float(np.asarray(law.compute(ins), float)[0])

    k = cost(1e9, 1e10) / 1e19
    if not (np.isclose(cost(2e9, 1e10), 2 * cost(1e9, 1e10), rtol=1e-9)
            and np.isclose(cost(1e9, 2e10), 2 * cost(1e9, 1e10), rtol=1e-9)):
        raise BayescaleError(f"law {law.name!r}: allocation needs a cost of the form k*N*D, got {law.cost}")
    return k


@lru_cache(maxsize=32)
def _solver(law: Law, has_unique: bool, k: float):
    """Jitted solver: grid over u = log N, then safeguarded Newton on d/du log L = 0."""
    import jax
    import jax.numpy as jnp

    def log_loss(params, u, log_c, d_inf, unique):
        N = jnp.exp(u)
        D = (jnp.exp(log_c) - 2.0 * N * d_inf) / (k * N)
        return law.log_mean(params, _inputs(law, N, D, unique if has_unique else D), xp="jax")

    def derivs(params, u, log_c, d_inf, unique):
        f = lambda x: log_loss(params, x, log_c, d_inf, unique)  # noqa: E731
        first = lambda x: jax.jvp(f, (x,), (jnp.ones_like(x),))[1]  # noqa: E731
        g, h = jax.jvp(first, (u,), (jnp.ones_like(u),))
        return g, h

    def solve(params, log_c, d_inf, unique, u_lo, u_hi):
        shape = jnp.broadcast_shapes(params["sigma"].shape, log_c.shape, u_lo.shape)
        u_lo = jnp.broadcast_to(u_lo, shape)
        u_hi = jnp.broadcast_to(u_hi, shape)
        step = (u_hi - u_lo) / (_GRID - 1)

        def scan_grid(carry, j):
            best_f, best_j = carry
            f = log_loss(params, u_lo + j * step, log_c, d_inf, unique)
            better = f < best_f
            return (jnp.where(better, f, best_f), jnp.where(better, j, best_j)), None

        init = (jnp.full(shape, jnp.inf), jnp.zeros(shape))
        (_, best_j), _ = jax.lax.scan(scan_grid, init, jnp.arange(_GRID, dtype=jnp.float64))
        a = jnp.maximum(u_lo, u_lo + (best_j - 1) * step)
        b = jnp.minimum(u_hi, u_lo + (best_j + 1) * step)

        def newton(_, state):
            u, a, b = state
            g, h = derivs(params, u, log_c, d_inf, unique)
            a = jnp.where(g < 0, u, a)
            b = jnp.where(g > 0, u, b)
            proposal = u - g / h
            ok = (h > 0) & (proposal >= a) & (proposal <= b)
            return jnp.where(ok, proposal, 0.5 * (a + b)), a, b

        # start Newton at the vertex of the parabola through the best grid point and its neighbours
        u0 = u_lo + best_j * step
        fa, f0, fb = (log_loss(params, x, log_c, d_inf, unique) for x in (a, u0, b))
        fa = jnp.where(jnp.isfinite(fa), fa, f0 + 1.0)
        fb = jnp.where(jnp.isfinite(fb), fb, f0 + 1.0)
        num = (u0 - a) ** 2 * (f0 - fb) - (u0 - b) ** 2 * (f0 - fa)
        den = (u0 - a) * (f0 - fb) - (u0 - b) * (f0 - fa)
        vertex = u0 - 0.5 * num / jnp.where(den == 0, 1.0, den)
        start = jnp.where((den != 0) & (vertex > a) & (vertex < b), vertex, u0)
        u, _, _ = jax.lax.fori_loop(0, _NEWTON, newton, (start, a, b))
        candidates = jnp.stack([u, u_lo, u_hi])
        values = log_loss(params, candidates, log_c, d_inf, unique)
        values = jnp.where(jnp.isfinite(values), values, jnp.inf)
        u = jnp.take_along_axis(candidates, jnp.argmin(values, axis=0)[None], axis=0)[0]
        f = log_loss(params, u, log_c, d_inf, unique)
        D = (jnp.exp(log_c) - 2.0 * jnp.exp(u) * d_inf) / (k * jnp.exp(u))
        return u, f, D

    devices = jax.local_device_count()
    if devices == 1:
        return jax.jit(solve), 1
    # split the draws over the host devices (one XLA thread each): ~2x on 2 cores
    return jax.pmap(solve, in_axes=(0, 0, None, None, 0, 0)), devices


def _solve(law, params, budgets, *, d_inf, unique, cap, n_lo, n_hi):
    """Arrays (S, B): log N*, log L*, D*, and the bounds on log N used."""
    import jax

    has_unique = "U" in law.input_names and unique is not None   # else U = D: fresh data
    k = _flops_per_param_token(law)
    C = np.asarray(budgets, float)
    C = C[None, :] if C.ndim == 1 else C          # (1, B) or per-draw (S, B)
    # feasible N: n_lo <= N <= n_hi; at least one training token; D <= cap (cap on D)
    hi = C / (k + 2 * d_inf)
    if n_hi is not None:
        hi = np.minimum(hi, n_hi)
    lo = np.full_like(C, n_lo)
    if cap is not None and "U" not in law.input_names:
        lo = np.maximum(lo, C / (k * cap + 2 * d_inf))
    if np.any(lo >= hi):
        bad = np.unique(np.broadcast_to(C, lo.shape)[lo >= hi])
        raise BayescaleError(
            f"no feasible allocation at budgets {bad.tolist()}: the bounds on N "
            f"({n_lo:g} to {n_hi if n_hi else 'none'}) and the token cap ({cap}) leave no N that spends "
            f"the budget (with {d_inf:g} inference tokens)")
    S = len(params["sigma"])
    shape = (S, C.shape[1])
    with jax.enable_x64(True):
        solve, devices = _solver(law, has_unique, k)
        pad = (-S) % devices
        rows = np.concatenate([np.arange(S), np.full(pad, S - 1)]).astype(int)

        def split(a):
            a = np.broadcast_to(a, shape)[rows]
            return a.reshape((devices, -1) + a.shape[1:]) if devices > 1 else a

        p = {k_: split(np.asarray(v, float)[:, None]) for k_, v in params.items()}
        out = solve(p, split(np.log(C)), np.float64(d_inf), np.float64(unique or 1.0),
                    split(np.log(lo)), split(np.log(hi)))
        u, f, D = (np.asarray(x).reshape((-1, shape[1]))[:S] for x in out)
    return u, f, D, np.broadcast_to(np.log(lo), u.shape), np.broadcast_to(np.log(hi), u.shape)


def allocate(law: Law, params: dict, budgets, *, inference_tokens: float = 0.0, max_tokens=None,
             n_bounds=(1.0, None)) -> dict:
    """The optimum for given parameter values (no posterior): arrays (S, B) of N, D, loss.

    ``params`` maps each law parameter to an array of S values (or a scalar).
    This is the solver :func:`optimal` runs on each posterior draw.
    """
    allocation_law_inputs(law)
    params = {k: np.atleast_1d(np.asarray(v, float)) for k, v in params.items()}
    missing = sorted(set(law.param_names) - set(params))
    if missing:
        raise BayescaleError(f"allocate: no values for parameters {missing} of law {law.name!r}")
    S = max(v.size for v in params.values())
    params = {k: np.broadcast_to(v, (S,)) for k, v in params.items()}
    params.setdefault("sigma", np.ones(S))
    unique = max_tokens if "U" in law.input_names else None
    u, f, D, _, _ = _solve(law, params, np.atleast_1d(np.asarray(budgets, float)), d_inf=inference_tokens,
                           unique=unique, cap=max_tokens, n_lo=n_bounds[0] or 1.0, n_hi=n_bounds[1])
    return {"N": np.exp(u), "D": D, "loss": np.exp(f)}


@dataclass(frozen=True)
class Allocation:
    """Posterior draws of the compute-optimal allocation, (draws, budgets) arrays."""

    budgets: np.ndarray
    N: np.ndarray
    D: np.ndarray
    loss: np.ndarray
    weights: np.ndarray
    at_n_bound: np.ndarray
    at_token_cap: np.ndarray
    outside_domain: np.ndarray
    exponent_a: np.ndarray | None
    exponent_b: np.ndarray | None
    laws: tuple[str, ...]
    settings: dict
    loss_calibrated: np.ndarray | None = None     # L* with each fit's calibrated discrepancy (or inflation)
    calibration: str | None = None                # its label

    @property
    def ratio(self) -> np.ndarray:
        """Tokens per parameter D*/N*."""
        return self.D / self.N

    def summary(self, prob: float = 0.9) -> pd.DataFrame:
        """Per budget: median and central ``prob`` interval of N*, D*, D*/N*, L*; bound flags."""
        lo, hi = (1 - prob) / 2, (1 + prob) / 2
        lab = prob_label(prob)
        rows = {"budget": self.budgets}
        series = [("N", self.N), ("D", self.D), ("ratio", self.ratio), ("loss", self.loss)]
        if self.loss_calibrated is not None:
            series.append(("loss_cal", self.loss_calibrated))
        for name, arr in series:
            q = weighted_quantile(arr, self.weights, [0.5, lo, hi])
            rows[f"{name}_median"], rows[f"{name}_lower_{lab}"], rows[f"{name}_upper_{lab}"] = q
        rows["p_at_n_bound"] = probability(self.weights, self.at_n_bound)
        rows["p_at_token_cap"] = probability(self.weights, self.at_token_cap)
        rows["p_outside_domain"] = probability(self.weights, self.outside_domain)
        return pd.DataFrame(rows)

    def exponents(self, prob: float = 0.9) -> pd.DataFrame | None:
        """Posterior of a (N* ~ C^a) and b (D* ~ C^b): median and central interval."""
        if self.exponent_a is None:
            return None
        lo, hi = (1 - prob) / 2, (1 + prob) / 2
        lab = prob_label(prob)
        out = []
        for name, arr in (("a", self.exponent_a), ("b", self.exponent_b)):
            q = weighted_quantile(arr[:, None], self.weights, [0.5, lo, hi])[:, 0]
            out.append({"exponent": name, "median": q[0], f"lower_{lab}": q[1], f"upper_{lab}": q[2]})
        return pd.DataFrame(out).set_index("exponent")

    def as_dict(self, prob: float = 0.9) -> dict:
        exps = self.exponents(prob)
        return {"laws": list(self.laws), "settings": self.settings, "calibration": self.calibration,
                "summary": self.summary(prob).to_dict(orient="records"),
                "exponents": None if exps is None else exps.reset_index().to_dict(orient="records")}

    def __str__(self) -> str:
        s = self.summary()
        lines = [f"compute-optimal allocation ({', '.join(self.laws)}; medians and 90% intervals)"]
        for _, r in s.iterrows():
            lines.append(
                f"  C = {r.budget:.3g}: N* {r.N_median:.3g} [{r.N_lower_90:.3g}, {r.N_upper_90:.3g}], "
                f"D* {r.D_median:.3g} [{r.D_lower_90:.3g}, {r.D_upper_90:.3g}], "
                f"D*/N* {r.ratio_median:.3g} [{r.ratio_lower_90:.3g}, {r.ratio_upper_90:.3g}], "
                f"L* {r.loss_median:.4g}" + (f" [calibrated {r.loss_cal_lower_90:.4g}, {r.loss_cal_upper_90:.4g}]"
                                             if self.loss_calibrated is not None else ""))
            notes = []
            if r.p_at_token_cap > 0:
                notes.append(f"on the token cap in {100 * r.p_at_token_cap:.0f}% of draws")
            if r.p_at_n_bound > 0:
                notes.append(f"on an N bound in {100 * r.p_at_n_bound:.0f}% of draws")
            if r.p_outside_domain > 0:
                notes.append(f"outside the fitted runs' N or D range in {100 * r.p_outside_domain:.0f}% of draws")
            if notes:
                lines.append("    " + "; ".join(notes))
        if self.calibration is not None:
            lines.append(f"  calibrated L*: the law's value at the optimum widened as the fit's {self.calibration}")
        exps = self.exponents()
        if exps is not None:
            lines.append("  allocation exponents: " + ", ".join(
                f"{k} {r['median']:.3f} [{r['lower_90']:.3f}, {r['upper_90']:.3f}]" for k, r in exps.iterrows()))
        return "\n".join(lines)


def _calibrated_loss(mems, parts, n_budgets):
    """L* per draw with each member's calibration applied (None unless every member is calibrated)."""
    cals = [getattr(m.fit, "calibration", None) for m in mems]
    if not cals or any(c is None for c in cals):
        return None, None
    from scipy.special import ndtri

    from .evidence.calibrated import tau_per_draw
    from .evidence.calibration import extrapolation_distance

    out = []
    for m, cal, N, D, loss in zip(mems, cals, parts["N"], parts["D"], parts["loss"]):
        log_l = np.log(loss)
        if cal.method == "inflation":
            med = np.median(log_l, axis=0, keepdims=True)
            out.append(np.exp(med + cal.k * (log_l - med)))
            continue
        S = log_l.shape[0]
        grid = {"N": N.reshape(-1), "D": D.reshape(-1)}
        if "M" in m.fit.law.input_names:
            grid = {"N": grid["N"], "M": grid["D"] / grid["N"]}
        dist = extrapolation_distance(m.fit, grid, cal.distance).reshape(S, n_budgets)
        tau = tau_per_draw(cal, dist)
        z = ndtri(np.random.default_rng(1).permutation((np.arange(S) + 0.5) / S))
        out.append(np.exp(log_l + z[:, None] * tau))
    label = cals[0].label if len(cals) == 1 else "calibrated discrepancy of each fit"
    return np.concatenate(out), label


def optimal(fit, budgets, *, max_tokens=None, n_bounds=None, inference_tokens: float = 0.0,
            weights=None, exponent_span: float = 10.0, group=None) -> Allocation:
    """Posterior draws of N*, D*, D*/N* and L* for each budget (FLOPs).

    ``fit``: a Fit or a list of Fits mixed with ``weights``.  ``max_tokens``:
    cap on the (unique, for the data-constrained law) tokens available.
    ``n_bounds``: ``(low, high)`` bounds on N (either may be None).
    ``inference_tokens``: tokens to be served over the model's life; adds
    ``2 N D_inf`` FLOPs to the budget's cost.  ``exponent_span``: a and b are
    the slopes of log N*, log D* against log C between C0/span and C0*span,
    C0 the geometric mean of the budgets.  ``group``: for a fit pooled over groups, the group to
    allocate for (a level, or ``"new"``).
    """
    fit = for_group(fit, group)
    mems = members(fit, weights)
    budgets = np.atleast_1d(np.asarray(budgets, dtype=float))
    if budgets.ndim != 1 or budgets.size == 0:
        raise BayescaleError("budgets must be a non-empty list of FLOP counts")
    bad = np.flatnonzero(~np.isfinite(budgets) | (budgets <= 0))
    if len(bad):
        raise BayescaleError(f"budgets must be positive FLOP counts; got {budgets[bad].tolist()}")
    huge = np.flatnonzero(budgets > MAX_BUDGET)
    if len(huge):
        raise BayescaleError(f"budgets must be at most {MAX_BUDGET:g} FLOPs (the laws are evaluated in "
                             f"float32's range); got {budgets[huge].tolist()}")
    cap = positive_number("max_tokens", max_tokens)
    d_inf = 0.0 if not inference_tokens else positive_number("inference_tokens", inference_tokens, False)
    n_lo, n_hi = (None, None) if n_bounds is None else tuple(n_bounds)
    n_lo = positive_number("n_bounds low", n_lo) or 1.0
    n_hi = positive_number("n_bounds high", n_hi)
    if n_hi is not None and n_hi <= n_lo:
        raise BayescaleError(f"n_bounds: low {n_lo:g} must be below high {n_hi:g}")
    span = positive_number("exponent_span", exponent_span, False)
    for m in mems:
        allocation_law_inputs(m.fit.law)
    c0 = float(np.exp(np.mean(np.log(budgets))))
    extra = np.array([c0 / span, c0 * span])
    all_budgets = np.concatenate([budgets, extra])
    parts = {k: [] for k in ("N", "D", "loss", "w", "nb", "cap", "dom", "a", "b")}
    for m in mems:
        law = m.fit.law
        params = m.params()
        unique = cap if "U" in law.input_names else None
        u, f, D, _, _ = _solve(law, params, all_budgets, d_inf=d_inf, unique=unique,
                                     cap=cap, n_lo=n_lo, n_hi=n_hi)
        B = len(budgets)
        N = np.exp(u)
        tol = 1e-9
        parts["N"].append(N[:, :B])
        parts["D"].append(D[:, :B])
        parts["loss"].append(np.exp(f[:, :B]))
        parts["w"].append(np.full(N.shape[0], m.weight / N.shape[0]))
        on_lo = np.abs(u - np.log(n_lo)) < tol if n_bounds is not None else np.zeros_like(u, bool)
        on_hi = np.abs(u - np.log(n_hi)) < tol if n_hi is not None else np.zeros_like(u, bool)
        parts["nb"].append((on_lo | on_hi)[:, :B])
        at_cap = (D[:, :B] >= cap * (1 - 1e-6)) if (cap is not None and "U" not in law.input_names) \
            else np.zeros((N.shape[0], B), bool)
        parts["cap"].append(at_cap)
        obs = m.fit.runs.input_arrays()
        n_obs = obs["N"]
        d_obs = obs["D"] if "D" in obs else obs["M"] * obs["N"]
        parts["dom"].append((N[:, :B] > n_obs.max()) | (N[:, :B] < n_obs.min())
                            | (D[:, :B] > d_obs.max()) | (D[:, :B] < d_obs.min()))
        log_ratio = np.log(extra[1] / extra[0])
        parts["a"].append((u[:, B + 1] - u[:, B]) / log_ratio)
        parts["b"].append((np.log(D[:, B + 1]) - np.log(D[:, B])) / log_ratio)
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    cal_loss, cal_label = _calibrated_loss(mems, parts, len(budgets))
    if not np.all(np.isfinite(cat["loss"])):
        raise BayescaleError("no feasible allocation for some budgets: check max_tokens, n_bounds and "
                             "inference_tokens against the budgets")
    result = Allocation(
        budgets=budgets, N=cat["N"], D=cat["D"], loss=cat["loss"], weights=cat["w"],
        at_n_bound=cat["nb"], at_token_cap=cat["cap"], outside_domain=cat["dom"],
        exponent_a=None if (cap or d_inf or n_hi) else cat["a"],
        exponent_b=None if (cap or d_inf or n_hi) else cat["b"],
        laws=tuple(m.fit.law.name for m in mems),
        settings={"max_tokens": cap, "n_bounds": [n_lo, n_hi], "inference_tokens": d_inf,
                  "exponent_span": span}, loss_calibrated=cal_loss, calibration=cal_label)
    frac = float(probability(cat["w"], cat["dom"]).max())
    if frac > 0.5:
        warnings.warn("the optimum lies outside the fitted runs' range of N or D in most draws: the "
                      "allocation extrapolates the law", ExtrapolationWarning, stacklevel=2)
    return result
