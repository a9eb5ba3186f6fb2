"""Simulation-based calibration of every law card: the per-card table.

    python benchmarks/sbc.py                    # every card, 100 replications each, default fit settings
    python benchmarks/sbc.py --cards chinchilla power_law_constant --reps 300
    python benchmarks/sbc.py --cards-from c1ef75b   # the cards as they were at a git revision (before)

For each card: replications drawn from the card's own prior on a fixed design
(:func:`bayescale.inference.sbc.catalogue_design`; reference loss fixed at 3, see :mod:`bayescale.inference.sbc`),
each fitted at the defaults (4 x (1000 + 1000), one automatic refit on a failed
gate).  Printed per card: the gate pass rate (first attempt, and after the refit),
the smallest rank-uniformity p-value over the reported parameters (chi-square,
10 bins of the 100 possible ranks) and which parameter it is, the count of truths
below / above all 99 thinned draws (summed over parameters, against the binomial
expectation), the median bulk ESS per second of sampling and the median wall time
per fit.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(card_name: str, law, reps: int, seed: int) -> dict:
    from bayescale.inference.sbc import catalogue_design, sbc

    t0 = time.perf_counter()
    result = sbc(law, catalogue_design(card_name), reps=reps, seed=seed)
    pv = result.p_values()
    worst = min(pv, key=pv.get)
    out = result.outside()
    low, high = sum(v[0] for v in out.values()), sum(v[1] for v in out.values())
    return {"card": card_name, "reps": reps, "pass_first": result.first_pass_rate, "pass": result.pass_rate,
            "min_p": pv[worst], "min_p_param": worst, "below_all": low, "above_all": high,
            "expected_each": result.expected_outside() * len(pv),
            "ess_bulk_per_s": float(np.median(result.table["ess_bulk_per_s"])),
            "s_per_fit": float(np.median(result.table["seconds"])), "wall_s": time.perf_counter() - t0,
            "result": result}


def main(argv=None) -> None:
    from bayescale.cards import law_from_text, list_laws, load_law

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cards", nargs="*", default=None)
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cards-from", default=None, metavar="REV", help="take the cards' text from this git revision")
    ap.add_argument("--verbose", action="store_true", help="print every card's per-parameter table")
    ap.add_argument("--save", metavar="DIR", default=None, help="write each card's replication table to DIR/<card>.csv")
    args = ap.parse_args(argv)
    cards = args.cards or list_laws()
    rows = []
    for name in cards:
        if args.cards_from:
            text = subprocess.run(["git", "-C", str(ROOT), "show", f"{args.cards_from}:models/{name}.toml"],
                                  capture_output=True, text=True, check=True).stdout
            law = law_from_text(text, source=f"{name}@{args.cards_from}")
        else:
            law = load_law(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = run(name, law, args.reps, args.seed)
        rows.append(row)
        print(f"{name}: pass {row['pass']:.3f} (first {row['pass_first']:.3f}), min rank p {row['min_p']:.3f} "
              f"({row['min_p_param']}), beyond all draws {row['below_all']}/{row['above_all']} "
              f"(expected {row['expected_each']:.1f} each), {row['wall_s']:.0f} s", flush=True)
        if args.verbose:
            print(row["result"])
            print("\n".join("  failed " + p for p in row["result"].problems))
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            row["result"].table.to_csv(Path(args.save) / f"{name}.csv", index=False)
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "result"} for r in rows]).set_index("card")
    print()
    print(table.drop(columns=["wall_s"]).to_string(float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
