"""Write a decision memo for a planned run on Epoch AI's reconstruction of the Chinchilla data.

The question Hoffmann et al. faced: with 5.88e23 FLOPs, is a 70B-parameter model on 1.4T tokens
the right run, and what loss will it reach?  This fits the Chinchilla and Kaplan laws to the 240
runs (Epoch's 5 outliers excluded), compares them, backtests both on the top 20% of runs by
compute, and writes the memo (memo.md, memo.html, figures, fits/) into ``--out``.

    python examples/memo_plan.py [--out DIR] [--laws chinchilla,kaplan] [--target 1.95] [--quick]
    python examples/memo_plan.py --data-dir ~/.cache/bayescale/datasets --download

The data come through ``bayescale.datasets.load("chinchilla_epoch")``: from ``--data-dir`` (default:
the project's ``../shared/datasets`` when present, else the bayescale cache), downloaded from Epoch's
repository only with ``--download``.  ``--quick`` uses small sampler settings (a smoke test; expect
the diagnostics to warn or fail).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from bayescale import datasets
from bayescale.errors import BayescaleError
from bayescale.memo import build_memo, write_memo

REPO = Path(__file__).resolve().parents[1]
PLAN = {"N": 7e10, "D": 1.4e12}      # Chinchilla: 70B parameters, 1.4T tokens
BUDGET = 5.88e23


def default_data_dir() -> Path | None:
    shared = os.environ.get("BAYESCALE_SHARED")
    root = Path(shared) if shared else REPO.parent / "shared"
    root = root if root.is_absolute() else REPO / root
    return root / "datasets" if (root / "datasets").is_dir() else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help="folder holding chinchilla_epoch/svg_extracted_data.csv (default: ../shared/datasets "
                             "if present, else the bayescale cache)")
    parser.add_argument("--download", action="store_true", help="download the data if it is not cached")
    parser.add_argument("--out", type=Path, default=Path("memo_plan"))
    parser.add_argument("--laws", default="chinchilla,kaplan")
    parser.add_argument("--target", type=float, default=1.95)
    parser.add_argument("--quick", action="store_true", help="2 chains x 300 draws per fit (smoke test)")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    args = parser.parse_args(argv)
    try:
        frame = datasets.load("chinchilla_epoch", cache_dir=args.data_dir, download=args.download)
    except BayescaleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs = frame[frame["epoch_outlier"] == 0][["N", "D", "C", "loss"]].reset_index(drop=True)
    settings = dict(chains=2, warmup=300, draws=300) if args.quick else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        memo = build_memo(runs, args.laws.split(","), budget=BUDGET, plan=PLAN, target=args.target,
                          holdout_top="20%", progress=True, title="Chinchilla's run, revisited: a decision memo",
                          command="python examples/memo_plan.py " + " ".join(argv or sys.argv[1:]), **settings)
    paths = write_memo(memo, args.out, force=args.force)
    print(memo)
    print(f"\n{memo.answer.plan_verdict}")
    print(f"\nwrote {paths['markdown']}, {paths['html']}, {len(paths['figures'])} figures, {len(paths['fits'])} fits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
