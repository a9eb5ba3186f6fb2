"""Many independent problems of one law in one compiled program (:func:`sample_batch`).

The sampler is :mod:`bayescale.inference.lockstep` (its docstring says why not NUTS).  Layout:
the problems are cut into *chunks* of ``rows`` consecutive problems, ``rows * chains`` lanes per
chunk (the program's shape, compiled once per law, noise model, settings and shapes; the last
chunk is filled up with copies of its first problem, discarded).  A chunk's lanes are spread over
the host CPU devices (or the GPUs) along the lane axis.  Data sets are padded to one shared size
(:func:`bayescale.sampler.padded_size` of the largest, the padding masked out of the likelihood
as for a single fit).  The density is the NumPyro model's (``potential_energy`` of
:func:`bayescale.model.make_model` in the unconstrained coordinates of
:func:`bayescale.sampler.latent_sites`): exactly what a single fit samples.

Starts, for all problems at once: the maximum of the log posterior from ``STARTS`` points per
problem (the priors' medians, and points moved by Uniform(-2, 2) from them, as
:func:`bayescale.init.quick_optimum` starts its least squares), by ``_ADAM_STEPS`` steps of Adam
in the unconstrained coordinates, the best end point per problem kept; each chain starts there
moved by Uniform(-j, j) per coordinate, ``j = min(0.1, 3 sd)`` with ``sd`` from the Hessian of
the log posterior at that point (as :func:`bayescale.fit` scales its start jitter).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..sampler import latent_sites, padded_size

__all__ = ["Problem", "devices_for", "rows_per_chunk", "sample_batch"]

#: Lanes per chunk (chains x problems vectorised in one program): measured on this 2-core machine,
#: the cost per lane-gradient falls until ~1000 lanes and is flat beyond (benchmarks/batch.py).
LANES = 1024
STARTS = 4
_ADAM_STEPS = 400
_PIECE = 250          # iterations per program call (the progress bar moves by them)


@dataclass(frozen=True)
class Problem:
    """One data set ready to sample: inputs, reference points, response, seed."""

    inputs: dict
    refs: dict
    loss: np.ndarray
    seed: int


def devices_for(device: str = "auto") -> tuple:
    """The devices a batch runs on: ``"cpu"`` (host CPU devices), ``"gpu"``, or ``"auto"`` (the GPUs if any)."""
    import jax

    from ..errors import BayescaleError

    if device not in ("auto", "cpu", "gpu"):
        raise BayescaleError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}")
    if device in ("auto", "gpu"):
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:
            gpus = []
        if gpus:
            return tuple(gpus)
        if device == "gpu":
            raise BayescaleError("device='gpu' but JAX sees no GPU; install the CUDA build of jax "
                                 "(pip install 'bayescale[gpu]') or use device='cpu'")
    return tuple(jax.devices("cpu"))


def rows_per_chunk(problems: int, chains: int, devices: int) -> int:
    """Problems per chunk: ``LANES // chains``; for fewer problems a multiple of 32 (below 32, a power of
    two, at least the devices), so that batches of different sizes share a few compiled shapes."""
    rows = max(1, LANES // chains)
    if problems < rows:
        small = max(devices, 1 << max(0, math.ceil(math.log2(max(problems, 1)))))
        rows = min(rows, small if small <= 32 else 32 * math.ceil(problems / 32))
    return rows


def _functions(law, noise: str, dim: int, warmup: int, draws: int, target_accept: float, dense: bool):
    """(optimise, first, advance) for ``law``: plain functions of the lanes' arrays."""
    import jax
    import jax.numpy as jnp
    from numpyro.infer.util import potential_energy

    from ..model import make_model
    from .lockstep import lockstep_program

    model = make_model(law, noise)
    names = tuple(latent_sites(law))

    def logp(q, data):
        inputs, refs, y, mask = data
        return -potential_energy(model, (inputs, refs), {"loss": y, "mask": mask},
                                 {n: q[i] for i, n in enumerate(names)})

    logp_grad = jax.value_and_grad(logp)
    first, advance = lockstep_program(logp_grad, dim=dim, warmup=warmup, draws=draws,
                                      target_accept=target_accept, dense=dense)

    def optimise(z0, data):
        """Adam on -log p from every start (lanes), then the Hessian's sd at each end point."""
        vg = jax.vmap(logp_grad)
        lr, b1, b2 = 0.05, 0.9, 0.999

        def body(t, s):
            z, m, v = s
            _, g = vg(z, data)
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            mh = m / (1 - b1 ** (t + 1.0))
            vh = v / (1 - b2 ** (t + 1.0))
            return z + lr * mh / (jnp.sqrt(vh) + 1e-8), m, v

        z, _, _ = jax.lax.fori_loop(0, _ADAM_STEPS, body, (z0, jnp.zeros_like(z0), jnp.zeros_like(z0)))
        lp, _ = vg(z, data)
        hess = jax.vmap(jax.hessian(logp))(z, data)
        cov = jnp.linalg.inv(-hess + jnp.eye(dim))      # plus a unit precision, as quick_optimum's scale
        sd = jnp.sqrt(jnp.clip(jnp.diagonal(cov, axis1=1, axis2=2), 0.0, 1.0))
        sd = jnp.where(jnp.isfinite(sd), sd, 1.0)
        return z, jnp.where(jnp.isfinite(lp), lp, -jnp.inf), sd

    return optimise, first, advance


@lru_cache(maxsize=16)
def _programs(law, noise: str, dim: int, warmup: int, draws: int, target_accept: float, dense: bool,
              devices: tuple, rows: int, chains: int, size: int, inputs: tuple, refs: tuple):
    """The three compiled programs for one batch shape, each ``(compiled, argument shardings)``: exported
    to the program cache (:func:`bayescale.sampler.cached_program`), so a new process skips the tracing."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from ..sampler import cached_program

    mesh = Mesh(np.array(devices), ("lanes",))
    lane, whole = NamedSharding(mesh, PartitionSpec("lanes")), NamedSharding(mesh, PartitionSpec())
    f32 = np.float32
    optimise, first, advance = _functions(law, noise, dim, warmup, draws, target_accept, dense)

    def spec(shape, dtype=f32):
        return jax.ShapeDtypeStruct(shape, np.dtype(dtype))

    def data_spec(n):
        return ({k: spec((n, size)) for k in inputs}, {k: spec((n,)) for k in refs}, spec((n, size)),
                spec((n, size), bool))

    def shardings(tree, n):
        return jax.tree.map(lambda a: lane if a.ndim and a.shape[0] == n else whole, tree)

    key = {"lockstep": law.text, "noise": noise, "dim": dim, "warmup": warmup, "draws": draws,
           "target_accept": target_accept, "dense": dense, "devices": len(devices), "rows": rows, "chains": chains,
           "size": size, "inputs": inputs, "refs": refs, "piece": _PIECE, "starts": STARTS, "adam": _ADAM_STEPS}

    def build(name, fn, args, n, static_whole=()):
        def trace():             # only when the program is not in the cache: tracing NumPyro's model costs seconds
            ins = tuple(whole if i in static_whole else shardings(a, n) for i, a in enumerate(args))
            outs = shardings(jax.eval_shape(fn, *args), n)
            return jax.export.export(jax.jit(fn, in_shardings=ins, out_shardings=outs))(*args)
        return cached_program({**key, "program": name}, trace, mesh, args)

    n_opt, n = rows * STARTS, rows * chains
    opt = build("optimise", optimise, (spec((n_opt, dim)), data_spec(n_opt)), n_opt)
    keys = spec((n, 2), np.uint32)
    first_args = (spec((n, dim)), data_spec(n), keys)
    fst = build("first", first, first_args, n)
    state = jax.tree.map(lambda a: spec(a.shape, a.dtype), fst[0].out_info)     # the state's shapes, untraced
    adv = build("advance", advance, (state, data_spec(n), keys, spec((), np.int32), spec((_PIECE,), np.int32)), n,
                static_whole=(3, 4))
    return opt, fst, adv


def _call(program, *args):
    """Run a compiled program: its arguments placed as it expects."""
    import jax

    compiled, shardings = program
    leaves, tree = jax.tree.flatten(args)
    return compiled(*jax.tree.unflatten(tree, [jax.device_put(a, s) for a, s in zip(leaves, shardings)]))


def _padded(problems: list, size: int):
    """Problems' data as arrays (problems, size) / (problems,), padding repeating run 0 (masked out)."""
    first = problems[0]
    n = len(problems)
    inputs = {k: np.ones((n, size), np.float32) for k in first.inputs}
    refs = {k: np.ones(n, np.float32) for k in first.refs}
    ys = np.ones((n, size), np.float32)
    masks = np.zeros((n, size), bool)
    for r, p in enumerate(problems):
        m = len(p.loss)
        take = np.arange(size)
        take[m:] = 0
        for k in inputs:
            inputs[k][r] = np.asarray(p.inputs[k], np.float32)[take]
        for k in refs:
            refs[k][r] = p.refs[k]
        ys[r] = np.asarray(p.loss, np.float32)[take]
        masks[r, :m] = True
    return inputs, refs, ys, masks


def _lanes(data, times: int):
    """Each problem's data repeated ``times`` (its chains, or its starts), problem-major."""
    import jax

    return jax.tree.map(lambda a: np.repeat(a, times, axis=0), data)


def _keys(seeds: np.ndarray, chains: int) -> np.ndarray:
    """Lane keys: chain ``c`` of a problem with seed ``s`` gets ``fold_in(PRNGKey(s), c)``."""
    import jax

    base = jax.vmap(jax.random.PRNGKey)(np.asarray(seeds, np.uint32))
    lane = np.repeat(np.asarray(base), chains, axis=0)
    chain = np.tile(np.arange(chains, dtype=np.uint32), len(seeds))
    return np.asarray(jax.vmap(jax.random.fold_in)(lane, chain))


def sample_batch(law, noise: str, problems: list, *, chains: int, warmup: int, draws: int, target_accept: float,
                 dense_mass: bool, steps: int, device: str = "auto", size: int | None = None, progress=None):
    """Sample every :class:`Problem` with :mod:`.lockstep` HMC; returns (per-problem results, info).

    Each result: ``(positions, stats, start)``: positions (chains, draws, sites) unconstrained,
    float64; stats (chains, draws): ``diverging``, ``n_steps``, ``tree_depth`` (the NUTS depth
    that many steps would take, for the gate's saturation check), ``energy``, ``accept_prob``,
    ``step_size``; start: the optimum's position.  ``steps``: the mean leapfrog steps per
    iteration; problems go in chunks of :func:`rows_per_chunk`.  ``size``: the padded data size (the
    largest problem's unless given).  A problem's draws depend on its data, seed, the settings,
    ``size`` and the devices, not on the other problems (a lane's arithmetic is its own; tested bit
    for bit against batches of other sizes).  ``progress``: a callable
    ``(fits_done, note)`` or None.
    """

    t0 = time.perf_counter()
    devs = devices_for(device)
    sites = latent_sites(law)
    dim = len(sites)
    rows = rows_per_chunk(len(problems), chains, len(devs))
    size = size or padded_size(max(len(p.loss) for p in problems))
    if progress is not None:
        progress(0, "compiling the batched sampler (once per law and shapes)")
    if rows % len(devs):
        devs = devs[:1]
    first_problem = problems[0]
    programs = _programs(law, noise, dim, warmup, draws, float(target_accept), bool(dense_mass), devs, rows, chains,
                         size, tuple(first_problem.inputs), tuple(first_problem.refs))
    compile_s = time.perf_counter() - t0
    total = warmup + draws
    z0 = np.array([float(prior.unconstrain(prior.median())) for prior in sites.values()], np.float32)
    from .lockstep import trajectory_steps

    n_steps = trajectory_steps(0, math.ceil(total / _PIECE) * _PIECE, steps)
    out, t_start, t_sample = [], 0.0, 0.0
    for begin in range(0, len(problems), rows):
        chunk = problems[begin:begin + rows]
        real = len(chunk)
        chunk = chunk + [chunk[0]] * (rows - real)
        data = _padded(chunk, size)
        ts = time.perf_counter()
        # starts: the priors' medians and STARTS - 1 points moved by Uniform(-2, 2), per problem
        starts = np.repeat(z0[None, None], rows, 0).repeat(STARTS, 1)
        for r, p in enumerate(chunk):
            rng = np.random.default_rng([p.seed, 2])
            starts[r, 1:] += rng.uniform(-2, 2, size=(STARTS - 1, dim)).astype(np.float32)
        z, lp, sd = (np.asarray(a) for a in _call(programs[0], starts.reshape(rows * STARTS, dim),
                                                    _lanes(data, STARTS)))
        best = np.argmax(lp.reshape(rows, STARTS), axis=1)
        pick = np.arange(rows) * STARTS + best
        centre, half = z[pick], np.minimum(0.1, 3.0 * sd[pick])
        q0 = np.empty((rows * chains, dim), np.float32)
        for r, p in enumerate(chunk):
            rng = np.random.default_rng([p.seed, 1])             # the start jitter's stream of fit(seed=...)
            q0[r * chains:(r + 1) * chains] = centre[r] + rng.uniform(-1, 1, size=(chains, dim)) * half[r]
        t_start += time.perf_counter() - ts
        ts = time.perf_counter()
        ldata = _lanes(data, chains)
        keys = _keys(np.array([p.seed for p in chunk]), chains)
        state = _call(programs[1], q0, ldata, keys)
        positions, stats = [], []
        for i in range(0, total, _PIECE):
            state, (q, st) = _call(programs[2], state, ldata, keys, np.int32(i), n_steps[i:i + _PIECE])
            if i + _PIECE > warmup:
                keep = slice(max(warmup - i, 0), None)
                positions.append(np.asarray(q)[keep])
                stats.append({k: np.asarray(v)[keep] for k, v in st.items()})
            if progress is not None:      # fits done, counting this chunk's share of its iterations
                progress(begin + real * min(i + _PIECE, total) // (total + 1), "")
        pos = np.concatenate(positions)[:draws]                       # (draws, lanes, dim)
        st = {k: np.concatenate([s[k] for s in stats])[:draws] for k in stats[0]}
        t_sample += time.perf_counter() - ts
        for r in range(real):
            sl = slice(r * chains, (r + 1) * chains)
            n = st["n_steps"][:, sl].T.astype(np.int32)
            one = {"diverging": st["diverging"][:, sl].T, "n_steps": n,
                   "tree_depth": np.ceil(np.log2(n + 1.0)).astype(np.int32),
                   "energy": st["energy"][:, sl].T.astype(float), "accept_prob": st["accept_prob"][:, sl].T.astype(float),
                   "step_size": st["step_size"][:, sl].T.astype(float)}
            out.append((np.swapaxes(pos[:, sl], 0, 1).astype(float), one, centre[r]))
        if progress is not None:
            progress(begin + real, "")
    info = {"device": devs[0].platform, "devices": len(devs), "rows": rows, "lanes": rows * chains,
            "padded_size": size, "steps": steps, "compile_s": compile_s, "start_s": t_start,
            "sampling_s": t_sample, "total_s": time.perf_counter() - t0}
    return out, info
