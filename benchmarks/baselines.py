"""Baselines that the bayescale fit is benchmarked against.

Both baselines fit the Chinchilla law ``L(N, D) = E + A / N**alpha + B / D**beta``
to the 240 non-outlier Chinchilla runs reconstructed by Epoch AI
(``../shared/datasets/chinchilla_epoch/chinchilla_epoch_tidy.csv``; see the
``SOURCE.md`` next to it). Each mode is meant to be run as its own process so that
whole-process wall time (imports, compilation, fitting) can be measured, e.g.
``/usr/bin/time -v python benchmarks/baselines.py epoch``.

``epoch`` -- the frequentist reference (Hoffmann et al. 2022, Approach 3, as
    replicated by Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt").
    Parameterise ``log L = logsumexp(e, a - alpha log N, b - beta log D)``
    (E = exp e, A = exp a, B = exp b) and minimise the summed Huber loss (delta = 1e-3)
    of the log residuals with L-BFGS-B (analytic numpy gradient), started from every
    point of Hoffmann's initialisation grid; keep the best. Uncertainty comes from
    4,000 non-parametric bootstrap refits (resample the 240 rows with replacement),
    each started from the full-data optimum. This is what people currently do to get
    point estimates *and* error bars for a scaling law, so it is the accuracy
    reference (the point estimate must match Epoch's) and the speed bar that a
    Bayesian fit has to be competitive with.

    The grid is Epoch's: ``np.arange`` with an exclusive upper end, i.e.
    alpha, beta in {0, 0.5, 1, 1.5, 2}, e in {-1, -0.5, 0, 0.5, 1},
    a, b in {0, 5, 10, 15, 20, 25}: 5 * 5 * 5 * 6 * 6 = 4,500 starts
    (taking the end points inclusively would give 6**3 * 7**2 = 10,584).
    ``--grid small`` uses 3 values per parameter (3**5 = 243 starts).

``naive`` -- what a first-time NumPyro user writes: the law in natural parameters,
    flat priors, a Normal likelihood on the raw loss, and every NUTS/MCMC default
    (``NUTS(model)``, ``MCMC(num_warmup=1000, num_samples=1000, num_chains=4)``;
    on a single CPU device the chains run sequentially, default ``init_to_uniform``).
    Priors::

        E ~ Uniform(0, 10)
        A ~ Uniform(0, 1e4),   B ~ Uniform(0, 1e4)
        alpha ~ Uniform(0, 2), beta ~ Uniform(0, 2)
        sigma ~ HalfNormal(1)
        loss ~ Normal(E + A / N**alpha + B / D**beta, sigma)

    It is the Bayesian baseline: bayescale's reparameterised, robust model should
    beat it on wall time, gradient evaluations and diagnostics.

Each mode writes progress to stderr and exactly one JSON object as the last line
of stdout.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()  # in-process clock; starts before numpy/jax imports

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

SHARED = Path(os.environ.get("BAYESCALE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA_PATH = SHARED / "datasets" / "chinchilla_epoch" / "chinchilla_epoch_tidy.csv"
PARAM_NAMES = ("A", "B", "E", "alpha", "beta")
HUBER_DELTA = 1e-3


def log(msg: str) -> None:
    """Progress line on stderr, stamped with seconds since process start."""
    print(f"[{time.perf_counter() - T_START:7.2f}s] {msg}", file=sys.stderr, flush=True)


def load_data(path: Path = DATA_PATH) -> dict[str, np.ndarray]:
    """Read the tidy CSV in place and keep the rows with epoch_outlier == 0."""
    cols: dict[str, list[float]] = {"N": [], "D": [], "loss": []}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if int(row["epoch_outlier"]) != 0:
                continue
            for k in cols:
                cols[k].append(float(row[k]))
    return {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}


# --------------------------------------------------------------------------
# Epoch-style Huber fit + bootstrap
# --------------------------------------------------------------------------


def huber_objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray,
                    log_y: np.ndarray, delta: float = HUBER_DELTA) -> tuple[float, np.ndarray]:
    """Summed Huber loss of log residuals and its gradient.

    theta = (a, b, e, alpha, beta); prediction log L = logsumexp(e, a - alpha log N, b - beta log D).
    """
    a, b, e, alpha, beta = theta
    t_a = a - alpha * log_n
    t_b = b - beta * log_d
    m = np.maximum(np.maximum(t_a, t_b), e)
    w_a = np.exp(t_a - m)
    w_b = np.exp(t_b - m)
    w_e = np.exp(e - m)
    s = w_a + w_b + w_e
    r = m + np.log(s) - log_y
    abs_r = np.abs(r)
    quad = abs_r <= delta
    value = np.sum(np.where(quad, 0.5 * r * r, delta * (abs_r - 0.5 * delta)))
    psi = np.clip(r, -delta, delta) / s  # dHuber/dr times 1/s (softmax normaliser)
    g_a = psi @ w_a
    g_b = psi @ w_b
    grad = np.array([g_a, g_b, psi @ w_e, -(psi * w_a) @ log_n, -(psi * w_b) @ log_d])
    return float(value), grad


def hoffmann_grid(size: str = "full") -> np.ndarray:
    """Initialisations (a, b, e, alpha, beta) as in Hoffmann et al. / Epoch.

    full: np.arange grids with exclusive ends -> 6 * 6 * 5 * 5 * 5 = 4,500 starts.
    small: 3 values per parameter -> 243 starts.
    """
    if size == "full":
        ab = np.arange(0, 30, 5)
        e = np.arange(-1, 1.5, 0.5)
        exps = np.arange(0, 2.5, 0.5)
    elif size == "small":
        ab = np.array([0.0, 10.0, 20.0])
        e = np.array([-1.0, 0.0, 1.0])
        exps = np.array([0.0, 1.0, 2.0])
    else:
        raise ValueError(f"unknown grid size {size!r}")
    mesh = np.meshgrid(ab, ab, e, exps, exps, indexing="ij")
    return np.stack([g.ravel() for g in mesh], axis=1).astype(np.float64)


def lbfgs_fit(theta0: np.ndarray, log_n, log_d, log_y):
    """One L-BFGS-B run; returns scipy's OptimizeResult."""
    from scipy.optimize import minimize

    return minimize(huber_objective, theta0, args=(log_n, log_d, log_y), jac=True,
                    method="L-BFGS-B", options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-12})


def grid_fit(grid: np.ndarray, log_n, log_d, log_y) -> np.ndarray:
    """Run L-BFGS-B from every grid point and return the best parameters."""
    best_val, best_theta = np.inf, None
    for i, theta0 in enumerate(grid):
        res = lbfgs_fit(theta0, log_n, log_d, log_y)
        if np.isfinite(res.fun) and res.fun < best_val:
            best_val, best_theta = res.fun, res.x
        if (i + 1) % 500 == 0:
            log(f"grid: {i + 1}/{len(grid)} starts, best objective {best_val:.6e}")
    return best_theta


def bootstrap(theta_hat: np.ndarray, log_n, log_d, log_y, n_boot: int, seed: int) -> np.ndarray:
    """Refit on n_boot resamples (rows with replacement), each from theta_hat."""
    rng = np.random.default_rng(seed)
    n = len(log_y)
    out = np.empty((n_boot, theta_hat.size))
    for k in range(n_boot):
        idx = rng.integers(0, n, size=n)
        out[k] = lbfgs_fit(theta_hat, log_n[idx], log_d[idx], log_y[idx]).x
        if (k + 1) % 500 == 0:
            log(f"bootstrap: {k + 1}/{n_boot} refits")
    return out


def to_natural(theta: np.ndarray) -> np.ndarray:
    """(a, b, e, alpha, beta) -> (A, B, E, alpha, beta); works row-wise."""
    theta = np.atleast_2d(theta)
    return np.column_stack([np.exp(theta[:, 0]), np.exp(theta[:, 1]), np.exp(theta[:, 2]),
                            theta[:, 3], theta[:, 4]])


def run_epoch(grid_size: str, n_boot: int, seed: int) -> dict:
    data = load_data()
    log_n, log_d, log_y = np.log(data["N"]), np.log(data["D"]), np.log(data["loss"])
    grid = hoffmann_grid(grid_size)
    log(f"epoch: {len(log_y)} points, {len(grid)} grid starts, {n_boot} bootstrap refits")

    t0 = time.perf_counter()
    theta_hat = grid_fit(grid, log_n, log_d, log_y)
    grid_s = time.perf_counter() - t0
    est = to_natural(theta_hat)[0]
    log(f"grid done in {grid_s:.1f}s: " + ", ".join(f"{k}={v:.4g}" for k, v in zip(PARAM_NAMES, est)))

    t0 = time.perf_counter()
    boot = to_natural(bootstrap(theta_hat, log_n, log_d, log_y, n_boot, seed))
    boot_s = time.perf_counter() - t0
    log(f"bootstrap done in {boot_s:.1f}s")

    se = boot.std(axis=0, ddof=1)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    return {
        "baseline": "epoch",
        "wall_s": time.perf_counter() - T_START,
        "grid_s": grid_s,
        "boot_s": boot_s,
        "n_starts": int(len(grid)),
        "n_boot": n_boot,
        "n_points": int(len(log_y)),
        "estimate": dict(zip(PARAM_NAMES, est.tolist())),
        "se": dict(zip(PARAM_NAMES, se.tolist())),
        "ci95": {k: [float(l), float(h)] for k, l, h in zip(PARAM_NAMES, lo, hi)},
    }


# --------------------------------------------------------------------------
# Naive NumPyro NUTS
# --------------------------------------------------------------------------


def naive_model(N, D, loss=None):
    """Chinchilla law in natural parameters, flat priors, Normal noise on raw loss."""
    import numpyro
    import numpyro.distributions as dist

    E = numpyro.sample("E", dist.Uniform(0.0, 10.0))
    A = numpyro.sample("A", dist.Uniform(0.0, 1e4))
    B = numpyro.sample("B", dist.Uniform(0.0, 1e4))
    alpha = numpyro.sample("alpha", dist.Uniform(0.0, 2.0))
    beta = numpyro.sample("beta", dist.Uniform(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    mu = E + A / N**alpha + B / D**beta
    numpyro.sample("loss", dist.Normal(mu, sigma), obs=loss)


def rank_normalise(x: np.ndarray) -> np.ndarray:
    """Rank-normalise (chains, draws) across all draws (Vehtari et al. 2021)."""
    from scipy.stats import norm, rankdata

    r = rankdata(x, method="average").reshape(x.shape)
    return norm.ppf((r - 0.375) / (x.size + 0.25))


def split_chains(x: np.ndarray) -> np.ndarray:
    """(chains, draws) -> (2 * chains, draws // 2)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half:]], axis=0)


def convergence(samples: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per-parameter ESS_bulk, rank-normalised R-hat, and numpyro's plain ESS / split R-hat.

    ESS_bulk = numpyro's effective_sample_size on split, rank-normalised chains (same
    definition as ArviZ's ess_bulk); R-hat = max of rank-normalised split R-hat of the
    draws and of their folded version (ArviZ's default rhat).
    """
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    out = {}
    for name, x in samples.items():
        x = np.asarray(x, dtype=np.float64)
        xs = split_chains(x)
        z_bulk = rank_normalise(xs)
        z_fold = rank_normalise(np.abs(xs - np.median(xs)))
        out[name] = {
            "ess_bulk": float(effective_sample_size(z_bulk)),
            "ess_numpyro": float(effective_sample_size(x)),
            "rhat": float(max(split_gelman_rubin(z_bulk), split_gelman_rubin(z_fold))),
            "rhat_numpyro": float(split_gelman_rubin(x)),
        }
    return out


def run_naive(seed: int) -> dict:
    import jax
    from numpyro.infer import MCMC, NUTS

    data = load_data()
    log(f"naive: {len(data['loss'])} points, jax devices: {jax.devices()}")
    mcmc = MCMC(NUTS(naive_model), num_warmup=1000, num_samples=1000, num_chains=4)
    log(f"chain_method={mcmc.chain_method}")

    fields = ("num_steps", "diverging")
    t0 = time.perf_counter()
    # warmup() then run() is numpyro's documented way to also collect warmup
    # extra fields; it gives the same draws as a single mcmc.run() with this key
    # (checked) and no measurable extra wall time.
    mcmc.warmup(jax.random.PRNGKey(seed), data["N"], data["D"], data["loss"],
                extra_fields=fields, collect_warmup=True)
    warm = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    warmup_s = time.perf_counter() - t0
    log(f"warmup done in {warmup_s:.1f}s")

    t0 = time.perf_counter()
    mcmc.run(mcmc.post_warmup_state.rng_key, data["N"], data["D"], data["loss"],
             extra_fields=fields)
    samp = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    sample_s = time.perf_counter() - t0
    log(f"sampling done in {sample_s:.1f}s")

    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    diag = convergence(samples)
    grads_warm = int(warm["num_steps"].sum())
    grads_samp = int(samp["num_steps"].sum())
    names = list(PARAM_NAMES) + ["sigma"]
    return {
        "baseline": "naive",
        "wall_s": time.perf_counter() - T_START,
        "warmup_s": warmup_s,
        "sample_s": sample_s,
        "chain_method": mcmc.chain_method,
        "n_points": int(len(data["loss"])),
        "grad_evals": grads_warm + grads_samp,
        "grad_evals_warmup": grads_warm,
        "grad_evals_sampling": grads_samp,
        "divergences": int(samp["diverging"].sum()),
        "divergences_warmup": int(warm["diverging"].sum()),
        "min_ess_bulk": min(d["ess_bulk"] for d in diag.values()),
        "max_rhat": max(d["rhat"] for d in diag.values()),
        "median": {k: float(np.median(samples[k])) for k in names},
        "diagnostics": diag,
    }


def run_numpyro(seed: int) -> dict:
    """bayescale's own model and start point, sampled by NumPyro's NUTS instead of bayescale.nuts.

    The same law card, noise model, centred parameters, priors, init (the quick robust
    optimum), dense mass matrix, 1000 + 1000 iterations and 4 chains in parallel over host
    devices: what bayescale did before it had its own kernel.  The difference to
    ``bayescale fit`` is the sampler's program alone.
    """
    import jax
    import jax.numpy as jnp
    import pandas as pd
    from numpyro.infer import MCMC, NUTS, init_to_value

    import bayescale
    from bayescale.init import quick_optimum
    from bayescale.model import make_model, reference_points
    from bayescale.runs import prepare_runs

    frame = pd.read_csv(DATA_PATH)
    frame = frame[frame["epoch_outlier"] == 0]
    law = bayescale.load_law("chinchilla")
    table = prepare_runs(frame, law, noise=law.noise)
    inputs, loss = table.input_arrays(), table.response_array()
    refs = reference_points(law, inputs, loss)
    start = quick_optimum(law, law.noise, inputs, loss, refs, seed=seed)
    start.pop("_natural")
    start.pop("_scale")
    log(f"numpyro: {len(loss)} points, {jax.local_device_count()} devices")
    kernel = NUTS(make_model(law, law.noise), dense_mass=True, init_strategy=init_to_value(values=start))
    mcmc = MCMC(kernel, num_warmup=1000, num_samples=1000, num_chains=4, chain_method="parallel",
                progress_bar=False, jit_model_args=True)
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), {k: jnp.asarray(v, jnp.float32) for k, v in inputs.items()},
             {k: jnp.asarray(v, jnp.float32) for k, v in refs.items()}, loss=jnp.asarray(loss, jnp.float32),
             extra_fields=("num_steps", "diverging"))
    mcmc_s = time.perf_counter() - t0
    samples = mcmc.get_samples(group_by_chain=True)
    names = list(law.param_names) + ["sigma"]
    diag = convergence({k: np.asarray(samples[k]) for k in names})
    extra = mcmc.get_extra_fields(group_by_chain=True)
    return {
        "baseline": "numpyro",
        "wall_s": time.perf_counter() - T_START,
        "mcmc_s": mcmc_s,
        "gradients_sampling": int(np.asarray(extra["num_steps"]).sum()),
        "divergences": int(np.asarray(extra["diverging"]).sum()),
        "min_ess_bulk": min(d["ess_bulk"] for d in diag.values()),
        "max_rhat": max(d["rhat"] for d in diag.values()),
        "median": {k: float(np.median(samples[k])) for k in names},
    }


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p_epoch = sub.add_parser("epoch", help="Huber + L-BFGS grid fit and bootstrap")
    p_epoch.add_argument("--grid", choices=("full", "small"), default="full")
    p_epoch.add_argument("--boot", type=int, default=4000)
    p_epoch.add_argument("--seed", type=int, default=0)
    p_naive = sub.add_parser("naive", help="default NumPyro NUTS, natural parameters")
    p_naive.add_argument("--seed", type=int, default=0)
    p_numpyro = sub.add_parser("numpyro", help="bayescale's model sampled by NumPyro's NUTS")
    p_numpyro.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.mode == "epoch":
        result = run_epoch(args.grid, args.boot, args.seed)
    elif args.mode == "numpyro":
        result = run_numpyro(args.seed)
    else:
        result = run_naive(args.seed)
    log(f"total {result['wall_s']:.1f}s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
