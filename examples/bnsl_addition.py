"""Power law + constant against a broken neural scaling law on 4-digit addition (Caballero et al. 2022).

The test loss of a small transformer learning 4-digit addition stays near 2.0 nats until ~550
training examples, then falls fast: a "break" no smooth power law can follow.  This fits both
laws to the 17 points, compares them by PSIS-LOO, then backtests both with the paper's split
(fit on the first 14 points, predict the last 3) and reports the absolute relative error and the
coverage of the predictive intervals.  A smooth power law is confidently wrong past the break.

    python examples/bnsl_addition.py [--data CSV] [--out DIR] [--quick]

``--data`` defaults to ``../shared/datasets/bnsl_4digit_addition/bnsl_4digit_addition.csv``
beside the repository (or ``$BAYESCALE_SHARED/datasets``); with ``--data-dir DIR`` the data come
through ``bayescale.datasets.load("bnsl_4digit_addition", cache_dir=DIR)`` instead.
``--quick`` uses small sampler settings (a smoke test).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale import datasets
from bayescale.plots.compare import plot_backtest, plot_compare

REPO = Path(__file__).resolve().parents[1]
LAWS = ("power_law_constant", "bnsl1")
MAPPING = {"x": "train_set_size", "loss": "test_cross_entropy"}
PAPER = {"rmsle_extrapolate": 0.0109}   # the paper's least-squares BNSL fit on the 3 held-out points


def default_file() -> Path:
    shared = os.environ.get("BAYESCALE_SHARED")
    root = Path(shared) if shared else REPO.parent / "shared"
    root = root if root.is_absolute() else REPO / root
    return root / "datasets" / "bnsl_4digit_addition" / "bnsl_4digit_addition.csv"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_file())
    parser.add_argument("--data-dir", type=Path, help="load through bayescale.datasets from this cache folder")
    parser.add_argument("--out", type=Path, default=Path("bnsl_addition"))
    parser.add_argument("--quick", action="store_true", help="2 chains x 300 draws per fit (smoke test)")
    args = parser.parse_args(argv)
    if args.data_dir is not None:
        frame = datasets.load("bnsl_4digit_addition", cache_dir=args.data_dir)
    elif args.data.is_file():
        frame = pd.read_csv(args.data)
    else:
        print(f"error: {args.data} not found; pass --data or --data-dir", file=sys.stderr)
        return 2
    settings = dict(chains=2, warmup=300, draws=300) if args.quick else {}

    print(f"{len(frame)} points, x = {MAPPING['x']} ({frame[MAPPING['x']].min()}..{frame[MAPPING['x']].max()}), "
          f"loss = {MAPPING['loss']}; split: {(frame['split'] == 'fit').sum()} fit, "
          f"{(frame['split'] != 'fit').sum()} held out\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = [bs.fit(frame, law, mapping=MAPPING, progress=False, **settings) for law in LAWS]
        for f in fits:
            print(f"{f.law.name}: {f.diagnostics}")
        comparison = bs.compare(fits)
        print("\n" + str(comparison))
        bt = bs.backtest(frame, list(LAWS), split_column="split", mapping=MAPPING, **settings)
    print("\n" + str(bt))
    for law, part in bt.table.groupby("law", sort=False):
        rmsle = float(np.sqrt(np.mean((np.log(part["predicted"]) - np.log(part["observed"])) ** 2)))
        print(f"{law}: RMSLE of the predictive median on the held-out points {rmsle:.4f} "
              f"(the paper's BNSL least-squares fit: {PAPER['rmsle_extrapolate']})")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, fig in (("compare.png", plot_compare(comparison)), ("backtest.png", plot_backtest(bt))):
        fig.savefig(args.out / name, dpi=110)
    print(f"\nfigures written to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
