"""Many fits in one call: bayescale.fit_many (lockstep HMC) against a Python loop of bayescale.fit (NUTS).

Prints, side by side in one run (every ratio against a baseline measured in the same run):

1. NUTS lockstep: the Revisiting-NSL curves (language .dedup + vision files, ``Training == 1``, 92 curves,
   ``power_law_constant``) fitted one by one with ``fit`` (NUTS); from every draw's leapfrog count, the
   useful fraction of the steps if the chains ran as vectorised lanes in lockstep, for blocks of 4 (one
   curve's chains), 16, 64 and 256 lanes, in key order and sorted by the curve's mean tree size
   ("grouping by expected depth");
2. the same 92 curves in ONE ``fit_many`` call: per-curve time, gate pass rate (and the loop's);
3. 1, 10, 100 and 1,000 simulated ``power_law_constant`` problems (10-30 runs each), each count in a fresh
   process: whole-process wall time per fit, and peak memory; the 1,000 twice (the first process compiles
   the batch's programs, the second loads them from the program cache, as the loop's warm fits do);
4. the 1,000 problems against a Python loop of ``fit`` over the same problems: the loop is timed on a
   subset (``--loop-subset``, default 40) and scaled to 1,000 as (compile time of its sampler programs,
   paid once per padded size) + 1,000 x (mean warm per-fit time); the speed-up per problem is that
   scaled loop time over the batched whole-process time (cached programs; the first process's beside it);
5. the 1,000 problems on a Dask ``LocalCluster`` of 2 worker processes against the in-process batch
   (skipped when dask.distributed is not installed).

    python benchmarks/batch.py                 # everything (tens of minutes on 2 cores)
    python benchmarks/batch.py --quick         # 30 problems, 4 Revisiting curves: a smoke run
    python benchmarks/batch.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
GROUP = ["Domain", "Task", "Model"]
MAPPING = {"x": "Seen Examples", "loss": "Loss"}
SETTINGS = dict(chains=4, warmup=1000, draws=1000)


def simulated(n_problems: int, seed: int = 0) -> pd.DataFrame:
    """``n_problems`` power-law-plus-constant curves of 10-30 runs each, as one table with a ``curve`` column."""
    rng = np.random.default_rng(seed)
    parts = []
    for g in range(n_problems):
        n = int(rng.integers(10, 31))
        x = np.geomspace(1e6, 1e9, n) * np.exp(rng.normal(0, 0.05, n))
        e, alpha = rng.uniform(1, 3), rng.uniform(0.2, 0.6)
        a = rng.uniform(0.5, 2) * e * 1e7 ** alpha
        y = (e + a * x ** -alpha) * np.exp(rng.normal(0, 0.02, n))
        parts.append(pd.DataFrame({"curve": f"c{g:04d}", "x": x, "loss": y}))
    return pd.concat(parts, ignore_index=True)


def revisiting(max_curves: int | None) -> pd.DataFrame:
    shared = os.environ.get("BAYESCALE_SHARED")
    root = (Path(shared) if shared else REPO.parent / "shared") / "datasets" / "revisiting_nsl_benchmark"
    frames = [pd.read_csv(root / name) for name in ("benchmark.lang.dedup.csv", "benchmark.vision.csv")]
    table = pd.concat(frames, ignore_index=True)
    table = table[table["Training"] == 1].drop(columns="Training").reset_index(drop=True)
    if max_curves is not None:
        keys = list(table.groupby(GROUP, sort=False).groups)[:max_curves]
        table = table[table.set_index(GROUP).index.isin(keys)].reset_index(drop=True)
    return table


def lockstep(n_steps: list, lanes: int) -> float:
    """Useful fraction of leapfrog steps for lanes in blocks of ``lanes``: sum(steps) / sum_blocks(lanes x max)."""
    width = min(s.shape[1] for s in n_steps)             # a refitted curve has more draws: its first ones
    steps = np.concatenate([s[:, :width] for s in n_steps]).astype(float)   # (lanes_total, draws)
    pad = (-steps.shape[0]) % lanes
    if pad:
        steps = np.concatenate([steps, np.zeros((pad, steps.shape[1]))])
    blocks = steps.reshape(-1, lanes, steps.shape[1])
    real = blocks.sum()
    return float(real / (lanes * blocks.max(axis=1).sum()))


def child(n_problems: int) -> dict:
    """One whole process: ``fit_many`` on ``n_problems`` simulated problems (the parent times the process)."""
    import resource

    t0 = time.perf_counter()
    import bayescale

    t_import = time.perf_counter() - t0
    table = simulated(n_problems)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fs = bayescale.fit_many(table, "power_law_constant", by="curve", progress=False, **SETTINGS)
    wall = time.perf_counter() - t0
    return {"problems": n_problems, "wall_s": wall, "import_s": t_import, "timings": fs.timings,
            "passed": fs.passed, "fitted": len(fs), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(n_problems: int) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", str(n_problems)], capture_output=True, text=True,
                         check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["process_s"] = time.perf_counter() - t0
    return data


def loop_of_fit(table: pd.DataFrame, by, mapping=None) -> dict:
    """``fit`` over every group, in this process; separates the first fit of each padded size (compiles)."""
    import bayescale
    from bayescale.sampler import padded_size

    seen, compile_s, warm, fits = set(), 0.0, [], {}
    for key, group in table.groupby(by, sort=False):
        size = padded_size(len(group))
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[key] = bayescale.fit(group.drop(columns=by), "power_law_constant", mapping=mapping,
                                      progress=False, **SETTINGS)
        took = time.perf_counter() - t
        if size in seen:
            warm.append(took)
        else:
            seen.add(size)
            compile_s += fits[key].timings["compile_s"]
            warm.append(took - fits[key].timings["compile_s"])
    return {"fits": fits, "compile_s": compile_s, "warm_per_fit_s": float(np.mean(warm)), "sizes": sorted(seen),
            "total_s": compile_s + float(np.sum(warm))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run, not figures")
    parser.add_argument("--loop-subset", type=int, default=40, help="problems in the timed loop of fit")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child), default=float))
        return 0

    import bayescale

    report = {}
    counts = [1, 10, 30] if args.quick else [1, 10, 100, 1000]
    big = counts[-1]
    subset = min(args.loop_subset, big)

    # 1-2. the Revisiting curves: NUTS one by one (lockstep figures), then one batched call
    curves = revisiting(4 if args.quick else None)
    n_curves = curves.groupby(GROUP).ngroups
    print(f"Revisiting-NSL, Training split: {n_curves} curves, {len(curves)} points; power_law_constant, "
          f"4 chains x (1000 + 1000)", flush=True)
    loop = loop_of_fit(curves, GROUP, MAPPING)
    steps = [f.samples.sample_stats["n_steps"] for f in loop["fits"].values()]
    order = np.argsort([s.mean() for s in steps])
    eff = {lanes: (lockstep(steps, lanes), lockstep([steps[i] for i in order], lanes)) for lanes in (4, 16, 64, 256)}
    loop_pass = sum(f.diagnostics.passed for f in loop["fits"].values())
    print("  vectorised NUTS in lockstep, useful fraction of leapfrog steps (key order / sorted by mean tree size):")
    for lanes, (plain, srt) in eff.items():
        print(f"    {lanes:4d} lanes: {plain:.2f} / {srt:.2f}")
    print(f"  loop of fit (NUTS): {loop['total_s']:.1f} s, {loop['total_s'] / n_curves:.2f} s per curve "
          f"({loop['compile_s']:.1f} s compiling {len(loop['sizes'])} padded sizes), gate passed {loop_pass}/{n_curves}")
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fs = bayescale.fit_many(curves, "power_law_constant", by=GROUP, mapping=MAPPING, progress=False, **SETTINGS)
    batch_s = time.perf_counter() - t
    print(f"  fit_many, one call: {batch_s:.1f} s, {batch_s / n_curves:.3f} s per curve (compile "
          f"{fs.timings['compile_s']:.1f} s, sampling {fs.timings['sampling_s']:.1f} s, "
          f"{fs.timings.get('batch_retried', 0)} sampled again in the batch, {fs.timings['retried']} refitted by "
          f"NUTS), gate passed {fs.passed}/{len(fs)}, not fitted {len(fs.errors)}; "
          f"{loop['total_s'] / batch_s:.1f}x the loop's speed")
    report["revisiting"] = {"curves": n_curves, "lockstep": {str(k): v for k, v in eff.items()},
                            "loop_s": loop["total_s"], "loop_passed": loop_pass, "batch_s": batch_s,
                            "batch_passed": fs.passed, "batch_timings": fs.timings}

    # 3. 1 .. 1000 problems, each in a fresh process
    print("\nsimulated power_law_constant problems (10-30 runs each), fit_many in a fresh process each:", flush=True)
    runs = {}
    for n in counts:
        runs[n] = r = run_child(n)
        if n == big:    # the same process again: its programs now come from the program cache, as the loop's do
            runs["cold"] = r
            runs[n] = r = run_child(n)
            print(f"  {n:5d} problems, first process (compiling): {runs['cold']['process_s']:.1f} s whole process")
        print(f"  {n:5d} problems: {r['process_s']:7.1f} s whole process, {r['process_s'] / n:.4f} s per fit "
              f"(compile {r['timings']['compile_s']:.1f} s, sampling {r['timings']['sampling_s']:.1f} s, "
              f"post-processing {r['timings']['postprocess_s']:.1f} s, {r['timings'].get('batch_retried', 0)} sampled "
              f"again in the batch, {r['timings']['retried']} refitted by NUTS), "
              f"peak memory {r['peak_rss_mb']:.0f} MB, gate passed {r['passed']}/{r['fitted']}", flush=True)
    report["scaling"] = runs

    # 4. the loop of fit over the same problems, timed on a subset and scaled
    table = simulated(big)
    keys = table["curve"].unique()[:subset]
    sim_loop = loop_of_fit(table[table["curve"].isin(keys)], "curve")
    scaled = sim_loop["compile_s"] + big * sim_loop["warm_per_fit_s"]
    batched = runs[big]["process_s"]
    print(f"\nloop of fit over {subset} of the {big} problems: {sim_loop['warm_per_fit_s']:.3f} s per warm fit, "
          f"{sim_loop['compile_s']:.1f} s compiling {len(sim_loop['sizes'])} padded sizes")
    print(f"  scaled to {big}: {scaled:.0f} s (compiles once + {big} x the warm fit; the loop was timed on "
          f"{subset}, not run on all {big})")
    cold = runs["cold"]["process_s"]
    print(f"  fit_many, whole process, programs cached: {batched:.1f} s ({batched / big * 1000:.1f} ms per problem) -> "
          f"{scaled / batched:.1f}x faster per problem (first process, compiling: {cold:.1f} s, "
          f"{scaled / cold:.1f}x); gate passed: batch {runs[big]['passed']}/{runs[big]['fitted']}, "
          f"loop {sum(f.diagnostics.passed for f in sim_loop['fits'].values())}/{subset}")
    report["loop_vs_batch"] = {"subset": subset, "warm_per_fit_s": sim_loop["warm_per_fit_s"],
                               "compile_s": sim_loop["compile_s"], "scaled_loop_s": scaled,
                               "batch_process_s": batched, "speedup": scaled / batched,
                               "batch_cold_process_s": cold, "speedup_cold": scaled / cold}

    # 5. Dask: 2 local worker processes
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        print("\nDask: dask.distributed is not installed (pip install 'bayescale[dask]'); skipped")
    else:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                    Client(cluster) as client:
                t_up = time.perf_counter() - t
                dist = bayescale.fit_many(table, "power_law_constant", by="curve", executor=client, progress=False,
                                          **SETTINGS)
        dask_s = time.perf_counter() - t
        print(f"\nDask LocalCluster, 2 worker processes: {dask_s:.0f} s for {big} problems ({t_up:.0f} s starting "
              f"the cluster) vs {batched:.0f} s in process; gate passed {dist.passed}/{len(dist)}")
        report["dask"] = {"wall_s": dask_s, "cluster_start_s": t_up, "in_process_s": batched, "passed": dist.passed}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
