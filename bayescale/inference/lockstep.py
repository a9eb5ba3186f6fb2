"""Lockstep HMC: the chains of many problems as SIMD lanes that all take the same number of steps.

Why not NUTS for a batch: vectorised NUTS chains run their trees in lockstep, every lane waiting
for the longest tree of the batch, and the tree's bookkeeping (U-turn checks, multinomial
sampling, branches turned into selects) costs as much again.  Measured on the 92 Revisiting-NSL
curves, the useful fraction of the leapfrog steps was 0.58 with 4 lanes, 0.12 with 64 and 0.06
with 256; an earlier empirical-HMC batch sampler (each lane its own trajectory length, one
leapfrog per lane per loop step, an event block for the bookkeeping) paid ~4 gradients of
bookkeeping per gradient and was slower than a loop of single fits (branch ``issue-12``).

Here every lane takes the *same* number of leapfrog steps ``L_i`` at iteration ``i``, so a step
of the batch is one vectorised gradient with no bookkeeping at all, and every lane does useful
work in every step.  ``L_i`` is drawn once per iteration, independently of every state and of
the problems, uniformly from ``{ceil(L/2), ..., L + floor(L/2)}`` (a jittered trajectory length,
which avoids the periodic orbits of a fixed one; Neal 2011, section 3.2); the draw depends only on
the batch seed and ``i``.  Each lane is then an HMC chain with a fixed number of steps whose step
size and metric are its own: a valid Markov kernel for its problem's posterior, the same
posterior as :func:`bayescale.fit` samples (NUTS).  What differs from NUTS is efficiency: a
trajectory length ``L * step size`` that suits one problem may be short for another, and the
diagnostics gate of each problem says so (a problem that fails it is retried with twice the
steps, see :func:`bayescale.fit_many`).

Warm-up per lane, as the NUTS kernel's (:mod:`bayescale.nuts`): Stan's windows
(:func:`bayescale.nuts.warmup_schedule`); a dense (or diagonal) metric from Welford's estimate
over each slow window, shrunk towards 1e-3 of its own diagonal; dual averaging (gamma 0.05,
t0 10, kappa 0.75) of the step size towards ``target_accept`` of the Metropolis acceptance
probability; after every metric update (and at the start) a step-size search of ``_SEARCH``
single leapfrog steps per lane (double while a step's acceptance exceeds 0.8, halve while it is
below, as Stan's heuristic, stopped when it crosses).  A trajectory whose energy error exceeds
1000 or is not finite is divergent and rejected.

Random numbers: lane ``k`` (chain ``c`` of a problem) has its own key (``keys[k]``), folded with
a purpose (0 momentum, 1 Metropolis uniform, 2 + j the j-th trial of a step-size search) and then
the iteration: a problem's draws depend only on its
data, start, key and the batch's ``L_i``, not on the other lanes or where it sits in the batch.
"""

from __future__ import annotations

import numpy as np

from ..nuts import warmup_schedule

__all__ = ["lockstep_program", "trajectory_steps"]

_MAX_ENERGY_ERROR = 1000.0
_SEARCH = 10
_MIN_VARIANCE = 1e-20
_DA_GAMMA, _DA_T0, _DA_KAPPA = 0.05, 10.0, 0.75


def trajectory_steps(seed: int, iterations: int, steps: int) -> np.ndarray:
    """Leapfrog steps of each iteration: uniform on {ceil(L/2), ..., L + floor(L/2)} for ``L = steps``."""
    rng = np.random.default_rng([int(seed), 7])
    low = max(1, (steps + 1) // 2)
    return rng.integers(low, steps + steps // 2 + 1, size=iterations).astype(np.int32)


def lockstep_program(logp_grad, *, dim: int, warmup: int, draws: int, target_accept: float, dense: bool):
    """``(init, advance)`` for a batch of lanes.

    ``logp_grad(q, data) -> (log density, gradient)`` for ONE lane (vmapped here).
    ``init(q0, data) -> state`` evaluates the starts and searches a first step size;
    ``advance(state, data, keys, begin, steps) -> (state, (positions, stats))`` runs the
    iterations ``begin, begin + 1, ...`` (as many as ``steps`` has entries: their leapfrog
    steps).  Iterations past ``warmup + draws`` are no-ops.  Positions and stats have a leading
    iteration axis then the lane axis.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    total = warmup + draws
    collect_w, update_w = warmup_schedule(warmup)
    collect_all = jnp.asarray(np.concatenate([collect_w, np.zeros(draws + 1, bool)]))
    update_all = jnp.asarray(np.concatenate([update_w, np.zeros(draws + 1, bool)]))
    vg = jax.vmap(logp_grad)
    eye = jnp.eye(dim, dtype=jnp.float32)

    def kinetic(p, minv):
        return 0.5 * jnp.einsum("li,lij,lj->l", p, minv, p)

    def velocity(p, minv):
        return jnp.einsum("lij,lj->li", minv, p)

    def leapfrogs(q, g, p, eps, minv, n, data):
        def body(_, s):
            q, g, p, lp = s
            p = p + 0.5 * eps[:, None] * g
            q = q + eps[:, None] * velocity(p, minv)
            lp, g = vg(q, data)
            p = p + 0.5 * eps[:, None] * g
            return q, g, p, lp
        return lax.fori_loop(0, n, body, (q, g, p, jnp.zeros(q.shape[0], q.dtype)))

    def stream(keys, purpose, i):
        return jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, purpose), i))(keys)

    def momentum(keys, purpose, i, chol_inv_t):
        z = jax.vmap(lambda k: jax.random.normal(k, (dim,)))(stream(keys, purpose, i))
        return jnp.einsum("lij,lj->li", chol_inv_t, z)

    def uniform(keys, i):
        return jax.vmap(jax.random.uniform)(stream(keys, 1, i))

    def energy_error(lp0, p0, lp1, p1, minv):
        de = (-lp1 + kinetic(p1, minv)) - (-lp0 + kinetic(p0, minv))
        return jnp.where(jnp.isfinite(de), de, jnp.inf)

    def search(state, data, keys, i):
        """Stan's step-size heuristic, ``_SEARCH`` single leapfrog steps per lane in lockstep."""
        q, lp, g, minv, cit = state["q"], state["lp"], state["g"], state["minv"], state["cit"]

        def body(j, s):
            eps, direction, done = s
            p = momentum(keys, 2 + j, i + 1, cit)
            q1, g1, p1, lp1 = leapfrogs(q, g, p, eps, minv, 1, data)
            a = jnp.exp(jnp.minimum(0.0, -energy_error(lp, p, lp1, p1, minv)))
            up = a > 0.8
            direction = jnp.where(j == 0, jnp.where(up, 1.0, -1.0), direction)
            crossed = (direction > 0) != up
            done = done | ((j > 0) & crossed)
            eps = jnp.where(done, eps, eps * jnp.where(direction > 0, 2.0, 0.5))
            return eps, direction, done

        eps, _, _ = lax.fori_loop(0, _SEARCH, body, (state["eps"], jnp.ones_like(lp), jnp.zeros(lp.shape, bool)))
        zero = jnp.zeros_like(lp)
        return {**state, "eps": eps, "da": {"mu": jnp.log(10.0 * eps), "h_bar": zero, "log_eps_bar": zero,
                                            "t": zero}}

    def init(q0, data):
        lanes = q0.shape[0]
        lp, g = vg(q0, data)
        minv = jnp.broadcast_to(eye, (lanes, dim, dim))
        zero = jnp.zeros(lanes, q0.dtype)
        state = {"q": q0, "lp": lp, "g": g, "minv": minv, "cit": minv, "eps": jnp.full(lanes, 0.1, q0.dtype),
                 "da": {"mu": zero, "h_bar": zero, "log_eps_bar": zero, "t": zero},
                 "welford": (jnp.zeros((), q0.dtype), jnp.zeros_like(q0), jnp.zeros((lanes, dim, dim), q0.dtype))}
        return state

    def metric_update(state):
        n, mean, m2 = state["welford"]
        cov = m2 / jnp.maximum(n - 1.0, 1.0)
        if not dense:
            cov = cov * eye
        var = jnp.maximum(jnp.diagonal(cov, axis1=1, axis2=2), _MIN_VARIANCE)
        cov = (n / (n + 5.0)) * cov + 1e-3 * (5.0 / (n + 5.0)) * var[:, :, None] * eye
        chol = jnp.linalg.cholesky(cov)
        cit = jnp.swapaxes(jnp.linalg.inv(chol), 1, 2)        # L^-T: p = L^-T z ~ N(0, cov^-1)
        return {**state, "minv": cov, "cit": cit,
                "welford": (jnp.zeros_like(n), jnp.zeros_like(mean), jnp.zeros_like(m2))}

    def step(carry, xs):
        state, data, keys = carry
        i, n_steps = xs
        live = i < total
        adapt = i < warmup
        q, lp, g, minv = state["q"], state["lp"], state["g"], state["minv"]
        da = state["da"]
        eps = jnp.where(adapt, state["eps"], jnp.exp(da["log_eps_bar"]))
        p = momentum(keys, 0, i, state["cit"])
        q1, g1, p1, lp1 = leapfrogs(q, g, p, eps, minv, jnp.where(live, n_steps, 0), data)
        de = energy_error(lp, p, lp1, p1, minv)
        divergent = de > _MAX_ENERGY_ERROR
        accept_prob = jnp.where(divergent, 0.0, jnp.exp(jnp.minimum(0.0, -de)))
        take = (uniform(keys, i) < accept_prob) & ~divergent & live
        q = jnp.where(take[:, None], q1, q)
        lp = jnp.where(take, lp1, lp)
        g = jnp.where(take[:, None], g1, g)
        # dual averaging
        t = da["t"] + 1.0
        h_bar = (1.0 - 1.0 / (t + _DA_T0)) * da["h_bar"] + (target_accept - accept_prob) / (t + _DA_T0)
        log_eps = da["mu"] - jnp.sqrt(t) / _DA_GAMMA * h_bar
        w = t ** -_DA_KAPPA
        new_da = {"mu": da["mu"], "h_bar": h_bar, "log_eps_bar": w * log_eps + (1.0 - w) * da["log_eps_bar"], "t": t}
        da = jax.tree.map(lambda a, b: jnp.where(adapt, a, b), new_da, da)
        new_eps = jnp.where(adapt, jnp.exp(log_eps), state["eps"])
        # Welford over the slow windows
        n, mean, m2 = state["welford"]
        collect = collect_all[jnp.minimum(i, total)]
        n1 = n + 1.0
        delta = q - mean
        mean1 = mean + delta / n1
        m2_1 = m2 + delta[:, :, None] * (q - mean1)[:, None, :]
        welford = jax.tree.map(lambda a, b: jnp.where(collect, a, b), (n1, mean1, m2_1), (n, mean, m2))
        state = {**state, "q": q, "lp": lp, "g": g, "da": da, "eps": new_eps, "welford": welford}
        update = update_all[jnp.minimum(i, total)]
        state = lax.cond(update, lambda s: search(metric_update(s), data, keys, i), lambda s: s, state)
        stats = {"accept_prob": accept_prob, "diverging": divergent & live, "energy": -lp + kinetic(p1, minv),
                 "step_size": eps, "n_steps": jnp.broadcast_to(n_steps, lp.shape)}
        return (state, data, keys), (q, stats)

    def first(q0, data, keys):
        return search(init(q0, data), data, keys, -1)

    def advance(state, data, keys, begin, steps):
        iters = begin + jnp.arange(steps.shape[0])
        (state, _, _), out = lax.scan(step, (state, data, keys), (iters, steps))
        return state, out

    return first, advance
