"""Rollouts with each law's windows batched (fit_many) against one NUTS fit per window, same run.

Epoch's 240 Chinchilla runs (``chinchilla_epoch_tidy.csv`` without the flagged outliers), the
Chinchilla card: an expanding-window rollout by compute (``rollout(k=3)``) and a compute rollout
(``rollout_compute``, F = 2, 4, 8).  Each path is called twice and timed on the second call (the first
compiles or loads its programs); the held-out scores and the gate of both paths are printed side by
side.  The figures decide ``bayescale.backtest.ROLLOUT_BATCH_DEFAULT``.

    python benchmarks/rollout_batch.py
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def epoch() -> pd.DataFrame:
    shared = Path(os.environ.get("BAYESCALE_SHARED", REPO.parent / "shared"))
    table = pd.read_csv(shared / "datasets" / "chinchilla_epoch" / "chinchilla_epoch_tidy.csv")
    return table[table["epoch_outlier"] == 0][["N", "D", "loss"]].reset_index(drop=True)


def main() -> int:
    from bayescale.backtest import rollout
    from bayescale.evidence import rollout_compute

    table = epoch()
    print(f"Epoch: {len(table)} runs, law chinchilla, 4 chains x (1000 + 1000)")
    jobs = {"rollout(k=3, by C)": lambda batch: rollout(table, "chinchilla", k=3, batch=batch),
            "rollout_compute(F = 2, 4, 8)": lambda batch: rollout_compute(table, "chinchilla", [2, 4, 8],
                                                                          batch=batch)}
    for name, job in jobs.items():
        print(f"  {name}:")
        for batch in (True, False):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                job(batch)
                t0 = time.perf_counter()
                bt = job(batch)
                wall = time.perf_counter() - t0
            r = bt.summary.loc["chinchilla"]
            label = "fit_many (batched)" if batch else "fit per window (NUTS)"
            print(f"    {label:<24} {wall:6.1f} s for {int(r['fits'])} fits; median ARE {r['median_are']:.4f}, "
                  f"50% / 90% coverage {r['coverage_50']:.2f} / {r['coverage_90']:.2f}, mean lpd "
                  f"{r['mean_lpd']:.2f}, gate failed {int(r['fits_failed_gate'])}/{int(r['fits'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
