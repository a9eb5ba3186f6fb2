"""Derive the default prior on s1 (the discrepancy's sd per unit of extrapolation distance).

    python benchmarks/s1_prior.py            # ~3-5 min on 2 cores
    python benchmarks/s1_prior.py --quick    # 2 chains x 300 draws

Data: Porian et al.'s isoFLOP points (``porian_compute_optimal/isoflop_points.csv``), 15 setups of
decoder-only LMs trained on RefinedWeb/OpenWebText2, 12 budgets over 2000x of compute.  No
calibration protocol scores a loss prediction on these data (T3 scores the compute-optimal
exponent, which the calibration does not touch), so a prior learned here is not tuned on any
scored target.  For each setup: a compute rollout of the Chinchilla law at F = 2 and 4 (the
defaults of ``bayescale.calibrate``), then the likelihood of s1 on the calibration grid under a
flat prior on log s1, for each distance scale ("log", "relative").  The prior on s0 (a new run's
offset from the law, used for fits of checkpoints) is a LogNormal over the setups' fitted noise
scales of the full Chinchilla fit (each isoFLOP point is a separate run, so the noise scale there
*is* the scatter of new runs around the law), with scale their sd over setups floored at 0.75.  The prior is a LogNormal
whose location is the mean over setups of the per-setup posterior median of log s1 and whose
scale is their sd over setups plus the mean within-setup sd (between- and within-setup
uncertainty), floored at 0.75 so that a user's rollout can move it.

Result (2026-12-01; chains 4 x 1000 + 1000; 195 s), copied into bayescale.evidence.calibration (s0: bayescale.evidence.offsets):

- log distance: per-setup s1 medians 0.0008-0.096 (two clusters: 5 setups below 0.005, 10 at
  0.015-0.096); prior ``LogNormal(-4.40, 2.57)`` (median 0.0122) = ``DEFAULT_S1_PRIOR``;
- relative distance: 0.0019-0.56; ``LogNormal(-2.98, 3.25)`` = ``RELATIVE_S1_PRIOR``;
- s0: the full fits' noise scales 0.013-0.062; ``LogNormal(-3.48, 0.75)`` (median 0.031) =
  ``DEFAULT_S0_PRIOR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import protocols  # noqa: E402

import bayescale  # noqa: E402
from bayescale.evidence import rollout_compute  # noqa: E402
from bayescale.evidence.calibration import DEFAULT_FACTORS, rollout_points, s1_log_likelihood  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    settings = {"chains": 2, "warmup": 300, "draws": 300} if args.quick else {}
    task = protocols.task_t3()
    per_setup = {"log": [], "relative": []}
    sigmas = []
    for split in task.splits:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bt = rollout_compute(split.train, "chinchilla", DEFAULT_FACTORS, **settings)
            full = bayescale.fit(split.train, law="chinchilla", progress=False, **settings)
        sigmas.append(float(np.median(full.draws("sigma"))))
        points = rollout_points(bt)
        n = sum(len(p[2]) for p in points)
        for scale in per_setup:
            grid, loglik = s1_log_likelihood(points, scale)
            w = np.exp(loglik - loglik.max())
            w /= w.sum()
            logs = np.log(grid)
            mean = float((w * logs).sum())
            sd = float(np.sqrt((w * (logs - mean) ** 2).sum()))
            med = float(np.exp(np.interp(0.5, np.cumsum(w) - 0.5 * w, logs)))
            per_setup[scale].append({"setup": split.label, "n": n, "s1_median": med, "log_s1_sd": sd})
            print(f"{scale:8s} {split.label[:60]:60s} n {n:3d}  s1 median {med:.4f}  sd(log) {sd:.2f}",
                  file=sys.stderr, flush=True)
    out = {}
    for scale, rows in per_setup.items():
        logs = np.log([r["s1_median"] for r in rows])
        within = float(np.mean([r["log_s1_sd"] for r in rows]))
        loc, scale_ = float(logs.mean()), max(0.75, float(logs.std(ddof=1)) + within)
        out[scale] = {"prior": f"LogNormal({loc:.2f}, {scale_:.2f})", "median": float(np.exp(loc)),
                      "between_sd": float(logs.std(ddof=1)), "within_sd": within, "setups": rows}
        print(f"{scale}: s1 medians over setups {np.round(np.exp(np.sort(logs)), 4).tolist()}")
        print(f"{scale}: prior {out[scale]['prior']} (median {np.exp(loc):.4f})")
    logs = np.log(sigmas)
    out["s0"] = {"prior": f"LogNormal({logs.mean():.2f}, {max(0.75, float(logs.std(ddof=1))):.2f})",
                 "sigmas": sigmas}
    print(f"s0: noise scale of the full fit per setup {np.round(np.sort(sigmas), 4).tolist()}")
    print(f"s0: prior {out['s0']['prior']} (median {np.exp(logs.mean()):.4f})")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
