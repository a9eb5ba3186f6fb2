"""Every benchmark figure the issues ask for, measured side by side in one run.

    python benchmarks/run.py            # all
    python benchmarks/run.py fit        # issue 2: fit wall time vs baselines, warm-cache refit
    python benchmarks/run.py optimal    # issue 3: optimal() for 4000 draws x 100 budgets
    python benchmarks/run.py demo       # issue 5: `bayescale demo` wall time, cold and warm cache (< 120 s)

Figures are printed as text and, last, as one JSON object.  Timings are
whole-process wall times of separate processes (imports and compilation
included), so ratios compare what a user waits for.  The fit benchmark runs
``bayescale fit`` in pairs (3 by default): once with a fresh, empty cache
(cold: no compiled code, no saved sampler) and once more with the cache it
left behind (warm); medians are reported.  Baselines are in
``benchmarks/baselines.py``.  The data are read in place from
``../shared/datasets`` (never copied into the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("BAYESCALE_SHARED", REPO.parent / "shared"))
EPOCH = SHARED / "datasets" / "chinchilla_epoch" / "chinchilla_epoch_tidy.csv"


def _run(cmd, env=None) -> tuple[float, dict]:
    """Run a command; return (wall seconds, the JSON object on its last stdout line)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-2000:]}")
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    return wall, json.loads(lines[-1])


def bench_fit(baseline_runs: int = 1, fit_runs: int = 3) -> dict:
    """``bayescale fit`` cold then warm, ``fit_runs`` times (a fresh cache each time; medians
    reported), against the baselines (the fastest of ``baseline_runs`` each: conservative)."""
    import pandas as pd

    bayescale = str(Path(sys.executable).with_name("bayescale"))
    with tempfile.TemporaryDirectory() as tmp:
        frame = pd.read_csv(EPOCH)
        runs = Path(tmp) / "epoch240.csv"
        frame[frame["epoch_outlier"] == 0].to_csv(runs, index=False)
        cmd = [bayescale, "fit", str(runs), "--law", "chinchilla", "--json", "--no-progress"]
        pairs = []
        for i in range(fit_runs):
            cache = {"BAYESCALE_CACHE_DIR": str(Path(tmp) / f"cache{i}")}
            pairs.append((_run(cmd, cache), _run(cmd, cache)))
        order = sorted(range(fit_runs), key=lambda i: pairs[i][0][0])
        (cold_wall, cold), _ = pairs[order[fit_runs // 2]]          # the median cold run
        warm_wall, warm = sorted((p[1] for p in pairs), key=lambda r: r[0])[fit_runs // 2]
        warm_ratios = sorted(p[1][0] / p[0][0] for p in pairs)
        base = [sys.executable, str(HERE / "baselines.py")]
        numpyro_wall, numpyro = _run(base + ["numpyro"], {"BAYESCALE_CACHE_DIR": str(Path(tmp) / "cache-numpyro")})
    epoch = [_run(base + ["epoch"]) for _ in range(baseline_runs)]
    naive = [_run(base + ["naive"]) for _ in range(baseline_runs)]
    epoch_wall = min(w for w, _ in epoch)
    naive_wall = min(w for w, _ in naive)

    def describe(report, wall):
        t = report["timings"]
        params = report["params"]
        ess = min(p["ess_bulk"] for p in params.values())
        return {"wall_s": wall, "compile_s": t["compile_s"], "sampling_s": t["sampling_s"],
                "gradients_sampling": t["gradients_sampling"], "ess_bulk_min": ess,
                "ess_bulk_per_sampling_s": ess / max(t["sampling_s"], 1e-9),
                "r_hat_max": max(p["r_hat"] for p in params.values()),
                "divergences": report["divergences"], "passed": report["diagnostics"]["passed"]}

    out = {
        "bayescale_cold": describe(cold, cold_wall),
        "bayescale_warm": describe(warm, warm_wall),
        "epoch_bootstrap": {"wall_s": epoch_wall, **{k: epoch[0][1][k] for k in ("grid_s", "boot_s")}},
        "numpyro_same_model": {"wall_s": numpyro_wall, **{k: numpyro[k] for k in (
            "mcmc_s", "gradients_sampling", "min_ess_bulk", "max_rhat", "divergences")}},
        "naive_nuts": {"wall_s": naive_wall, **{k: v for k, v in naive[0][1].items()
                                                if k in ("gradients", "ess_bulk_min", "r_hat_max", "divergences")}},
    }
    out["ratios"] = {"cold_vs_epoch_bootstrap": cold_wall / epoch_wall,
                     "cold_vs_naive_nuts": cold_wall / naive_wall,
                     "warm_vs_cold": warm_ratios[fit_runs // 2],
                     "cold_vs_numpyro_same_model": cold_wall / numpyro_wall}
    out["fit_runs"] = {"cold_wall_s": sorted(p[0][0] for p in pairs), "warm_wall_s": sorted(p[1][0] for p in pairs),
                       "warm_vs_cold": warm_ratios}
    out["targets"] = {"cold_vs_epoch_bootstrap": 0.15, "cold_vs_naive_nuts": 0.15, "warm_vs_cold": 0.5}
    return out


def bench_optimal(repeats: int = 5) -> dict:
    code = r"""
import json, time, warnings, numpy as np, pandas as pd, bayescale as bs
warnings.simplefilter("ignore")
frame = pd.read_csv(%r); frame = frame[frame.epoch_outlier == 0]
fit = bs.fit(frame, law="chinchilla", progress=False)
budgets = np.logspace(18, 27, 100)
t0 = time.perf_counter(); bs.optimal(fit, budgets); first = time.perf_counter() - t0
times = []
for _ in range(%d):
    t0 = time.perf_counter(); a = bs.optimal(fit, budgets); times.append(time.perf_counter() - t0)
print(json.dumps({"draws": int(a.N.shape[0]), "budgets": int(a.N.shape[1]), "first_call_s": first,
                  "after_compile_s_median": float(np.median(times)), "after_compile_s_min": float(min(times))}))
""" % (str(EPOCH), repeats)
    _, out = _run([sys.executable, "-c", code])
    out["target_s"] = 0.5
    return out


def bench_demo() -> dict:
    """``bayescale demo`` (4 NUTS fits, LOO, backtest, memo) in a fresh process: cold, then warm cache."""
    bayescale = str(Path(sys.executable).with_name("bayescale"))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {"BAYESCALE_CACHE_DIR": str(Path(tmp) / "cache")}
        for kind in ("cold", "warm"):
            wall, report = _run([bayescale, "demo", "--out", str(Path(tmp) / kind), "--json", "--no-progress"], env)
            checks = report["memo"]["diagnostics"]["checks"]
            out[kind] = {"wall_s": wall, "fits": len(checks),
                         "fits_passed": sum(c["status"] == "pass" for c in checks),
                         "memo_build_s": report["memo"]["reproducibility"]["wall_s"]}
    out["target_s"] = 120.0
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="?", choices=["all", "fit", "optimal", "demo"], default="all")
    parser.add_argument("--baseline-runs", type=int, default=1, help="repeat each baseline, keep the fastest")
    parser.add_argument("--fit-runs", type=int, default=3,
                        help="cold + warm pairs of `bayescale fit`, each with a fresh cache; medians reported")
    args = parser.parse_args(argv)
    if not EPOCH.is_file():
        print(f"error: {EPOCH} not found (set BAYESCALE_SHARED)", file=sys.stderr)
        return 2
    results = {"cpu_count": os.cpu_count()}
    if args.which in ("all", "fit"):
        r = results["fit"] = bench_fit(args.baseline_runs, args.fit_runs)
        c, w = r["bayescale_cold"], r["bayescale_warm"]
        print(f"bayescale fit, median of {args.fit_runs} cold/warm pairs; cold walls "
              + ", ".join(f"{w:.1f}" for w in r["fit_runs"]["cold_wall_s"]) + " s; warm walls "
              + ", ".join(f"{w:.1f}" for w in r["fit_runs"]["warm_wall_s"]) + " s")
        print(f"bayescale fit, cold cache: {c['wall_s']:.1f} s (compile {c['compile_s']:.1f} s, sampling "
              f"{c['sampling_s']:.2f} s, {c['gradients_sampling']} gradients after warm-up, ESS_bulk min "
              f"{c['ess_bulk_min']:.0f} = {c['ess_bulk_per_sampling_s']:.0f}/s of sampling, R-hat max "
              f"{c['r_hat_max']:.4f}, {c['divergences']} divergences)")
        print(f"bayescale fit, warm cache: {w['wall_s']:.1f} s (compile {w['compile_s']:.1f} s)")
        print(f"Epoch-style bootstrap baseline: {r['epoch_bootstrap']['wall_s']:.1f} s; naive NUTS "
              f"baseline: {r['naive_nuts']['wall_s']:.1f} s; the same model with NumPyro's NUTS: "
              f"{r['numpyro_same_model']['wall_s']:.1f} s (cold cache)")
        for k, v in r["ratios"].items():
            target = f" (target <= {r['targets'][k]})" if k in r["targets"] else ""
            print(f"  {k}: {v:.3f}{target}")
    if args.which in ("all", "optimal"):
        r = results["optimal"] = bench_optimal()
        print(f"optimal(): {r['draws']} draws x {r['budgets']} budgets: {r['after_compile_s_median']:.3f} s "
              f"after compilation (first call {r['first_call_s']:.2f} s; target < {r['target_s']} s)")
    if args.which in ("all", "demo"):
        r = results["demo"] = bench_demo()
        for kind in ("cold", "warm"):
            d = r[kind]
            print(f"bayescale demo, {kind} cache: {d['wall_s']:.1f} s whole process ({d['fits_passed']} of "
                  f"{d['fits']} fits pass the diagnostics gate; target < {r['target_s']:.0f} s)")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
