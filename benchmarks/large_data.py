"""Large data: a default Chinchilla fit of 10^3, 10^4 and 10^5 simulated runs, time and memory.

    python benchmarks/large_data.py                 # 1e3, 1e4, 1e5 runs (~15-30 min on 2 cores)
    python benchmarks/large_data.py 1000 10000      # a subset

Each size is fitted in its own process (``bayescale.fit`` at the defaults: 4
chains x 1000 warm-up + 1000 draws), so that its peak memory (``ru_maxrss``)
is its own; the fit is saved, loaded back and its pointwise log-likelihood
computed once on demand.  The runs are simulated from the Chinchilla law at
Epoch AI's published parameters (:data:`bayescale.data.make_pilot.TRUTH`)
with Student-t(4) noise of scale 0.01 on log loss, N and D log-uniform over
1e7-1e10 and 1e9-1e12.

Printed per size: wall and CPU time of the fit and the wall time of its
parts (start point, compile, sampling, post-processing), leapfrog steps per
draw, peak resident memory, the saved file's size (and what the float64
pointwise log-likelihood alone would have added), save and load times, the
on-demand log-likelihood's time, and the diagnostics verdict.

The gradient cost per run is measured apart from the fit, because on a
shared machine the sampler's wall time per gradient mostly measures the
other processes: the model's log density and gradient (the sampler's own
``value_and_grad`` of NumPyro's potential energy, on the data padded as the
sampler pads them, passed as arguments) evaluated 200 times in one compiled
``lax.while_loop``, as the sampler's inner loop does; the best of 5 repeats,
in wall and in process CPU time, per run, and its ratio to the smallest
size's measured in the same run (the acceptance target: within 2x).  The
sampler's wall time per draw gradient (``sampling_s`` over the draws'
leapfrog steps, which leaves the warm-up's steps out) is printed as well.
Last, one JSON object with every figure.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (1_000, 10_000, 100_000)


def simulate(n: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    from bayescale.data.make_pilot import NOISE_DF, NOISE_SCALE, TRUTH

    rng = np.random.default_rng([seed, n])
    N = 10 ** rng.uniform(7, 10, n)
    D = 10 ** rng.uniform(9, 12, n)
    t = TRUTH
    mean = t["E"] + t["A"] / N ** t["alpha"] + t["B"] / D ** t["beta"]
    loss = mean * np.exp(NOISE_SCALE * rng.standard_t(NOISE_DF, n))
    return pd.DataFrame({"N": N, "D": D, "loss": loss})


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def gradient_cost(runs, evaluations: int = 200, repeats: int = 5) -> tuple[float, float]:
    """(wall, CPU) seconds per gradient of the Chinchilla model's log density on ``runs``: the best of
    ``repeats`` loops of ``evaluations`` in one compiled while loop (see the module docstring)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer.util import potential_energy

    import bayescale
    from bayescale.model import make_model, reference_points
    from bayescale.sampler import latent_sites, padded_size

    law = bayescale.load_law("chinchilla")
    model = make_model(law, "student_t_log")
    names = tuple(latent_sites(law))
    inputs = {k: runs[k].to_numpy() for k in law.input_names}
    loss = runs["loss"].to_numpy()
    refs = reference_points(law, inputs, loss)
    n = len(loss)
    rows = np.arange(padded_size(n))
    rows[n:] = 0
    args = ({k: jnp.asarray(v[rows], jnp.float32) for k, v in inputs.items()},
            {k: jnp.asarray(v, jnp.float32) for k, v in refs.items()},
            jnp.asarray(loss[rows], jnp.float32), jnp.arange(rows.size) < n)

    def loop(q, x, r, y, mask):
        def logp(q):
            parts = jnp.split(q, len(names))
            return -potential_energy(model, (x, r), {"loss": y, "mask": mask},
                                     {k: v[0] for k, v in zip(names, parts)})

        def body(c):
            value, grad = jax.value_and_grad(logp)(c[0])
            return c[0] + 1e-7 * grad, c[1] + value, c[2] + 1

        return jax.lax.while_loop(lambda c: c[2] < evaluations, body, (q, jnp.float32(0.0), 0))

    program = jax.jit(loop)
    q = jnp.asarray([0.6, 0.2, 0.3, -0.5, -0.5, -4.0], jnp.float32)
    program(q, *args)[1].block_until_ready()
    wall = cpu = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), _cpu()
        program(q, *args)[1].block_until_ready()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, _cpu() - c0)
    return wall / evaluations, cpu / evaluations


def child(n: int, folder: Path) -> dict:
    """Fit, save, load and score one size in this process; returns its figures."""
    import warnings

    import bayescale
    from bayescale.storage.fitfile import STORED_LOG_LIKELIHOOD_MAX

    runs = simulate(n)
    t0, c0 = time.perf_counter(), _cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
        fit = bayescale.fit(runs, law="chinchilla", progress=False)
    fit_s, fit_cpu_s = time.perf_counter() - t0, _cpu() - c0
    t = fit.timings
    path = folder / f"fit{n}.nc"
    t0 = time.perf_counter()
    fit.save(path, force=True)
    save_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loaded = bayescale.load_fit(path)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ll = loaded.log_likelihood
    ll_s = time.perf_counter() - t0
    grad_wall, grad_cpu = gradient_cost(runs)
    d = fit.diagnostics.as_dict()
    draws = fit.settings["chains"] * fit.settings["draws"]
    return {
        "runs": n, "fit_s": fit_s, "fit_cpu_s": fit_cpu_s, "init_s": t["init_s"], "compile_s": t["compile_s"],
        "sampling_s": t["sampling_s"], "postprocess_s": t["postprocess_s"],
        "gradients_sampling": t["gradients_sampling"],
        "steps_per_draw": t["gradients_sampling"] / draws,
        "sampler_ns_per_draw_gradient_per_run": 1e9 * t["sampling_s"] / t["gradients_sampling"] / n,
        "gradient_us": 1e6 * grad_wall, "gradient_cpu_us": 1e6 * grad_cpu,
        "ns_per_gradient_per_run": 1e9 * grad_wall / n, "cpu_ns_per_gradient_per_run": 1e9 * grad_cpu / n,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "file_mb": path.stat().st_size / 1e6, "ll_float64_mb": draws * n * 8 / 1e6,
        "ll_stored": draws * n <= STORED_LOG_LIKELIHOOD_MAX,
        "save_s": save_s, "load_s": load_s, "log_likelihood_s": ll_s, "log_likelihood_dtype": str(ll.dtype),
        "passed": d["passed"], "r_hat_max": d["r_hat_max"], "ess_bulk_min": d["ess_bulk_min"],
        "ess_tail_min": d["ess_tail_min"], "divergences": d["divergences"],
    }


def main(sizes) -> dict:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ}
        env.setdefault("BAYESCALE_CACHE_DIR", str(Path(tmp) / "cache"))
        for n in sizes:
            proc = subprocess.run([sys.executable, __file__, "--child", str(n), tmp], capture_output=True,
                                  text=True, env=env)
            if proc.returncode != 0:
                raise RuntimeError(f"the {n}-run fit failed:\n{proc.stderr[-3000:]}")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(f"{n:>7} runs: fit {r['fit_s']:7.1f} s wall, {r['fit_cpu_s']:.1f} s CPU (start {r['init_s']:.1f}, "
                  f"compile {r['compile_s']:.1f}, sampling {r['sampling_s']:.1f}, post {r['postprocess_s']:.2f}); "
                  f"{r['steps_per_draw']:.1f} steps/draw; gradient {r['gradient_us']:.1f} us = "
                  f"{r['ns_per_gradient_per_run']:.2f} ns per run ({r['cpu_ns_per_gradient_per_run']:.2f} ns CPU); "
                  f"sampler {r['sampler_ns_per_draw_gradient_per_run']:.1f} ns per draw gradient per run; peak RSS "
                  f"{r['peak_rss_gb']:.2f} GB; file {r['file_mb']:.1f} MB (log-likelihood "
                  f"{'stored, float32' if r['ll_stored'] else 'on demand'}; float64 it would be "
                  f"{r['ll_float64_mb']:.0f} MB); save {r['save_s']:.2f} s, load {r['load_s']:.2f} s, "
                  f"log-likelihood on demand {r['log_likelihood_s']:.1f} s; diagnostics "
                  f"{'PASS' if r['passed'] else 'FAIL'} (R-hat {r['r_hat_max']:.4f}, ESS bulk "
                  f"{r['ess_bulk_min']:.0f}, tail {r['ess_tail_min']:.0f})", flush=True)
    base = results[0]
    for r in results:
        r["gradient_cost_ratio"] = r["ns_per_gradient_per_run"] / base["ns_per_gradient_per_run"]
        r["gradient_cpu_cost_ratio"] = r["cpu_ns_per_gradient_per_run"] / base["cpu_ns_per_gradient_per_run"]
    print("gradient cost per run relative to the {}-run fit's (wall; CPU): ".format(base["runs"])
          + ", ".join(f"{r['runs']}: {r['gradient_cost_ratio']:.2f}x; {r['gradient_cpu_cost_ratio']:.2f}x"
                      for r in results))
    summary = {"large_data": results}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]), Path(sys.argv[3]))))
    else:
        main([int(float(a)) for a in sys.argv[1:]] or SIZES)
