"""Run :mod:`bayescale.nuts` on a law's NumPyro model, several chains at once.

The NumPyro model defines the density: ``numpyro.infer.util.potential_energy``
gives the log joint in unconstrained coordinates (Jacobians included).  Start
points go in and draws come out through the same bijections in numpy
(:meth:`bayescale.priors.Prior.constrain`), so the compiled program holds the
model's gradient once and nothing else of the model.  The program takes the
data as arguments: it is built once per (law, noise model, data shape,
settings) in a process (a small cache here) and found in JAX's persistent
compilation cache by later processes.  Chains run in parallel over host
devices (``pmap``); with more chains than devices, each device runs its share
of the chains one after another (``lax.map``; ``vmap`` would run their
trajectories in lockstep and evaluate every branch of the sampler).
"""

from __future__ import annotations

import sys
import threading
from functools import lru_cache

import numpy as np

from .model import hat_name, natural_values
from .nuts import sample_chain

__all__ = ["latent_sites", "run_chains"]


def latent_sites(law) -> dict:
    """The model's sampled sites, in the order of the position vector: site name -> prior."""
    sites = {(p.name if p.scale is None else hat_name(p.name)): p.prior for p in law.params}
    sites["sigma"] = law.sigma_prior
    return sites


class _Progress:
    """A one-line progress bar on stderr, fed by every chain's host callbacks."""

    def __init__(self, chains: int, total: int):
        self.chains, self.total = chains, total
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.done = [0] * self.chains

    def __call__(self, iteration, chain):
        with self.lock:
            self.done[int(chain)] = int(iteration)
            least = min(self.done)
            bar = "#" * int(30 * least / self.total)
            sys.stderr.write(f"\rNUTS, {self.chains} chains [{bar:<30}] {least}/{self.total}")
            if least >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


@lru_cache(maxsize=32)
def _program(law, noise: str, chains: int, warmup: int, draws: int,
             target_accept: float, max_depth: int, dense: bool, progress: bool):
    import jax
    from numpyro.infer.util import potential_energy

    from .model import make_model

    model = make_model(law, noise)
    names = tuple(latent_sites(law))
    bar = _Progress(chains, warmup + draws) if progress else None

    def one_chain(seed, chain, q0, inputs, refs, y):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), chain)

        def logp(q):
            # one split, not an index per site: the gradient is then one concatenation, not a pad per site
            parts = jax.numpy.split(q, len(names))
            return -potential_energy(model, (inputs, refs), {"loss": y}, {n: v[0] for n, v in zip(names, parts)})

        report = None
        if bar is not None:
            def report(i):
                jax.debug.callback(bar, i, chain)
        return sample_chain(key, q0, jax.value_and_grad(logp), warmup=warmup, draws=draws,
                            target_accept=target_accept, max_depth=max_depth, dense=dense, progress=report)

    def chains_of_one_device(seed, chain_ids, q0s, inputs, refs, y):
        # lax.map, not vmap: vmapped while-loops run in lockstep and turn every branch into a select
        return jax.lax.map(lambda a: one_chain(seed, *a, inputs, refs, y), (chain_ids, q0s))

    return jax.pmap(chains_of_one_device, in_axes=(None, 0, 0, None, None, None)), bar


def constrained_draws(law, positions: np.ndarray, refs: dict) -> dict:
    """Unconstrained positions (..., sites) -> every parameter's natural value and sigma."""
    params = [positions[..., i] for i in range(len(law.params))]
    return natural_values(law, params, refs) | {"sigma": law.sigma_prior.constrain(positions[..., -1])}


def run_chains(law, noise: str, start: dict, inputs: dict, refs: dict, loss, *, chains: int, warmup: int,
               draws: int, seed: int, target_accept: float, max_tree_depth: int, dense_mass: bool,
               progress: bool, jitter: float = 0.1):
    """Sample ``chains`` chains from ``start`` (constrained value per latent site).

    Each chain starts at ``start`` moved by Uniform(-jitter, jitter) in
    unconstrained coordinates.  Returns (posterior draws by parameter, sampler
    statistics, chain method), numpy arrays of shape (chains, draws).
    """
    import jax

    # chains in groups: one group per host device, in parallel; a group's chains one after another
    groups = max(k for k in range(1, min(chains, jax.local_device_count()) + 1) if chains % k == 0)
    method = f"parallel over {groups} devices" + ("" if groups == chains else f", {chains // groups} chains each in turn")
    program, bar = _program(law, noise, chains, warmup, draws, float(target_accept),
                            max_tree_depth, bool(dense_mass), bool(progress))
    if bar is not None:
        bar.reset()
    sites = latent_sites(law)
    centre = np.array([float(prior.unconstrain(start[name])) for name, prior in sites.items()])
    rng = np.random.default_rng([seed, 1])
    q0 = centre + rng.uniform(-jitter, jitter, size=(chains, centre.size))
    # numpy arguments only: an eager jax operation here would compile a small program of its own
    f32 = np.float32
    per_group = (groups, chains // groups)
    positions, stats, _, _ = program(np.uint32(seed), np.arange(chains, dtype=np.int32).reshape(per_group),
                                     q0.astype(f32).reshape(per_group + (-1,)),
                                     {k: np.asarray(v, f32) for k, v in inputs.items()},
                                     {k: np.asarray(v, f32) for k, v in refs.items()},
                                     np.asarray(loss, f32))
    positions = np.asarray(positions, float).reshape((chains,) + positions.shape[2:])
    stats = {k: np.asarray(v).reshape((chains,) + v.shape[2:]) for k, v in stats.items()}
    return constrained_draws(law, positions, refs), stats, method
