"""``bayescale demo``: fit the Chinchilla law to the built-in SIMULATED pilot study.

::

    bayescale demo [--out demo/] [--force] [--quick] [--json]

Writes ``<out>/fit.nc`` (the fit; ``bayescale summary`` reads it) and
``<out>/memo.md`` (what data, which law, the posterior with 90% intervals
beside the generating parameters, the diagnostics verdict).  The data are
simulated (see ``bayescale/data/README.md``), so the memo can show whether
the posterior covers the truth.  Extrapolation, allocation and law comparison
are not part of the memo yet.
"""

from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path

from ._common import add_json, emit, fit_report, fit_text

__all__ = ["QUICK", "FULL", "pilot_memo", "register"]

#: Sampler settings of the demo: the library's defaults, and a quicker smoke run.
FULL = {"chains": 4, "warmup": 1000, "draws": 1000, "seed": 0}
QUICK = {"chains": 2, "warmup": 500, "draws": 1000, "seed": 0}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="fit the Chinchilla law to a built-in simulated pilot study and write a memo",
        description="Fit the Chinchilla law to the built-in SIMULATED pilot study (40 runs drawn from "
                    "the law at Epoch AI's published parameters) and write <out>/fit.nc and "
                    "<out>/memo.md.")
    p.add_argument("--out", default="demo", metavar="DIR", help="output directory (default: demo)")
    p.add_argument("--force", action="store_true", help="write into --out even if it is not empty")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK['chains']} chains x {QUICK['draws']} draws after {QUICK['warmup']} "
                        f"warm-up instead of {FULL['chains']} x {FULL['draws']} after {FULL['warmup']}")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    add_json(p)
    p.set_defaults(func=run_demo)


def _prepare_out(out: Path, force: bool) -> None:
    from ..errors import FitFileError

    if out.exists() and not out.is_dir():
        raise FitFileError(f"--out {str(out)!r} is a file; the demo needs a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FitFileError(f"--out directory {str(out)!r} is not empty; pass --force to write into "
                           "it (fit.nc and memo.md are overwritten) or choose another directory")
    if not out.parent.is_dir():
        raise FitFileError(f"--out {str(out)!r}: directory {str(out.parent)!r} does not exist")


def run_demo(args) -> int:
    from ..data import pilot_path
    from ..fitting import fit

    out = Path(args.out)
    _prepare_out(out, args.force)
    settings = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    with resources.as_file(pilot_path()) as csv:
        result = fit(csv, "chinchilla", progress=args.progress, **settings)
    wall = time.perf_counter() - t0
    out.mkdir(exist_ok=True)
    fit_path = result.save(out / "fit.nc", force=True)
    memo_path = out / "memo.md"
    memo_path.write_text(pilot_memo(result, wall, quick=args.quick))
    text = (fit_text(result, wall) + "\n\nThe data are SIMULATED (see the memo).\n"
            f"wrote {fit_path}\nwrote {memo_path}\n"
            f"next: bayescale summary {fit_path}")
    emit(args, fit_report(result, wall, simulated=True, out=str(out), fit_file=str(fit_path),
                          memo=str(memo_path), truth=_truth()), text)
    return 0


def _truth() -> dict:
    from ..data import NOISE_SCALE, PILOT_TRUTH

    return {**PILOT_TRUTH, "sigma": NOISE_SCALE}


def _g(v: float) -> str:
    return f"{v:.4g}".replace("e+", "e")


def _e(v: float) -> str:
    return f"{v:.2g}".replace("e+", "e")


def pilot_memo(fit, wall_s: float, quick: bool = False) -> str:
    """The demo memo (Markdown) for a fit of the pilot study."""
    from ..data import BUDGETS, NOISE_DF, NOISE_SCALE, SIZES_PER_BUDGET
    from ._common import prior_on, short_citation

    truth = _truth()
    law = fit.law
    table = fit.summary()
    runs = fit.runs.table
    d = fit.diagnostics
    s = fit.settings
    lines = [
        "# bayescale demo: the Chinchilla law on a simulated pilot study",
        "",
        "> **The data are simulated, not measured.** Each run's loss was drawn from the Chinchilla law "
        "at Epoch AI's published parameters (Besiroglu et al. 2024, refitting Hoffmann et al. 2022) with "
        f"Student-t({NOISE_DF:g}) noise of scale {NOISE_SCALE:g} on log loss. Because the truth is known, "
        "this memo can show whether the posterior covers it. See `bayescale/data/README.md`.",
        "",
        "## Data",
        "",
        f"{len(runs)} runs from `pilot_chinchilla.csv`, an isoFLOP-style grid: {len(BUDGETS)} compute "
        f"budgets from {_e(min(BUDGETS))} to {_e(max(BUDGETS))} FLOP, {SIZES_PER_BUDGET} model sizes "
        "per budget, tokens D = C / (6 N).",
        "",
        "| column | min | max |",
        "|---|---|---|",
    ]
    for col in list(fit.runs.inputs) + [fit.runs.response]:
        lines.append(f"| {col} | {_g(runs[col].min())} | {_g(runs[col].max())} |")
    lines += [
        "",
        "## Law",
        "",
        f"`{law.name}`: `{law.response.name} = {law.formula}` ({short_citation(law.citation)}); "
        f"noise model `{fit.noise}`; sigma ~ {law.sigma_prior}.",
        "",
        "| param | meaning | prior |",
        "|---|---|---|",
    ]
    for p in law.params:
        on = f" on {prior_on(p)}" if p.scale is not None else ""
        lines.append(f"| {p.name} | {p.meaning} | {p.prior}{on} |")
    lines += [
        "",
        "Priors with a scale are on the dimensionless ratio; `*_ref` are the data's geometric means "
        "(`bayescale show chinchilla` explains each prior).",
        "",
        "## Posterior",
        "",
        f"{s['chains']} chains x {s['draws']} draws after {s['warmup']} warm-up (seed {s['seed']})"
        + (", the `--quick` setting" if quick else "") + ". Intervals are 90% central posterior "
        "intervals (5% and 95% quantiles).",
        "",
        "| param | median | mean | sd | 90% interval | generating value | inside 90% |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in table.iterrows():
        t = truth.get(name)
        inside = "" if t is None else ("yes" if row["q5"] <= t <= row["q95"] else "**no**")
        lines.append(f"| {name} | {_g(row['median'])} | {_g(row['mean'])} | {_g(row['sd'])} | "
                     f"{_g(row['q5'])} to {_g(row['q95'])} | {'' if t is None else _g(t)} | {inside} |")
    lines += [
        "",
        "With 90% intervals, about one parameter in ten is expected to miss its generating value by "
        "chance; A and B are weakly identified by data like these, so their intervals are wide.",
        "",
        "## Diagnostics",
        "",
        f"**{'PASS' if d.passed else 'FAIL'}**: R-hat max {max(d.r_hat.values()):.4f} (gate 1.01), "
        f"ESS bulk min {min(d.ess_bulk.values()):.0f} and tail min {min(d.ess_tail.values()):.0f} "
        f"(gate 400), {d.divergences} divergent transitions of {d.draws}, maximum tree depth "
        f"{d.max_tree_depth} reached {d.saturated} times.",
    ]
    for item in list(d.problems) + list(d.advice):
        lines.append(f"- {item}")
    t = fit.timings
    lines += [
        "",
        f"Wall time {wall_s:.1f} s (JIT compilation {t.get('compile_s', float('nan')):.1f} s, "
        f"sampling {t.get('sampling_s', float('nan')):.1f} s).",
        "",
        "## Not in this memo yet",
        "",
        "Predictions with bands at larger budgets, the compute-optimal split of a budget between N and "
        "D, and the comparison of competing laws (LOO/WAIC) are not computed here: they come with later "
        "work on bayescale. This memo gives no numbers for them rather than point estimates.",
        "",
        "## Reproduce",
        "",
        "```",
        f"bayescale demo --out DIR{' --quick' if quick else ''}",
        "bayescale summary DIR/fit.nc",
        "```",
        "",
        f"bayescale {fit.versions.get('bayescale', '?')}, numpyro {fit.versions.get('numpyro', '?')}, "
        f"jax {fit.versions.get('jax', '?')}; card hash {fit.card_hash}; runs hash {fit.runs.hash}.",
        "",
    ]
    return "\n".join(lines)
