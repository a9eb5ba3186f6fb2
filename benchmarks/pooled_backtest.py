"""Does partial pooling over setups extrapolate better than fitting each setup alone?  Porian's 15 setups.

Data: ``porian_compute_optimal/isoflop_points.csv`` (1,745 runs, 15 setups ``config_id``, 11-12 compute
levels each).  Split, decided before any fit: in every setup the runs of its largest compute level are
held out (87 runs), the rest are fitted.  Methods (Chinchilla card, default settings, seed 0):

* ``separate``: ``backtest(group="config_id")``, one independent fit per setup (one ``fit_many`` batch);
* ``level`` (``L_c`` varying), ``level+shape`` (``L_c``, ``f_E``, ``g_N``: exponents shared) and ``all``
  (the five coordinates): ``backtest(pool="config_id", vary=[...])``, ONE model over all setups whose named
  coordinates vary by setup with partial pooling (``bayescale.inference.pooling``), the rest shared;
  each held-out run is predicted by its setup's view of the fit.

Printed per method: median ARE of the predictive median, 50% and 90% coverage of the held-out runs,
median relative width of the 90% interval, mean log predictive density, fits failing the gate, wall time.

Result (2026-12-02, main at 51532be, full settings, 2-core machine; 87 held-out runs; cells: median ARE /
50% coverage / 90% coverage / median relative 90% width / mean lpd / fits failing the gate / wall):

| method | median ARE | c50 | c90 | width90 | lpd | gate failed | wall |
|---|---|---|---|---|---|---|---|
| separate | 3.46% | 0.28 | 0.91 | 13.60% | 0.45 | 0/15 | 29 s |
| pooled, L_c varying | 3.44% | 0.64 | 1.00 | 23.52% | 0.46 | 0/1 | 31 s |
| pooled, L_c, f_E, g_N varying | 2.08% | 0.60 | 1.00 | 15.41% | 0.90 | 0/1 | 29 s |
| pooled, all five coordinates varying | 2.95% | 0.43 | 0.91 | 14.52% | 0.53 | 0/1 | 495 s |

Sharing the exponents and letting each setup's level and shape vary (Hestness et al.: improvements shift
the error, not the exponent) predicts the next compute level best: median ARE 2.08% against 3.46% for
separate fits, lpd 0.90 against 0.45, with a 90% band about as wide (15.4% against 13.6%).  Its 90%
coverage (1.00) is above nominal and its 50% coverage (0.60) near it; separate fits' 50% intervals
miss (0.28).  Varying only the level is too rigid (wide bands, 3.44%); varying the exponents too costs
17x the time and gives back most of the gain.  This scores the loss at the next compute level, not
CALIBRATION.md's T3 (the compute-optimal exponent against the authors' isoFLOP values): a shared exponent
pair gives one compute-optimal exponent for all 15 setups, which cannot match their per-setup values.

    python benchmarks/pooled_backtest.py                       # every method (tens of minutes on 2 cores)
    python benchmarks/pooled_backtest.py --methods separate,level
    python benchmarks/pooled_backtest.py --quick               # 5 setups, 2 chains x 300 draws: a smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

#: method -> the coordinates that vary by setup (None: every setup fitted alone)
METHODS = {"separate": None, "level": ["L_c"], "level+shape": ["L_c", "f_E", "g_N"],
           "all": ["L_c", "f_E", "g_N", "alpha", "beta"]}


def shared() -> Path:
    root = Path(os.environ.get("BAYESCALE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    path = root / "datasets" / "porian_compute_optimal" / "isoflop_points.csv"
    if not path.exists():
        sys.exit(f"error: {path} is missing (set BAYESCALE_SHARED to the folder holding datasets/)")
    return path


def runs(quick: bool) -> pd.DataFrame:
    points = pd.read_csv(shared())[["config_id", "N", "D", "C", "loss"]]
    if quick:
        points = points[points["config_id"].isin(sorted(points["config_id"].unique())[::3])]
    top = points.groupby("config_id")["C"].transform("max")
    return points.assign(train=(points["C"] < top).astype(int)).reset_index(drop=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of: {', '.join(METHODS)}")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    import bayescale
    from bayescale.backtest import backtest

    chosen = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        sys.exit(f"error: unknown methods {unknown}; methods are {list(METHODS)}")
    data = runs(args.quick)
    settings = dict(chains=2, warmup=300, draws=300) if args.quick else {}
    print(f"bayescale {bayescale.__version__}: {data['config_id'].nunique()} setups, {int(data['train'].sum())} runs "
          f"fitted, {int((data['train'] == 0).sum())} held out (each setup's largest compute level)", flush=True)
    rows = []
    for name in chosen:
        vary = METHODS[name]
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if vary is None:
                bt = backtest(data, "chinchilla", split_column="train", group="config_id", seed=0, **settings)
            else:
                bt = backtest(data, "chinchilla", split_column="train", pool="config_id", vary=vary, seed=0,
                              **settings)
        wall = time.perf_counter() - t0
        t = bt.table
        s = bt.summary.iloc[0]
        rows.append({"method": name if vary is None else f"pooled, {', '.join(vary)} varying", "n": len(t),
                     "median ARE": f"{100 * t['are'].median():.2f}%", "c50": f"{t['hit_50'].mean():.2f}",
                     "c90": f"{t['hit_90'].mean():.2f}", "width90": f"{100 * t['rel_width_90'].median():.2f}%",
                     "lpd": f"{t['lpd'].mean():.2f}", "gate failed": f"{int(s['fits_failed_gate'])}/{int(s['fits'])}",
                     "wall": f"{wall:.0f} s"})
        print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
    print()
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for r in rows:
        print("| " + " | ".join(map(str, r.values())) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
