"""Backtest power law + constant against a broken power law on the "Revisiting
Neural Scaling Laws" extrapolation benchmark (Alabdulmohsin, Neyshabur & Zhai,
NeurIPS 2022).

Every learning curve is one (Domain, Task, Model) group of the language file
(``benchmark.lang.dedup.csv``: 20 curves, BIG-bench, LM and NMT); x is ``Seen
Examples``, the response ``Loss``; the benchmark's own ``Training`` column
says which points to fit on (1) and which to extrapolate (0).  Each law is
fitted to each curve's training points (all curves of a law in one
``fit_many`` batch: lockstep HMC, fits that fail the gate sampled again in the
batch, then by NUTS if they still fail) and scored on its held-out
points: absolute relative error of the posterior predictive median, coverage
of the 50% and 90% predictive intervals, log predictive density; plus the
paper's metric, the RMSE of log loss over a curve's held-out points.

The data are read in place from ``../shared/datasets`` (or
``$BAYESCALE_SHARED/datasets``), never copied.

    python examples/revisiting_backtest.py                      # all 20 curves, both laws
    python examples/revisiting_backtest.py --max-curves 2       # smoke test
    python examples/revisiting_backtest.py --json out.json --plot out.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
GROUP = ["Domain", "Task", "Model"]
MAPPING = {"x": "Seen Examples", "loss": "Loss"}


def default_file() -> Path:
    shared = os.environ.get("BAYESCALE_SHARED")
    root = Path(shared) if shared else REPO.parent / "shared"
    if not root.is_absolute():
        root = REPO / root
    return root / "datasets" / "revisiting_nsl_benchmark" / "benchmark.lang.dedup.csv"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=None, help="benchmark CSV (default: the .dedup language file)")
    parser.add_argument("--laws", default="power_law_constant,bnsl1", help="comma-separated law names")
    parser.add_argument("--max-curves", type=int, default=None, help="only the first N curves (smoke test)")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the full result (summary + every held-out point) here")
    parser.add_argument("--plot", type=Path, help="save the predicted-vs-observed figure here")
    args = parser.parse_args(argv)

    from bayescale.backtest import backtest
    from bayescale.errors import BayescaleError

    path = args.file or default_file()
    if not path.is_file():
        print(f"error: {path} does not exist (set BAYESCALE_SHARED to the folder holding datasets/)",
              file=sys.stderr)
        return 2
    frame = pd.read_csv(path)
    keys = sorted(frame.groupby(GROUP).groups)
    if args.max_curves is not None:
        keys = keys[: args.max_curves]
        frame = frame[frame.set_index(GROUP).index.isin(keys)].reset_index(drop=True)
    laws = [s.strip() for s in args.laws.split(",") if s.strip()]
    print(f"{path.name}: {len(keys)} curves, {len(frame)} points "
          f"({int(frame['Training'].sum())} to fit, {int((frame['Training'] == 0).sum())} held out); "
          f"laws: {', '.join(laws)}; {args.chains} chains x ({args.warmup} + {args.draws}), all curves of a law "
          f"in one batch", flush=True)

    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = backtest(frame, laws, split_column="Training", group=GROUP, mapping=MAPPING,
                              chains=args.chains, warmup=args.warmup, draws=args.draws, seed=args.seed)
    except BayescaleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0

    table = result.table.copy()
    table["log_err"] = np.log(table["predicted"]) - np.log(table["observed"])
    rmse = (table.groupby(["law", "group"])["log_err"].apply(lambda e: float(np.sqrt(np.mean(e ** 2))))
            .rename("rmse_log").reset_index())
    domain = table["group"].str.split(" / ").str[0]
    by_domain = (table.assign(domain=domain).groupby(["law", "domain"])
                 .agg(n=("are", "size"), median_are=("are", "median"), coverage_90=("hit_90", "mean")))
    summary = result.summary.copy()
    summary["median_curve_rmse_log"] = rmse.groupby("law")["rmse_log"].median().reindex(summary.index)
    summary["curves_won_by_rmse"] = 0
    if len(laws) > 1:
        best = rmse.loc[rmse.groupby("group")["rmse_log"].idxmin(), "law"].value_counts()
        summary["curves_won_by_rmse"] = best.reindex(summary.index).fillna(0).astype(int)

    cols = ["n_groups", "n_test", "median_are", "mean_are", "coverage_50", "coverage_90",
            "mean_rel_width_90", "mean_lpd", "median_curve_rmse_log", "curves_won_by_rmse", "fits_failed_gate"]
    print()
    print(summary[cols].to_string(float_format=lambda v: f"{v:.4g}"))
    print()
    for law in summary.index:
        s = summary.loc[law]
        print(f"{law}: median ARE {s['median_are']:.4f}, 90% coverage {s['coverage_90']:.3f} "
              f"({int(s['n_test'])} held-out points, {int(s['n_groups'])} curves)")
    print()
    print("by domain:")
    print(by_domain.to_string(float_format=lambda v: f"{v:.4g}"))
    for note in result.notes:
        if "diagnostics gate" not in note:
            print(f"note: {note}")
    n_fits = int(result.timings["fits"])
    print(f"\n{n_fits} fits in {wall:.0f} s ({result.timings['per_fit_s']:.1f} s per fit, "
          f"{int(summary['fits_failed_gate'].sum())} failed the diagnostics gate)")

    if args.json:
        data = result.as_dict()
        data["summary"] = [{"law": law, **{k: (None if isinstance(v, float) and not np.isfinite(v) else
                                              (v.item() if hasattr(v, "item") else v))
                                           for k, v in row.items()}}
                           for law, row in summary.iterrows()]
        data["curve_rmse_log"] = rmse.to_dict(orient="records")
        data["wall_s"] = wall
        args.json.write_text(json.dumps(data, indent=1, allow_nan=False))
    if args.plot:
        from bayescale.plots.compare import plot_backtest

        plot_backtest(result).savefig(args.plot, dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
