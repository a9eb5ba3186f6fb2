"""Reproduce Epoch AI's Chinchilla replication (Besiroglu et al. 2024) with bayescale.

Fits the Chinchilla law to the 240 runs Epoch reconstructed from Hoffmann et
al.'s Figure 4 (their 5 outliers excluded), prints the posterior next to
Epoch's bootstrap estimates, the compute-optimal allocation at Chinchilla's
budget (5.88e23 FLOPs), and writes the figures.

    python examples/epoch_chinchilla.py [--data PATH] [--out DIR] [--quick]

``--data`` defaults to ``../shared/datasets/chinchilla_epoch/chinchilla_epoch_tidy.csv``
beside the repository; ``--quick`` uses small sampler settings (a smoke test).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

import bayescale as bs
from bayescale.plots.allocation import plot_allocation, plot_ratio
from bayescale.plots.bands import plot_bands

DEFAULT = (Path(__file__).resolve().parents[2] / "shared" / "datasets" / "chinchilla_epoch"
           / "chinchilla_epoch_tidy.csv")
# Epoch's headline estimates and 95% bootstrap intervals (their SOURCE.md / paper)
EPOCH = {"E": (1.817, 1.769, 1.871), "A": (482.01, 285.2, 743.6), "B": (2085.43, 1042.4, 5810.3),
         "alpha": (0.3478, 0.317, 0.373), "beta": (0.3658, 0.331, 0.415)}
BUDGET = 5.88e23
PLAN = {"N": 7e10, "D": 1.4e12}   # Chinchilla itself: 70B parameters, 1.4T tokens


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--out", type=Path, default=Path("epoch_chinchilla"))
    parser.add_argument("--quick", action="store_true", help="small sampler settings (smoke test)")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"error: {args.data} not found; pass --data", file=sys.stderr)
        return 2
    frame = pd.read_csv(args.data)
    runs = frame[frame["epoch_outlier"] == 0]
    settings = dict(chains=2, warmup=300, draws=300) if args.quick else {}
    fit = bs.fit(runs, law="chinchilla", progress=not args.quick, **settings)
    print(fit, "\n")
    table = fit.summary()
    print("parameter  posterior median [90%]          Epoch estimate [95% bootstrap]")
    for name, (est, lo, hi) in EPOCH.items():
        r = table.loc[name]
        print(f"{name:>9}  {r['median']:9.4g} [{r['q5']:.4g}, {r['q95']:.4g}]   {est:9.4g} [{lo:.4g}, {hi:.4g}]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ExtrapolationWarning)
        alloc = bs.optimal(fit, [BUDGET])
        regret = bs.plan_regret(fit, PLAN["N"], PLAN["D"])
    print("\n" + str(alloc))
    print("(Epoch's point estimate gives D*/N* = 18.3 at 5.88e23 FLOPs by the closed form)")
    print(regret)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, fig in (("bands.png", plot_bands(fit, plan=PLAN)), ("allocation.png", plot_allocation(fit, plan=PLAN)),
                      ("ratio.png", plot_ratio(fit, BUDGET, plan=PLAN))):
        fig.savefig(args.out / name, dpi=110)
    print(f"\nfigures written to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
