"""A compact No-U-Turn sampler with Stan's windowed warm-up, in JAX.

Why our own kernel rather than ``numpyro.infer.MCMC``: XLA's compile time on a
CPU grows with the number of copies of the model's gradient in the program,
and NumPyro's NUTS program holds several (the trajectory, the step-size search,
the initialisation, the post-processing), which cost ~5 s of compilation per
fit on a 2-core machine whatever the model; ``MCMC.run`` with several chains
also re-traces and re-compiles on every call.  Here every gradient evaluation
of an iteration -- evaluating the starting point, Stan's step-size search and
each leapfrog step of the trajectory -- goes through one inner
``lax.while_loop`` (a subtree's leapfrog steps on a small packed state) whose
body holds the only copy of the gradient; an outer loop, once per subtree,
does the rest as a small state machine.  :func:`advance` runs a given range of
iterations as one ``lax.scan`` from an explicit state, so a chain can run in
pieces (the sampler's progress bar counts them) and give the same draws as in
one go; the program is compiled once per law, noise model, data shape and
settings (see :mod:`bayescale.sampler`).  Measured on Epoch's 240 Chinchilla
runs: ~2 s of compilation instead of NumPyro's ~5-6 s (see the benchmark
figures in the README).

The algorithm is Stan's:

* multinomial NUTS (Betancourt 2017, "A Conceptual Introduction to HMC",
  appendix A): the trajectory doubles in a random direction; within a new
  subtree a leaf is drawn in proportion to exp(-H) (progressive uniform
  sampling), and the subtree's draw replaces the current one with probability
  min(1, W_subtree / W_old) (biased progressive sampling);
* the generalised no-U-turn criterion of every sub-trajectory of size 2, 4,
  ... (checked leaf by leaf with checkpoints) and of the whole trajectory after
  each doubling, in Betancourt's form (appendix A.4.2): the momentum sum minus
  half of each end's momentum, as NumPyro uses it.  Stan's form (the full sum)
  is as valid but stopped trajectories earlier here and, on the 32-run
  Chinchilla backtest fit of the demo, gave a median tail ESS of ~1200 against
  ~1750 (8 seeds; NumPyro ~2100), with 2 of 8 fits below the gate's 400.  A
  subtree that turns or diverges (energy error > 1000) ends the trajectory
  and is not sampled from;
* warm-up: dual averaging of the step size (Hoffman & Gelman 2014; gamma 0.05,
  t0 10, kappa 0.75) towards ``target_accept``; a dense (or diagonal) metric
  estimated with Welford's algorithm over doubling slow windows (buffers of 75
  and 50 iterations, first window 25: Stan's defaults, scaled down for short
  warm-ups), regularised as Stan does but relative to its own scale (towards
  1e-3 * its diagonal, where Stan adds 1e-3 * I: posterior variances shrink
  as 1/runs, and with 10^4 runs or more Stan's absolute term would dominate
  them and multiply the leapfrog steps per draw); the step size is
  re-initialised by Stan's doubling/halving heuristic at the start and after
  every metric update.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["advance", "initial_state", "sample_chain", "warmup_schedule"]

_MAX_ENERGY_ERROR = 1000.0
_EVALUATE, _SEARCH, _NUTS, _DONE = 0, 1, 2, 3
_MAX_SEARCH = 60
_MIN_VARIANCE = 1e-20       # floor of the metric's regulariser (a coordinate that never moved)


def warmup_schedule(warmup: int, init_buffer: int = 75, term_buffer: int = 50,
                    base_window: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Stan's adaptation windows as two boolean arrays over the warm-up iterations.

    ``collect[i]``: iteration i's draw enters the metric estimate; ``update[i]``:
    the metric is re-estimated after iteration i (the end of a slow window).
    """
    collect = np.zeros(warmup, bool)
    update = np.zeros(warmup, bool)
    if warmup < 20:
        return collect, update                      # step size only
    if init_buffer + base_window + term_buffer > warmup:
        init_buffer = int(0.15 * warmup)
        term_buffer = int(0.1 * warmup)
        base_window = warmup - init_buffer - term_buffer
    end = warmup - term_buffer
    start, size = init_buffer, base_window
    while start < end:
        stop = start + size
        if stop + 2 * size > end:                   # the last window takes the remainder
            stop = end
        collect[start:stop] = True
        update[stop - 1] = True
        start, size = stop, 2 * size
    return collect, update


def _open_uniforms(bits, dtype):
    """Uniforms on the open interval (0, 1) from 32 random bits each (24 bits of resolution)."""
    return ((bits >> 8).astype(dtype) + 0.5) * (2.0 ** -24)


def _transition(key, q, lp, g, eps, minv, chol, logp_grad: Callable, max_depth: int, evaluate, search):
    """One iteration from position ``q``: optionally evaluate it, optionally search a step size, then NUTS.

    Two nested loops: the inner one (:func:`integrate`) takes leapfrog steps and does the
    per-leaf bookkeeping of one subtree on a small, packed state -- it holds the program's
    only gradient; the outer one runs once per subtree (or per evaluation / step-size
    trial) and does the rest.  Returns the new (q, lp, g), the step size used, and the
    iteration's statistics.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax.scipy.linalg import solve_triangular
    from jax.scipy.special import ndtri

    d = q.shape[0]
    dtype = q.dtype
    pow2 = 2 ** jnp.arange(max_depth + 1)
    ks = jnp.arange(max_depth + 1)
    log_08 = jnp.log(jnp.asarray(0.8, dtype))
    zero = jnp.asarray(0.0, dtype)
    # every random number the iteration can need, from one call of the generator (each call of
    # jax.random adds a copy of the Threefry hash to the program, and compile time with it)
    u = _open_uniforms(jax.random.bits(key, (2 * d + 2 ** max_depth + 2 * (max_depth + 1),), jnp.uint32), dtype)
    normals = ndtri(u[: 2 * d]).reshape(2, d)
    # p ~ N(0, M), M = minv^-1 = L^-T L^-1 where minv = L L^T
    p_nuts, p_search = solve_triangular(chol.T, normals.T, lower=False).T
    u = u[2 * d:]
    log_u_leaf = jnp.log(u[: 2 ** max_depth])
    log_u_merge = jnp.log(u[2 ** max_depth: 2 ** max_depth + max_depth + 1])
    forward_at = u[2 ** max_depth + max_depth + 1:] < 0.5

    def velocity(p):
        # minv @ p as a fused multiply-and-sum: tiny matrix products are slower as library calls
        return (minv * p[None, :]).sum(1)

    def point(q_, p_, g_):
        """A phase-space point packed as rows (q, p, grad log density, velocity)."""
        return jnp.stack([q_, p_, g_, velocity(p_)])

    def integrate(edge, step, size, depth, h0):
        """Up to ``size`` leapfrog steps from ``edge``: one subtree, stopped early if it turns or diverges."""
        def cond(c):
            return (c["n"] < size) & ~c["stop"]

        def body(c):
            n = c["n"]
            p_half = c["edge"][1] + 0.5 * step * c["edge"][2]
            q1 = c["edge"][0] + step * velocity(p_half)
            lp1, g1 = logp_grad(q1)
            new = point(q1, p_half + 0.5 * step * g1, g1)
            h = -lp1 + 0.5 * (new[1] * new[3]).sum()
            delta = jnp.where(jnp.isnan(h), jnp.inf, h - h0)
            log_w = jnp.logaddexp(c["log_w"], -delta)
            pick = log_u_leaf[n] < -delta - log_w          # progressive uniform sampling in the subtree
            rho = c["rho"] + new[1]
            starts = (n % pow2) == 0                         # a span of size 2**k starts at leaf n
            start_v = jnp.where(starts[:, None], new[3], c["start_v"])
            start_vp = jnp.where(starts, (new[1] * new[3]).sum(), c["start_vp"])
            rho_before = jnp.where(starts[:, None], c["rho"], c["rho_before"])
            ends = (ks >= 1) & (ks <= depth) & (((n + 1) % pow2) == 0)   # spans of size 2**k ending at n
            span = rho - rho_before
            # the criterion on rho minus half of each end's momentum (Betancourt 2017, A.4.2)
            cross = (start_v * new[1]).sum(1)                 # v_start . p_end = v_end . p_start
            left = (start_v * span).sum(1) - 0.5 * start_vp - 0.5 * cross
            right = (span * new[3]).sum(1) - 0.5 * cross - 0.5 * (new[1] * new[3]).sum()
            turning = jnp.any(ends & ((left <= 0) | (right <= 0)))
            diverging = delta > _MAX_ENERGY_ERROR
            return {"n": n + 1, "edge": new, "log_w": log_w, "rho": rho, "start_v": start_v,
                    "rho_before": rho_before, "start_vp": start_vp, "prop": jnp.where(pick, new, c["prop"]),
                    "prop_lp": jnp.where(pick, lp1, c["prop_lp"]), "lp": lp1, "delta": delta,
                    "sum_accept": c["sum_accept"] + jnp.where(diverging, 0.0, jnp.minimum(1.0, jnp.exp(-delta))),
                    "turning": turning, "diverging": diverging, "stop": turning | diverging}

        zeros = jnp.zeros((max_depth + 1, d), dtype)
        init = {"n": jnp.int32(0), "edge": edge, "log_w": jnp.asarray(-jnp.inf, dtype), "rho": jnp.zeros(d, dtype),
                "start_v": zeros, "rho_before": zeros, "start_vp": jnp.zeros(max_depth + 1, dtype), "prop": edge, "prop_lp": zero, "lp": zero, "delta": zero,
                "sum_accept": zero, "turning": jnp.bool_(False), "diverging": jnp.bool_(False),
                "stop": jnp.bool_(False)}
        return lax.while_loop(cond, body, init)

    def enter_nuts(c):
        """Start the trajectory at the chain's state."""
        start = point(c["q"], p_nuts, c["g"])
        return {**c, "mode": jnp.int32(_NUTS), "h0": -c["lp"] + 0.5 * (p_nuts * start[3]).sum(),
                "edges": jnp.stack([start, start]), "prop": start, "prop_lp": c["lp"], "log_w": zero,
                "rho": p_nuts, "depth": jnp.int32(0)}

    def evaluate_branch(c, sub):
        c = {**c, "q": sub["edge"][0], "lp": sub["lp"], "g": sub["edge"][2], "mode": jnp.int32(_SEARCH)}
        c["h0"] = -c["lp"] + 0.5 * (p_search * velocity(p_search)).sum()
        return lax.cond(c["search"], lambda c: c, enter_nuts, c)

    def search_branch(c, sub):
        log_accept = -sub["delta"]
        first = c["n_search"] == 0
        up = jnp.where(first, log_accept > log_08, c["search_up"])
        crossed = ~first & jnp.where(up, log_accept <= log_08, log_accept >= log_08)
        done = crossed | (c["n_search"] + 1 >= _MAX_SEARCH)
        c = {**c, "search_up": up, "n_search": c["n_search"] + 1,
             "eps": jnp.where(done, c["eps_try"], c["eps"]),
             "eps_try": jnp.where(done, c["eps_try"], c["eps_try"] * jnp.where(up, 2.0, 0.5).astype(dtype))}
        return lax.cond(done, enter_nuts, lambda c: c, c)

    def nuts_branch(c, sub):
        """Fold a finished subtree into the trajectory (biased progressive sampling) and check the U-turn."""
        depth, forward = c["depth"], forward_at[c["depth"]]
        invalid = sub["turning"] | sub["diverging"]
        edges = jnp.where((jnp.arange(2) == forward.astype(jnp.int32))[:, None, None], sub["edge"][None], c["edges"])
        take = ~invalid & (log_u_merge[depth] < sub["log_w"] - c["log_w"])
        rho = c["rho"] + sub["rho"]
        half = rho - 0.5 * (edges[0, 1] + edges[1, 1])
        turns = ((edges[0, 3] * half).sum() <= 0) | ((edges[1, 3] * half).sum() <= 0)
        stop = invalid | turns | (depth + 1 >= max_depth)
        return {**c, "edges": edges, "prop": jnp.where(take, sub["prop"], c["prop"]),
                "prop_lp": jnp.where(take, sub["prop_lp"], c["prop_lp"]),
                "log_w": jnp.where(invalid, c["log_w"], jnp.logaddexp(c["log_w"], sub["log_w"])),
                "rho": rho, "depth": depth + 1, "mode": jnp.where(stop, _DONE, _NUTS).astype(jnp.int32),
                "n_steps": c["n_steps"] + sub["n"], "sum_accept": c["sum_accept"] + sub["sum_accept"],
                "diverging": c["diverging"] | sub["diverging"]}

    def body(c):
        mode = c["mode"]
        in_nuts = mode == _NUTS
        forward = forward_at[c["depth"]]
        # EVALUATE: one step of size 0 from (q, p = 0); SEARCH: one step of the trial size from
        # (q, p_search); NUTS: 2**depth steps from the trajectory's edge in the chosen direction
        edge = jnp.where(in_nuts, c["edges"][forward.astype(jnp.int32)],
                         point(c["q"], jnp.where(mode == _SEARCH, p_search, 0.0), c["g"]))
        step = jnp.where(in_nuts, jnp.where(forward, c["eps"], -c["eps"]),
                         jnp.where(mode == _SEARCH, c["eps_try"], zero))
        size = jnp.where(in_nuts, pow2[c["depth"]], 1)
        sub = integrate(edge, step, size, jnp.where(in_nuts, c["depth"], 0), c["h0"])
        return lax.switch(mode, [evaluate_branch, search_branch, nuts_branch], c, sub)

    start = {"q": q, "lp": lp, "g": g, "eps": eps, "eps_try": eps, "search": search,
             "search_up": jnp.bool_(True), "n_search": jnp.int32(0),
             "n_steps": jnp.int32(0), "diverging": jnp.bool_(False), "sum_accept": zero}
    start = enter_nuts(start)
    start["mode"] = jnp.where(evaluate, _EVALUATE, jnp.where(search, _SEARCH, _NUTS)).astype(jnp.int32)
    start["h0"] = jnp.where(search & ~evaluate, -lp + 0.5 * (p_search * velocity(p_search)).sum(), start["h0"])
    end = lax.while_loop(lambda c: c["mode"] != _DONE, body, start)
    new = end["prop"]
    stats = {"accept_prob": end["sum_accept"] / jnp.maximum(end["n_steps"], 1), "n_steps": end["n_steps"],
             "tree_depth": end["depth"], "diverging": end["diverging"],
             "energy": -end["prop_lp"] + 0.5 * (new[1] * new[3]).sum()}
    return (new[0], end["prop_lp"], new[2]), end["eps"], stats


def initial_state(q0: np.ndarray) -> dict:
    """A chain's sampler state before its first iteration, at position ``q0`` (numpy, float32)."""
    q0 = np.asarray(q0, np.float32)
    d = q0.shape[-1]
    zero = np.float32(0.0)
    eye = np.eye(d, dtype=np.float32)
    return {"q": q0, "lp": zero, "g": np.zeros(d, np.float32),
            "da": _da_restart(np.float32(1.0), np.log, zero),
            "welford": (zero, np.zeros(d, np.float32), np.zeros((d, d), np.float32)),
            "minv": eye, "chol": eye, "search": np.bool_(True)}


def _da_restart(eps, log, zero):
    """Dual averaging's state when it starts (again) from step size ``eps``."""
    return {"log_eps": log(eps), "log_eps_bar": zero, "h_bar": zero, "mu": log(10.0 * eps), "t": zero}


def advance(state: dict, key, start, logp_grad: Callable, *, iterations: int, warmup: int, draws: int,
            target_accept: float, max_depth: int, dense: bool):
    """Run a chain's iterations ``start .. start + iterations - 1`` (of ``warmup + draws``) from ``state``.

    Iteration ``i`` draws its random numbers from ``fold_in(key, i)``, so a chain
    run in pieces gives the same draws as in one go.  Iterations past the last
    one leave the state as it is (their outputs are to be discarded).  Returns
    (state, (position after each iteration, its statistics)); the draws are
    the positions of iterations ``warmup`` onwards.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    dtype = state["q"].dtype
    total = warmup + draws
    collect_w, update_w = warmup_schedule(warmup)
    padded = total + iterations                      # the schedule as constants, padded for the last piece
    collect_all = jnp.asarray(np.concatenate([collect_w, np.zeros(padded - warmup, bool)]))
    update_all = jnp.asarray(np.concatenate([update_w, np.zeros(padded - warmup, bool)]))
    gamma, t0, kappa = 0.05, 10.0, 0.75
    zero = jnp.asarray(0.0, dtype)

    def step(carry, i):
        collect, update, adapt = collect_all[i], update_all[i], i < warmup
        q, lp, g, da, welford, minv, chol, search = (carry[k] for k in (
            "q", "lp", "g", "da", "welford", "minv", "chol", "search"))
        eps = jnp.exp(jnp.where(adapt, da["log_eps"], da["log_eps_bar"]))
        (q, lp, g), eps_used, stats = _transition(jax.random.fold_in(key, i), q, lp, g, eps, minv, chol, logp_grad,
                                                  max_depth, evaluate=i == 0, search=search)
        da = jax.tree.map(lambda a, b: jnp.where(search, a, b), _da_restart(eps_used, jnp.log, zero), da)
        # dual averaging of the step size
        t = da["t"] + 1.0
        eta = 1.0 / (t + t0)
        h_bar = (1.0 - eta) * da["h_bar"] + eta * (target_accept - stats["accept_prob"])
        log_eps = da["mu"] - jnp.sqrt(t) / gamma * h_bar
        w = t ** -kappa
        new_da = {"log_eps": log_eps, "log_eps_bar": w * log_eps + (1.0 - w) * da["log_eps_bar"],
                  "h_bar": h_bar, "mu": da["mu"], "t": t}
        da = jax.tree.map(lambda a, b: jnp.where(adapt, a, b), new_da, da)
        # Welford's running mean and covariance over the slow window
        n, mean, m2 = welford
        n1 = n + 1.0
        delta = q - mean
        mean1 = mean + delta / n1
        m2_1 = m2 + jnp.outer(delta, q - mean1)
        n, mean, m2 = jax.tree.map(lambda a, b: jnp.where(collect, a, b), (n1, mean1, m2_1), welford)
        cov = m2 / jnp.maximum(n - 1.0, 1.0)
        if not dense:
            cov = jnp.diag(jnp.diag(cov))
        # shrunk towards 1e-3 of its own diagonal, not Stan's absolute 1e-3 * I: posterior variances
        # fall as 1/runs, and below ~1e-5 the absolute term would set the metric (10^4 runs: twice the
        # leapfrog steps per draw, 10^5: about six times; the cost grew faster than the data)
        var = jnp.maximum(jnp.diag(cov), _MIN_VARIANCE)
        cov = (n / (n + 5.0)) * cov + 1e-3 * (5.0 / (n + 5.0)) * jnp.diag(var)
        minv, chol = lax.cond(update, lambda: (cov, jnp.linalg.cholesky(cov)), lambda: (minv, chol))
        welford = jax.tree.map(lambda a: jnp.where(update, jnp.zeros_like(a), a), (n, mean, m2))
        stats = {**stats, "step_size": eps_used}
        new = {"q": q, "lp": lp, "g": g, "da": da, "welford": welford, "minv": minv, "chol": chol, "search": update}
        return new, (q, stats)

    def step_or_skip(carry, i):
        return lax.cond(i < total, step, lambda c, i: (c, (c["q"], _no_stats(dtype))), carry, i)

    return lax.scan(step_or_skip, state, start + jnp.arange(iterations))


def _no_stats(dtype):
    import jax.numpy as jnp

    zero = jnp.asarray(0.0, dtype)
    return {"accept_prob": zero, "n_steps": jnp.int32(0), "tree_depth": jnp.int32(0), "diverging": jnp.bool_(False),
            "energy": zero, "step_size": zero}


def sample_chain(key, q0, logp_grad: Callable, *, warmup: int, draws: int, target_accept: float,
                 max_depth: int, dense: bool):
    """Run one chain in one piece: ``warmup`` adaptive iterations, then ``draws`` draws.

    ``logp_grad(q) -> (log density, gradient)`` in unconstrained coordinates.
    Returns (positions of the draws, per-draw statistics, final step size,
    final inverse metric).
    """
    import jax
    import jax.numpy as jnp

    state = jax.tree.map(jnp.asarray, initial_state(np.zeros(q0.shape[-1], np.float32)))
    state["q"] = q0
    state, (positions, stats) = advance(state, key, 0, logp_grad, iterations=warmup + draws, warmup=warmup,
                                        draws=draws, target_accept=target_accept, max_depth=max_depth, dense=dense)
    return (positions[warmup:], jax.tree.map(lambda a: a[warmup:], stats), jnp.exp(state["da"]["log_eps_bar"]),
            state["minv"])
