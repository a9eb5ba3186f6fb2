"""Run :mod:`bayescale.nuts` on a law's NumPyro model, several chains at once.

The NumPyro model defines the density: ``numpyro.infer.util.potential_energy``
gives the log joint in unconstrained coordinates (Jacobians included).  Start
points go in and draws come out through the same bijections in numpy
(:meth:`bayescale.priors.Prior.constrain`), so the compiled program holds the
model's gradient once and nothing else of the model.

The program runs a fixed number of iterations of every chain from a given
state and returns the new state (:func:`bayescale.nuts.advance`); a fit calls
it ~20 times, which is what the progress bar counts (no host callbacks in the
program).  The data are arguments, padded to one of a few sizes
(:func:`padded_size`; the padding is masked out of the likelihood), so one
program serves every data set of the same law and a similar size.  Chains
run in parallel over host devices (``shard_map`` over a one-axis mesh); with
more chains than devices each device runs its share one after another
(``lax.map``; ``vmap`` would run their trajectories in lockstep and evaluate
every branch of the sampler).

Reuse across processes: tracing the program in Python takes ~0.5-0.7 s,
longer than loading its compiled code from JAX's persistent compilation
cache.  So the traced program is also saved, exported to StableHLO with
:mod:`jax.export`, under ``<cache>/programs/<host>/``, keyed by everything it
depends on (the law card's text, noise model, settings, data shapes, the
source code of bayescale itself and NumPyro's version; the folder is per jax
version and CPU); a later process deserialises it instead of tracing, and
JAX then finds its compiled code in the persistent cache.  In a process,
programs are kept in memory as well.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np

from .model import hat_name, natural_values
from .nuts import advance, initial_state
from .progress import Bar

__all__ = ["latent_sites", "run_chains"]

_PIECES = 20            # program calls per fit (the progress bar's resolution)
_MIN_PIECE = 50         # iterations per call, at least


def latent_sites(law, pooling=None) -> dict:
    """The model's sampled sites, in the order of the position vector: site name -> prior.

    The law's parameters, sigma, then the group scales and offsets of a ``pooling``.
    """
    sites = {(p.name if p.scale is None else hat_name(p.name)): p.prior for p in law.params}
    sites["sigma"] = law.sigma_prior
    if pooling is not None:
        sites.update(pooling.priors())
    return sites


def padded_size(n: int) -> int:
    """The number of rows a data set of ``n`` runs is padded to: 16, 24, 32, 48, 64, 96, ... (<= 1.5 n).

    Runs past ``n`` repeat the first run and are masked out of the likelihood, so
    that backtests, leave-one-out refits and curves of similar length share one
    compiled program instead of compiling one each.
    """
    size = 16
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return size


def piece_size(total: int) -> int:
    """Iterations per program call for a chain of ``total`` iterations."""
    return max(_MIN_PIECE, math.ceil(total / _PIECES))


@lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """A hash of bayescale's own source: an exported program is only reused by the code that traced it."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _program_path(key: dict) -> Path | None:
    """Where the exported program for ``key`` is kept, or None if the cache is off."""
    from .jaxsetup import cache_dir, cache_enabled, host_fingerprint

    if not cache_enabled():
        return None

    text = json.dumps({**key, "code": _code_fingerprint(), "numpyro": metadata.version("numpyro")},
                      sort_keys=True, default=str)
    name = hashlib.sha256(text.encode()).hexdigest()[:32]
    return cache_dir() / "programs" / host_fingerprint() / f"{name}.jaxexport"


def _mesh(groups: int):
    """A one-axis mesh over the first ``groups`` local devices: one group of chains per device."""
    import jax
    from jax.sharding import Mesh

    return Mesh(np.array(jax.local_devices()[:groups]), ("chains",))


def _trace(law, noise: str, pooling, groups: int, piece: int, warmup: int, draws: int, target_accept: float,
           max_depth: int, dense: bool, arg_specs):
    """Trace the program: (seed, chain ids, start, states, inputs, refs, loss, mask) -> (states, (positions, stats))."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec
    from numpyro.infer.util import potential_energy

    from .model import make_model

    model = make_model(law, noise, pooling)
    names = tuple(latent_sites(law, pooling))

    def one_chain(seed, chain, state, start, inputs, refs, y, mask):
        def logp(q):
            # one split, not an index per site: the gradient is then one concatenation, not a pad per site
            parts = jax.numpy.split(q, len(names))
            return -potential_energy(model, (inputs, refs), {"loss": y, "mask": mask},
                                     {n: v[0] for n, v in zip(names, parts)})

        key = jax.random.fold_in(jax.random.PRNGKey(seed), chain)
        return advance(state, key, start, jax.value_and_grad(logp), iterations=piece, warmup=warmup, draws=draws,
                       target_accept=target_accept, max_depth=max_depth, dense=dense)

    def on_one_device(seed, chain_ids, start, states, inputs, refs, y, mask):
        # lax.map, not vmap: vmapped while-loops run in lockstep and turn every branch into a select
        states = jax.tree.map(lambda a: a[0], states)
        out = jax.lax.map(lambda a: one_chain(seed, a[0], a[1], start, inputs, refs, y, mask),
                          (chain_ids[0], states))
        return jax.tree.map(lambda a: a[None], out)

    mesh = _mesh(groups)
    whole, split = PartitionSpec(), PartitionSpec("chains")
    specs = (whole, split, whole, split, whole, whole, whole, whole)
    program = jax.jit(
        jax.shard_map(on_one_device, mesh=mesh, in_specs=specs, out_specs=split, check_vma=False),
        in_shardings=tuple(NamedSharding(mesh, s) for s in specs), out_shardings=NamedSharding(mesh, split))
    return jax.export.export(program)(*arg_specs)


@lru_cache(maxsize=32)
def _compiled(law, noise: str, pooling, groups: int, piece: int, warmup: int, draws: int, target_accept: float,
              max_depth: int, dense: bool, shapes: tuple):
    """The compiled program and the shardings of its arguments (from disk, or traced and saved)."""
    import jax

    arg_specs = jax.tree.unflatten(shapes[0], [jax.ShapeDtypeStruct(s, np.dtype(t)) for s, t in shapes[1]])
    key = {"law": law.text, "noise": noise, "pooling": None if pooling is None else pooling.as_dict(),
           "groups": groups, "piece": piece,
           "warmup": warmup, "draws": draws, "target_accept": target_accept, "max_depth": max_depth,
           "dense": dense, "args": str(shapes)}
    return cached_program(key, lambda: _trace(law, noise, pooling, groups, piece, warmup, draws, target_accept,
                                              max_depth, dense, arg_specs), _mesh(groups), arg_specs)


def cached_program(key: dict, trace, mesh, arg_specs):
    """The compiled program for ``key`` and the shardings of its arguments: its exported form from disk,
    or ``trace()`` (a ``jax.export.Exported``) saved there for the next process, compiled on ``mesh``.
    Loading skips the tracing (NumPyro's model, the sampler's Python), which costs seconds."""
    import jax

    path = _program_path(key)
    exported = _load_program(path) if path is not None else None
    if exported is not None:
        try:
            return _compile(exported, mesh, arg_specs)
        except Exception:       # deserialised but does not compile (a damaged entry): trace it again, replace it
            exported = None
    exported = trace()
    try:
        blob = exported.serialize()
    except ImportError:         # jax.export needs flatbuffers to serialise; without it, trace in every process
        path = None
    if path is not None:
        _save_program(path, blob)
        exported = jax.export.deserialize(blob)   # the same module a later process will compile
    return _compile(exported, mesh, arg_specs)


def _compile(exported, mesh, arg_specs):
    """Compile a (deserialised) program on ``mesh`` for arguments shaped like ``arg_specs``; returns it and
    the shardings of its arguments."""
    import jax

    from .errors import CacheWarning

    shardings = exported.in_shardings_jax(mesh)
    leaves, tree = jax.tree.flatten(arg_specs)
    placed = [jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s) for a, s in zip(leaves, shardings)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = jax.jit(exported.call).lower(*jax.tree.unflatten(tree, placed)).compile()
    cache_notes = []
    for w in caught:        # JAX's multi-line note on a cache entry it could not read or write: one line of ours
        if "persistent compilation cache" in str(w.message):
            cache_notes.append(str(w.message).splitlines()[0][:300])
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if cache_notes:
        warnings.warn(f"JAX's compiled-code cache failed ({cache_notes[0]}); the sampler was compiled "
                      f"afresh, the fit is unaffected", CacheWarning, stacklevel=4)
    return compiled, shardings


_MAGIC = b"bayescale-program-1\n"


def _load_program(path: Path):
    """The program saved at ``path``, or None if there is none or it is damaged (its SHA-256, stored
    in front of it, does not match), unreadable or from an incompatible jax: then it is traced again
    and the entry replaced."""
    import jax

    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(_MAGIC) + 65
    if data[:len(_MAGIC)] != _MAGIC or hashlib.sha256(data[head:]).hexdigest().encode() != data[len(_MAGIC):head - 1]:
        return None
    try:
        return jax.export.deserialize(bytearray(data[head:]))
    except Exception:
        return None


def _save_program(path: Path, blob) -> None:
    """Save ``blob`` with its checksum, atomically (a concurrent reader never sees half a file); a
    cache that cannot be written costs a re-trace next time, nothing else."""
    from .storage.atomic import write_atomically

    blob = bytes(blob)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, _MAGIC + hashlib.sha256(blob).hexdigest().encode() + b"\n" + blob)
    except OSError:
        pass


def constrained_draws(law, positions: np.ndarray, refs: dict, pooling=None) -> dict:
    """Unconstrained positions (..., sites) -> every parameter's natural value, sigma and the pooled sites."""
    k = len(law.params)
    out = natural_values(law, [positions[..., i] for i in range(k)], refs)
    out["sigma"] = law.sigma_prior.constrain(positions[..., k])
    if pooling is not None:
        sampled = {name: prior.constrain(positions[..., k + 1 + j]) for j, (name, prior) in
                   enumerate(pooling.priors().items())}
        out.update(pooling.reported(sampled))
    return out


def run_chains(law, noise: str, start: dict, inputs: dict, refs: dict, loss, *, chains: int, warmup: int,
               draws: int, seed: int, target_accept: float, max_tree_depth: int, dense_mass: bool,
               progress: bool, jitter=0.1, pooling=None):
    """Sample ``chains`` chains from ``start`` (constrained value per latent site).

    Each chain starts at ``start`` moved by Uniform(-jitter, jitter) in
    unconstrained coordinates (``jitter``: one half-width, or one per latent
    site by name, 0.1 for a site not named).  Returns (posterior draws by parameter, sampler
    statistics, chain method, timings), numpy arrays of shape (chains, draws);
    timings: ``compile_s`` (getting the compiled program: tracing or loading
    it, compiling or loading its code) and ``sampling_s``.
    """
    import jax

    from .jaxsetup import warn_if_no_cache

    warn_if_no_cache()
    t0 = time.perf_counter()
    # chains in groups: one group per host device, in parallel; a group's chains one after another
    groups = max(k for k in range(1, min(chains, jax.local_device_count()) + 1) if chains % k == 0)
    per_group = chains // groups
    method = f"parallel over {groups} devices" + ("" if groups == chains else f", {per_group} chains each in turn")
    sites = latent_sites(law, pooling)
    centre = np.array([float(prior.unconstrain(start[name])) for name, prior in sites.items()])
    rng = np.random.default_rng([seed, 1])
    half = np.array([float(jitter.get(name, 0.1)) if isinstance(jitter, dict) else float(jitter) for name in sites])
    q0 = (centre + rng.uniform(-1.0, 1.0, size=(chains, centre.size)) * half).astype(np.float32)
    states = jax.tree.map(lambda *a: np.stack(a).reshape((groups, per_group) + np.shape(a[0])),
                          *[initial_state(q) for q in q0])
    total = warmup + draws
    piece = piece_size(total)
    f32 = np.float32
    n = len(loss)
    rows = np.arange(padded_size(n))
    rows[n:] = 0                                # the padding repeats run 0, masked out
    args = [np.uint32(seed), np.arange(chains, dtype=np.int32).reshape(groups, per_group), np.int32(0), states,
            {k: np.asarray(v, f32)[rows] for k, v in inputs.items()}, {k: np.asarray(v, f32) for k, v in refs.items()},
            np.asarray(loss, f32)[rows], np.arange(rows.size) < n]
    leaves, tree = jax.tree.flatten(args)
    shapes = (tree, tuple((np.shape(a), np.asarray(a).dtype.str) for a in leaves))
    bar = Bar(f"{law.name}, NUTS {chains} chains", total) if progress else None
    if bar is not None:                         # seconds on a first fit, a fraction of one from the cache
        bar.note("compiling the sampler (once per law and data size)")
    program, shardings = _compiled(law, noise, None if pooling is None else pooling.for_program(), groups, piece, warmup, draws, float(target_accept),
                                   max_tree_depth, bool(dense_mass), shapes)
    t1 = time.perf_counter()

    leaves = [jax.device_put(a, s) for a, s in zip(leaves, shardings)]
    seed_, ids, _, states, inputs_, refs_, y, mask = jax.tree.unflatten(tree, leaves)
    start_sharding = shardings[2]
    pieces = []
    for begin in range(0, total, piece):       # dispatched asynchronously; waited for below
        states, (positions, stats) = program(seed_, ids, jax.device_put(np.int32(begin), start_sharding), states,
                                             inputs_, refs_, y, mask)
        pieces.append((positions, stats))
    out_positions, out_stats = [], []
    for i, (positions, stats) in enumerate(pieces):
        out_positions.append(np.asarray(positions))
        out_stats.append({k: np.asarray(v) for k, v in stats.items()})
        if bar is not None:
            bar.update((i + 1) * piece)
    t2 = time.perf_counter()

    def draws_of(parts):        # (groups, per_group, piece, ...) pieces -> (chains, draws, ...)
        whole = np.concatenate(parts, axis=2)[:, :, warmup:total]
        return whole.reshape((chains,) + whole.shape[2:])

    positions = draws_of(out_positions).astype(float)
    stats = {k: draws_of([s[k] for s in out_stats]) for k in out_stats[0]}
    timings = {"compile_s": t1 - t0, "sampling_s": t2 - t1}
    return constrained_draws(law, positions, refs, pooling), stats, method, timings
