"""Choose the prior on the irreducible fraction of a one-axis learning curve from public curves
that no protocol scores these laws on (empirical Bayes, type-II maximum likelihood).

    python benchmarks/floor_prior.py                 # ~15-25 min on 2 cores
    python benchmarks/floor_prior.py --quick         # 2 chains x 300 draws, 6 curves per source

``power_law_constant`` samples ``f_E = E / L_c`` and ``bnsl1`` samples ``f_a = a / L_c``: the floor
as a fraction of the law's loss at the data's centre.  On a short curve that barely bends the data
say little about that fraction, so its prior decides how fast an extrapolation flattens.  This
script asks which ``Beta(a, b)`` prior the curves themselves prefer, by the marginal likelihood of
each curve under it:

    log Z(a, b) - log Z_0 = log mean_s [ Beta(f_s; a, b) / Beta(f_s; 1.5, 1.5) ]

over the posterior draws ``f_s`` of a fit at the shipped prior ``Beta(1.5, 1.5)`` (importance
reweighting; a grid point is kept only if every curve's weights keep an effective sample size of at
least ``MIN_ESS``).  The sum over curves is maximised on a grid.

The curves (none is a scored target of these laws; only the fitted points are used, never a
held-out one):

- ``gemstones``: the 22 constant-LR main runs of Gemstones, loss against tokens (x = D), each run
  thinned to 40 log-spaced checkpoints.  The Gemstones protocols (CALIBRATION.md T2) score the
  Chinchilla law, not these cards.
- ``vision``: the 72 image-classification curves of the Revisiting-NSL vision file, their
  ``Training == 1`` points only (the T4 protocol scores the ``Training == 0`` points, which this
  script never reads).

The language file of Revisiting-NSL (the scored T4 task and issue 9's backtest) is not read.

Result (2026-12-01, defaults 4 x (1000 + 1000), seed 0; 3.5 min):

| law / curves | posterior medians of the fraction (median, 10-90%) | best Beta | best LogitNormal |
|---|---|---|---|
| power_law_constant / Gemstones (22) | 0.955, 0.90-0.97 | (40, 2.4) at the grid edge, +62.5 | (3.0, 0.53), +64.5 |
| power_law_constant / vision (72) | 0.37, 0.15-0.61 | (1.88, 3.07), +9.9 | (-0.6, 1.0), +8.8 |
| power_law_constant / both (94) | | **(1.02, 0.90)**, +9.1 | (0.2, 1.9), +10.0 |
| bnsl1 / Gemstones (22) | 0.96, 0.92-0.97 | (40, 2.1) at the grid edge, +66.1 | (3.2, 0.53), +68.8 |
| bnsl1 / vision (72) | 0.52, 0.36-0.70 | (6.4, 5.7), +24.6 | (0.2, 0.62), +23.2 |
| bnsl1 / both (94) | | **(2.12, 1.15)**, +17.1 | (0.8, 1.4), +13.3 |

(+x: log marginal likelihood over the curves against the shipped Beta(1.5, 1.5).)  The earlier
cards' floor prior (approximately LogitNormal(0.8, 1.8) on f_E, see CANDIDATES) scores +5.1 for
power_law_constant over all 94 curves: better than the shipped prior, 4.9 below the optimum.  Language
log-losses put the floor at ~95% of the loss at the data's centre, few-shot error rates at ~40-50%:
one prior for both must be wide, and the curves' evidence against the shipped prior is weak for
power_law_constant (+0.1 nat per curve) and modest for bnsl1 (+0.2).

Scored once afterwards, with both cards at the combined Beta optimum (Beta(1.0, 0.9) on f_E,
Beta(2.1, 1.15) on f_a), on the Revisiting-NSL language backtest (examples/revisiting_backtest.py;
median ARE / 90% coverage / mean lpd, shipped priors first): power_law_constant 0.0050 / 0.85 /
3.97 -> 0.0053 / 0.78 / 3.95; bnsl1 0.0054 / 0.80 / 3.85 -> 0.0048 / 0.83 / 3.90 (one fit of 20
failed the gate in each).  The changes go in opposite directions and are within what 20 curves
resolve, and neither meets issue 9's reference (ARE 0.0045 / 0.0044, coverage 0.79 / 0.88), so the
cards keep Beta(1.5, 1.5).  For the record, the earlier cards (priors on E and A relative to the
loss scale, i.e. f_E roughly LogitNormal(0.8, 1.8)) run through today's sampler give 0.0042 / 0.80 /
3.98 for power_law_constant (2 of 20 fits fail the gate) and 0.0048 / 0.84 / 4.06 for bnsl1 (10 of
20 fail): for power_law_constant the lower error comes from the floor prior, not from failed fits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parent))

import protocols  # noqa: E402

import bayescale  # noqa: E402

FRACTION = {"power_law_constant": "f_E", "bnsl1": "f_a"}
SHIPPED = (1.5, 1.5)
MIN_ESS = 30.0


def gemstones_curves(k: int = 40) -> list[tuple[str, pd.DataFrame]]:
    frame = pd.read_csv(protocols._path("gemstones", "gemstones_tidy.csv"))
    frame = frame[(frame["schedule"] == "constant_lr") & (frame["lr_setting"] == "base")]
    out = []
    for model, g in frame.groupby("model", sort=True):
        g = g.sort_values("D")
        want = np.exp(np.linspace(np.log(g["D"].min()), np.log(g["D"].max()), k))
        idx = sorted({int(np.argmin(np.abs(np.log(g["D"].to_numpy()) - np.log(w)))) for w in want})
        out.append((f"gemstones {model}", g.iloc[idx][["D", "loss"]].rename(columns={"D": "x"})))
    return out


def vision_curves() -> list[tuple[str, pd.DataFrame]]:
    frame = pd.read_csv(protocols._path("revisiting_nsl_benchmark", "benchmark.vision.csv"))
    frame = frame[frame["Training"] == 1]
    out = []
    for key, g in frame.groupby(["Domain", "Task", "Model"], sort=True):
        out.append((" / ".join(key), g.rename(columns={"Seen Examples": "x", "Loss": "loss"})[["x", "loss"]]))
    return out


def log_beta_pdf(f: np.ndarray, a, b) -> np.ndarray:
    return (a - 1) * np.log(f) + (b - 1) * np.log1p(-f) - special.betaln(a, b)


def log_logit_normal_pdf(f: np.ndarray, loc, scale) -> np.ndarray:
    z = np.log(f) - np.log1p(-f)
    return -0.5 * ((z - loc) / scale) ** 2 - np.log(scale * np.sqrt(2 * np.pi)) - np.log(f) - np.log1p(-f)


#: family -> (log density, grid of the first argument, grid of the second, quantile function)
FAMILIES = {
    "Beta": (log_beta_pdf, np.round(np.exp(np.linspace(np.log(0.3), np.log(40.0), 41)), 3),
             np.round(np.exp(np.linspace(np.log(0.3), np.log(40.0), 41)), 3),
             lambda a, b, q: float(special.betaincinv(a, b, q))),
    "LogitNormal": (log_logit_normal_pdf, np.round(np.linspace(-3.0, 5.0, 41), 3),
                    np.round(np.exp(np.linspace(np.log(0.2), np.log(5.0), 41)), 3),
                    lambda m, s, q: float(special.expit(m + s * special.ndtri(q)))),
}


def _log_mean_weight(lw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log mean exp and effective sample size of log importance weights over the last axis."""
    m = lw.max(axis=-1, keepdims=True)
    w = np.exp(lw - m)
    return m[..., 0] + np.log(w.mean(axis=-1)), w.sum(axis=-1) ** 2 / (w ** 2).sum(axis=-1)


def reweight(draws: list[np.ndarray], family: str) -> tuple[np.ndarray, np.ndarray]:
    """Sum over curves of log Z(prior) / Z_0 on the family's grid, and the smallest ESS over curves."""
    logpdf, g1, g2, _ = FAMILIES[family]
    total = np.zeros((len(g1), len(g2)))
    min_ess = np.full_like(total, np.inf)
    for f in draws:
        f = np.clip(f, 1e-6, 1 - 1e-6)
        lw = logpdf(f, g1[:, None, None], g2[None, :, None]) - log_beta_pdf(f, *SHIPPED)
        logz, ess = _log_mean_weight(lw)
        total += logz
        min_ess = np.minimum(min_ess, ess)
    return total, min_ess


#: Priors scored by name beside the grid optima: the earlier cards' floor prior (E / loss_ref ~
#: LogNormal(-0.7, 1) and the reducible loss at the centre ~ LogNormal(-1.5, 1.5), independent, give
#: logit f = log E - log R ~ Normal(0.8, 1.8)).
CANDIDATES = {"earlier cards (approx.)": ("LogitNormal", 0.8, 1.8)}


def log_bf(draws: list[np.ndarray], family: str, a: float, b: float) -> float:
    logpdf = FAMILIES[family][0]
    return float(sum(_log_mean_weight(logpdf(f, a, b) - log_beta_pdf(f, *SHIPPED))[0]
                     for f in (np.clip(f, 1e-6, 1 - 1e-6) for f in draws)))


def best(total, min_ess, family: str) -> dict:
    _, g1, g2, quantile = FAMILIES[family]
    ok = np.where(min_ess >= MIN_ESS, total, -np.inf)
    i, j = np.unravel_index(np.argmax(ok), ok.shape)
    a, b = float(g1[i]), float(g2[j])
    edge = i in (0, len(g1) - 1) or j in (0, len(g2) - 1)
    return {"prior": f"{family}({a:g}, {b:g})", "log_bf_vs_shipped": float(ok[i, j]),  # log Z_0 / Z_0 = 0
            "median": quantile(a, b, 0.5), "q05": quantile(a, b, 0.05), "q95": quantile(a, b, 0.95),
            "on_grid_edge": bool(edge)}


def describe(b: dict) -> str:
    return (f"{b['prior']}{' (grid edge)' if b['on_grid_edge'] else ''} median {b['median']:.3f}, "
            f"90% {b['q05']:.3f}-{b['q95']:.3f}, log BF vs Beta(1.5, 1.5) {b['log_bf_vs_shipped']:.1f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--laws", default="power_law_constant,bnsl1")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    settings = {"chains": 2, "warmup": 300, "draws": 300} if args.quick else {}
    sources = {"gemstones": gemstones_curves(), "vision": vision_curves()}
    if args.quick:
        sources = {k: v[:6] for k, v in sources.items()}
    result = {}
    for law in [s.strip() for s in args.laws.split(",") if s.strip()]:
        name = FRACTION[law]
        per_source, all_draws = {}, []
        for source, curves in sources.items():
            t0 = time.perf_counter()
            draws, medians, passed = [], [], 0
            for label, curve in curves:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit = bayescale.fit(curve, law=law, progress=False, seed=0, **settings)
                f = fit.draws(name)
                draws.append(f)
                medians.append(float(np.median(f)))
                passed += bool(fit.diagnostics.passed)
            grids = {fam: reweight(draws, fam) for fam in FAMILIES}
            all_draws.extend(draws)
            per_source[source] = {"curves": len(curves), "gate_passed": passed,
                                  "median_of_medians": float(np.median(medians)),
                                  "medians_q10_q90": [float(np.quantile(medians, q)) for q in (0.1, 0.9)],
                                  "grids": grids, "best": {fam: best(*grids[fam], fam) for fam in FAMILIES},
                                  "seconds": time.perf_counter() - t0}
            s = per_source[source]
            print(f"{law} / {source}: {len(curves)} curves ({passed} through the gate, {s['seconds']:.0f} s); "
                  f"posterior medians of {name}: median {s['median_of_medians']:.3f}, 10-90% "
                  f"{s['medians_q10_q90'][0]:.3f}-{s['medians_q10_q90'][1]:.3f}", flush=True)
            for fam in FAMILIES:
                print(f"    best {describe(s['best'][fam])}", flush=True)
        both = {}
        for fam in FAMILIES:
            total = sum(s["grids"][fam][0] for s in per_source.values())
            ess = np.minimum.reduce([s["grids"][fam][1] for s in per_source.values()])
            both[fam] = best(total, ess, fam)
            print(f"{law} / all sources: best {describe(both[fam])}", flush=True)
        for label, (fam, a, b) in CANDIDATES.items():
            both[label] = log_bf(all_draws, fam, a, b)
            print(f"{law} / all sources: {label} {fam}({a:g}, {b:g}) log BF vs Beta(1.5, 1.5) {both[label]:.1f}",
                  flush=True)
        result[law] = {"all": both, **{k: {kk: vv for kk, vv in v.items() if kk != "grids"}
                                       for k, v in per_source.items()}}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
