"""``backtest --group`` with the groups' fits batched (fit_many) against one NUTS fit per group, same run.

The Revisiting-NSL language curves (``benchmark.lang.dedup.csv``: the ``Training`` split is fitted, the
rest held out), power law + constant and BNSL-1, each curve its own group: the wall time, the held-out
scores and the gate of both paths, side by side.

    python benchmarks/backtest_groups.py
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
MAPPING = {"x": "Seen Examples", "loss": "Loss"}


def main() -> int:
    import bayescale

    shared = Path(os.environ.get("BAYESCALE_SHARED", REPO.parent / "shared"))
    table = pd.read_csv(shared / "datasets" / "revisiting_nsl_benchmark" / "benchmark.lang.dedup.csv")
    table["curve"] = table["Domain"] + " / " + table["Task"] + " / " + table["Model"]
    table = table.drop(columns=["Domain", "Task", "Model"])
    laws = ["power_law_constant", "bnsl1"]
    print(f"Revisiting-NSL language: {table['curve'].nunique()} curves, laws {laws}, split column Training")
    # the first call of each path compiles its programs; both are timed on a second call
    for batch in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bayescale.backtest(table, laws, split_column="Training", train_value=1, group="curve",
                               mapping=MAPPING, batch=batch)
            t0 = time.perf_counter()
            bt = bayescale.backtest(table, laws, split_column="Training", train_value=1, group="curve",
                                    mapping=MAPPING, batch=batch)
            wall = time.perf_counter() - t0
        s = bt.summary
        label = "fit_many (batched)" if batch else "fit per group (NUTS)"
        print(f"  {label:<22} {wall:6.1f} s for {int(bt.timings['fits'])} fits")
        for law in laws:
            r = s.loc[law]
            print(f"      {law:<20} median ARE {r['median_are']:.4f}, 90% coverage {r['coverage_90']:.2f}, "
                  f"gate failed {int(r['fits_failed_gate'])}/{int(r['fits'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
