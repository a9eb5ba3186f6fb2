"""A compact No-U-Turn sampler with Stan's windowed warm-up, in JAX.

Why our own kernel rather than ``numpyro.infer.MCMC``: XLA's compile time on a
CPU grows with the number of copies of the model's gradient in the program,
and NumPyro's NUTS program holds several (the trajectory, the step-size search,
the initialisation, the post-processing), which cost ~5 s of compilation per
fit on a 2-core machine whatever the model; ``MCMC.run`` with several chains
also re-traces and re-compiles on every call.  Here every gradient evaluation
of an iteration -- evaluating the starting point, Stan's step-size search and
each leapfrog step of the trajectory -- goes through one ``lax.while_loop``
whose body holds the only copy of the gradient, driven by a small state
machine.  The program is one ``lax.scan`` over warm-up and draws, compiled
once per law, noise model, data shape and settings (see
:mod:`bayescale.sampler`).

The algorithm is Stan's:

* multinomial NUTS (Betancourt 2017, "A Conceptual Introduction to HMC",
  appendix A): the trajectory doubles in a random direction; within a new
  subtree a leaf is drawn in proportion to exp(-H) (progressive uniform
  sampling), and the subtree's draw replaces the current one with probability
  min(1, W_subtree / W_old) (biased progressive sampling);
* the generalised no-U-turn criterion on the momentum sum of every
  sub-trajectory of size 2, 4, ... (checked leaf by leaf with checkpoints) and
  of the whole trajectory after each doubling; a subtree that turns or
  diverges (energy error > 1000) ends the trajectory and is not sampled from;
* warm-up: dual averaging of the step size (Hoffman & Gelman 2014; gamma 0.05,
  t0 10, kappa 0.75) towards ``target_accept``; a dense (or diagonal) metric
  estimated with Welford's algorithm over doubling slow windows (buffers of 75
  and 50 iterations, first window 25: Stan's defaults, scaled down for short
  warm-ups), regularised towards 1e-3 * I as Stan does; the step size is
  re-initialised by Stan's doubling/halving heuristic at the start and after
  every metric update.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["sample_chain", "warmup_schedule"]

_MAX_ENERGY_ERROR = 1000.0
_EVALUATE, _SEARCH, _NUTS, _DONE = 0, 1, 2, 3
_MAX_SEARCH = 60


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

    Returns the new (q, lp, g), the step size used, and the iteration's statistics.
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

    def kinetic(p):
        return 0.5 * (p * velocity(p)).sum()

    def fresh_subtree(c):
        zeros = jnp.zeros((max_depth + 1, d), dtype)
        return {"n": jnp.int32(0), "log_w": jnp.asarray(-jnp.inf, dtype), "rho": jnp.zeros(d, dtype),
                "start_v": zeros, "rho_before": zeros, "prop": c["prop"]}

    def enter_nuts(c):
        """Start the trajectory at the chain's state."""
        v0 = velocity(p_nuts)
        edge = (c["q"], p_nuts, c["g"], v0)
        c = {**c, "mode": jnp.int32(_NUTS), "h0": -c["lp"] + 0.5 * (p_nuts * v0).sum(), "left": edge, "right": edge,
             "prop": (c["q"], p_nuts, c["g"], c["lp"]), "log_w": zero, "rho": p_nuts,
             "depth": jnp.int32(0), "forward": forward_at[0]}
        return {**c, "sub": fresh_subtree(c)}

    def evaluate_branch(c, leaf):
        q1, _, g1, lp1, _, _ = leaf
        c = {**c, "q": q1, "lp": lp1, "g": g1, "h0": -lp1 + kinetic(p_search), "mode": jnp.int32(_SEARCH)}
        return lax.cond(c["search"], lambda c: c, enter_nuts, c)

    def search_branch(c, leaf):
        log_accept = -leaf[4]
        first = c["n_search"] == 0
        up = jnp.where(first, log_accept > log_08, c["search_up"])
        crossed = ~first & jnp.where(up, log_accept <= log_08, log_accept >= log_08)
        done = crossed | (c["n_search"] + 1 >= _MAX_SEARCH)
        c = {**c, "search_up": up, "n_search": c["n_search"] + 1,
             "eps": jnp.where(done, c["eps_try"], c["eps"]),
             "eps_try": jnp.where(done, c["eps_try"], c["eps_try"] * jnp.where(up, 2.0, 0.5).astype(dtype))}
        return lax.cond(done, enter_nuts, lambda c: c, c)

    def nuts_branch(c, leaf):
        q1, p1, g1, lp1, delta, v1 = leaf
        s = c["sub"]
        n, depth = s["n"], c["depth"]
        diverging = delta > _MAX_ENERGY_ERROR
        new_log_w = jnp.logaddexp(s["log_w"], -delta)
        pick = log_u_leaf[n] < -delta - new_log_w       # progressive uniform sampling in the subtree
        rho = s["rho"] + p1
        starts = (n % pow2) == 0                          # a span of size 2**k starts at leaf n
        start_v = jnp.where(starts[:, None], v1, s["start_v"])
        rho_before = jnp.where(starts[:, None], s["rho"], s["rho_before"])
        ends = (ks >= 1) & (ks <= depth) & (((n + 1) % pow2) == 0)   # spans of size 2**k ending at n
        span = rho - rho_before
        turn_k = ((start_v * span).sum(1) <= 0) | ((span * v1[None, :]).sum(1) <= 0)
        turning = jnp.any(ends & turn_k)
        edge = (q1, p1, g1, v1)
        c = {**c, "sub": {"n": n + 1, "log_w": new_log_w, "rho": rho, "start_v": start_v, "rho_before": rho_before,
                          "prop": jax.tree.map(lambda a, b: jnp.where(pick, a, b), (q1, p1, g1, lp1), s["prop"])},
             "right": jax.tree.map(lambda a, b: jnp.where(c["forward"], a, b), edge, c["right"]),
             "left": jax.tree.map(lambda a, b: jnp.where(c["forward"], b, a), edge, c["left"]),
             "n_steps": c["n_steps"] + 1, "diverging": c["diverging"] | diverging,
             "sum_accept": c["sum_accept"] + jnp.where(diverging, 0.0, jnp.minimum(1.0, jnp.exp(-delta)))}
        invalid = turning | diverging

        def merge(c):
            """The subtree is complete (or turned, or diverged): fold it into the trajectory."""
            sub = c["sub"]
            take = ~invalid & (log_u_merge[depth] < sub["log_w"] - c["log_w"])   # biased progressive sampling
            rho = c["rho"] + sub["rho"]
            turns = ((c["left"][3] * rho).sum() <= 0) | ((c["right"][3] * rho).sum() <= 0)
            stop = invalid | turns | (depth + 1 >= max_depth)
            c = {**c, "prop": jax.tree.map(lambda a, b: jnp.where(take, a, b), sub["prop"], c["prop"]),
                 "log_w": jnp.where(invalid, c["log_w"], jnp.logaddexp(c["log_w"], sub["log_w"])),
                 "rho": rho, "depth": depth + 1, "forward": forward_at[depth + 1],
                 "mode": jnp.where(stop, _DONE, _NUTS).astype(jnp.int32)}
            return {**c, "sub": fresh_subtree(c)}

        return lax.cond((n + 1 == pow2[depth]) | invalid, merge, lambda c: c, c)

    def body(c):
        mode = c["mode"]
        in_nuts = mode == _NUTS
        edge = jax.tree.map(lambda r, l: jnp.where(c["forward"], r, l), c["right"], c["left"])
        x_q = jnp.where(in_nuts, edge[0], c["q"])
        x_p = jnp.where(in_nuts, edge[1], jnp.where(mode == _SEARCH, p_search, 0.0))
        x_g = jnp.where(in_nuts, edge[2], c["g"])
        step = jnp.where(in_nuts, jnp.where(c["forward"], c["eps"], -c["eps"]),
                         jnp.where(mode == _SEARCH, c["eps_try"], zero))
        # the one leapfrog step of the program (a plain evaluation of the density when step == 0)
        p1 = x_p + 0.5 * step * x_g
        q1 = x_q + step * velocity(p1)
        lp1, g1 = logp_grad(q1)
        p1 = p1 + 0.5 * step * g1
        v1 = velocity(p1)
        h1 = -lp1 + 0.5 * (p1 * v1).sum()
        delta = jnp.where(jnp.isnan(h1), jnp.inf, h1 - c["h0"])
        return lax.switch(mode, [evaluate_branch, search_branch, nuts_branch], c, (q1, p1, g1, lp1, delta, v1))

    start = {"q": q, "lp": lp, "g": g, "eps": eps, "eps_try": eps, "search": search,
             "search_up": jnp.bool_(True), "n_search": jnp.int32(0),
             "n_steps": jnp.int32(0), "diverging": jnp.bool_(False), "sum_accept": zero}
    start = enter_nuts(start)
    start["mode"] = jnp.where(evaluate, _EVALUATE, jnp.where(search, _SEARCH, _NUTS)).astype(jnp.int32)
    start["h0"] = jnp.where(search & ~evaluate, -lp + kinetic(p_search), start["h0"])
    end = lax.while_loop(lambda c: c["mode"] != _DONE, body, start)
    new_q, new_p, new_g, new_lp = end["prop"]
    stats = {"accept_prob": end["sum_accept"] / jnp.maximum(end["n_steps"], 1), "n_steps": end["n_steps"],
             "tree_depth": end["depth"], "diverging": end["diverging"], "energy": -new_lp + kinetic(new_p)}
    return (new_q, new_lp, new_g), end["eps"], stats


def sample_chain(key, q0, logp_grad: Callable, *, warmup: int, draws: int, target_accept: float,
                 max_depth: int, dense: bool, progress: Callable | None = None):
    """Run one chain: ``warmup`` adaptive iterations, then ``draws`` draws.

    ``logp_grad(q) -> (log density, gradient)`` in unconstrained coordinates;
    ``progress(i)``, if given, is called every 50 iterations (inside the
    program; e.g. a ``jax.debug.callback``).  Returns (positions of the draws,
    per-draw statistics, final step size, final inverse metric).
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    d = q0.shape[0]
    dtype = q0.dtype
    collect_w, update_w = warmup_schedule(warmup)
    total = warmup + draws
    xs = (jnp.arange(total), jax.random.split(key, total), jnp.asarray(np.concatenate([collect_w, np.zeros(draws, bool)])),
          jnp.asarray(np.concatenate([update_w, np.zeros(draws, bool)])), jnp.arange(total) < warmup)
    eye = jnp.eye(d, dtype=dtype)
    gamma, t0, kappa = 0.05, 10.0, 0.75
    zero = jnp.asarray(0.0, dtype)

    def da_restart(eps):
        return {"log_eps": jnp.log(eps), "log_eps_bar": zero, "h_bar": zero, "mu": jnp.log(10.0 * eps), "t": zero}

    def step(carry, x):
        i, k_step, collect, update, adapt = x
        q, lp, g, da, welford, minv, chol, search = carry
        eps = jnp.exp(jnp.where(adapt, da["log_eps"], da["log_eps_bar"]))
        (q, lp, g), eps_used, stats = _transition(k_step, q, lp, g, eps, minv, chol, logp_grad, max_depth,
                                                  evaluate=i == 0, search=search)
        da = jax.tree.map(lambda a, b: jnp.where(search, a, b), da_restart(eps_used), da)
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
        cov = (n / (n + 5.0)) * cov + 1e-3 * (5.0 / (n + 5.0)) * eye
        minv = jnp.where(update, cov, minv)
        chol = jnp.where(update, jnp.linalg.cholesky(cov), chol)
        welford = jax.tree.map(lambda a: jnp.where(update, jnp.zeros_like(a), a), (n, mean, m2))
        if progress is not None:
            lax.cond(((i + 1) % 50 == 0) | (i + 1 == total), progress, lambda j: None, i + 1)
        stats = {**stats, "step_size": eps_used}
        return (q, lp, g, da, welford, minv, chol, update), (q, stats)

    welford0 = (zero, jnp.zeros(d, dtype), jnp.zeros((d, d), dtype))
    carry = (q0, zero, jnp.zeros(d, dtype), da_restart(jnp.asarray(1.0, dtype)), welford0, eye, eye,
             jnp.bool_(True))
    carry, (positions, stats) = lax.scan(step, carry, xs)
    _, _, _, da, _, minv, _, _ = carry
    return positions[warmup:], jax.tree.map(lambda a: a[warmup:], stats), jnp.exp(da["log_eps_bar"]), minv
