"""Generate ``pilot_chinchilla.csv``: a SIMULATED pilot study (run once, committed).

Nothing here was measured.  The table mimics a small isoFLOP sweep: 5 compute
budgets from 6e18 to 1e21 FLOP, 8 model sizes per budget spread evenly in
log N from 1/6 to 6 times the compute-optimal size, tokens ``D = C / (6 N)``.
Losses are drawn from the Chinchilla law with Epoch AI's published refit of
Hoffmann et al.'s data (Besiroglu et al. 2024, arXiv:2404.10102) and
Student-t(4) noise of scale 0.01 on log loss::

    log loss = log(E + A / N**alpha + B / D**beta) + 0.01 * t_4

Run ``python -m bayescale.data.make_pilot`` to regenerate the same file (the
seed is fixed; the output is byte-identical for a given numpy version).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: The generating ("true") parameters: Epoch AI's estimates for the Chinchilla law.
TRUTH = {"E": 1.817, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
#: Scale and degrees of freedom of the Student-t noise on log loss.
NOISE_SCALE = 0.01
NOISE_DF = 4.0
BUDGETS = (6e18, 2.2e19, 8e19, 2.8e20, 1e21)
SIZES_PER_BUDGET = 8
SPREAD = 6.0
SEED = 20240417

OUT = Path(__file__).with_name("pilot_chinchilla.csv")


def optimal_n(compute: float) -> float:
    """Compute-optimal N under ``C = 6 N D`` for the TRUTH parameters."""
    t = TRUTH
    g = (t["alpha"] * t["A"] / (t["beta"] * t["B"])) ** (1 / (t["alpha"] + t["beta"]))
    return g * (compute / 6) ** (t["beta"] / (t["alpha"] + t["beta"]))


def simulate(seed: int = SEED):
    """The pilot table as a pandas DataFrame (columns N, D, C, loss)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for c in BUDGETS:
        centre = optimal_n(c)
        for n in np.geomspace(centre / SPREAD, centre * SPREAD, SIZES_PER_BUDGET):
            n = float(np.round(n, -4))
            d = c / (6 * n)
            t = TRUTH
            mean = t["E"] + t["A"] / n ** t["alpha"] + t["B"] / d ** t["beta"]
            loss = mean * np.exp(NOISE_SCALE * rng.standard_t(NOISE_DF))
            rows.append({"N": int(n), "D": int(round(d)), "C": c, "loss": round(float(loss), 5)})
    return pd.DataFrame(rows)


def main() -> None:
    simulate().to_csv(OUT, index=False)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
