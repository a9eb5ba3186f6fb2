"""``bayescale predict``, ``optimal`` and ``plot``: answers read off saved fits.

Each takes one fit file, or several (a stacking-weighted mixture of the
laws; see :mod:`bayescale.mixture`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BayescaleError
from ._common import add_json, add_strict, emit, gate_status

__all__ = ["parse_assignments", "register"]


def parse_assignments(text: str, what: str) -> dict[str, float]:
    """``"N=7e10,D=1.4e12"`` -> ``{"N": 7e10, "D": 1.4e12}``."""
    out = {}
    for part in str(text).split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not name or number is None:
            raise BayescaleError(f"{what} {text!r}: expected name=number pairs separated by commas, "
                                 f"e.g. N=7e10,D=1.4e12")
        out[name] = number
    return out


def _numbers(items, what: str) -> list[float]:
    out = []
    for item in items or []:
        for part in str(item).split(","):
            try:
                out.append(float(part))
            except ValueError:
                raise BayescaleError(f"{what} {part!r} is not a number") from None
    return out


def _load(paths):
    from ..result import load_fit

    return [load_fit(p) for p in paths]


def _failed(fits) -> list:
    return [f for f in fits if not f.diagnostics.passed]


def _fits_arg(p) -> None:
    p.add_argument("fits", nargs="+", metavar="FIT", help="fit file(s) from `bayescale fit --out`; "
                   "several are mixed with stacking weights")
    p.add_argument("--group", metavar="LEVEL",
                   help="for a fit pooled over groups (fit --vary): the group to answer for, or 'new' for a "
                        "group not in the data")


def _load_for_group(args) -> list:
    from ..mixture import for_group

    return for_group(_load(args.fits), args.group)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="predicted loss with law and predictive bands",
        description="Predict the loss at new points from saved fits: per point the posterior median of the "
                    "law, the law band (parameter uncertainty only: law_lower_90 ...) and the predictive band "
                    "(parameters and run-to-run noise, what a new run would show: pred_lower_90 ...), and "
                    "P(loss < target) with --target. Several fits are mixed with stacking weights. A fit that "
                    "failed the diagnostics gate gives a warning (and exit status 3 with --strict).")
    _fits_arg(p)
    p.add_argument("--at", action="append", default=[], metavar="N=..,D=..",
                   help="inputs of one point (repeatable), e.g. --at N=7e10,D=1.4e12")
    p.add_argument("--grid", metavar="CSV", help="a CSV of points to predict at (columns = inputs)")
    p.add_argument("--prob", default="0.5,0.9", metavar="P,P",
                   help="probabilities of the central intervals, comma-separated, each in (0, 1) "
                        "(default 0.5,0.9: the 50%% and 90%% intervals)")
    p.add_argument("--target", type=float, help="report P(loss < target) per point")
    p.add_argument("--warn-beyond", type=float, default=10.0,
                   help="warn for points beyond this multiple of the largest run (default 10)")
    add_strict(p, "a fit failed the diagnostics gate")
    add_json(p)
    p.set_defaults(func=run_predict)

    p = subparsers.add_parser(
        "optimal", help="posterior of the compute-optimal N*, D* per budget",
        description="The compute-optimal allocation per budget from saved fits: the posterior of N* "
                    "(parameters), D* (tokens), D*/N* and the loss at the optimum, the allocation exponents, "
                    "the one allocation to run under a utility (--utility), a plan's regret (--plan) and the "
                    "compute needed to reach a loss (--target-loss). Needs a law of N and D with a compute cost.")
    _fits_arg(p)
    p.add_argument("--budget", action="append", default=[], metavar="FLOPS", help="budget(s) in FLOPs")
    p.add_argument("--max-tokens", type=float, help="cap on (unique) training tokens available")
    p.add_argument("--n-min", type=float, help="smallest allowed N")
    p.add_argument("--n-max", type=float, help="largest allowed N")
    p.add_argument("--inference-tokens", type=float, default=0.0,
                   help="tokens served over the model's life: adds 2*N*tokens FLOPs (Sardana et al. 2023)")
    p.add_argument("--utility", choices=["mean", "quantile", "cvar"], default="mean",
                   help="utility for choosing one allocation (default: expected loss)")
    p.add_argument("--q", type=float, default=0.9, help="quantile for --utility quantile/cvar (default 0.9)")
    p.add_argument("--plan", metavar="N=..,D=..", help="score a planned run against the optimum")
    p.add_argument("--target-loss", type=float,
                   help="also report the compute needed to reach this loss (with --inference-tokens)")
    add_strict(p, "a fit failed the diagnostics gate")
    add_json(p)
    p.set_defaults(func=run_optimal)

    p = subparsers.add_parser(
        "plot", help="figures: bands, allocation fan, D*/N* histogram",
        description="Draw a figure from saved fits: the extrapolation bands with the runs (--kind bands), the "
                    "compute-optimal N* and D* against compute (--kind allocation) or the posterior of D*/N* at a "
                    "budget (--kind ratio). The image format follows the --out suffix (.png, .pdf, .svg).")
    _fits_arg(p)
    p.add_argument("--kind", choices=["bands", "allocation", "ratio"], required=True,
                   help="bands: runs, law median, law and predictive bands along the plan's D/N (or the runs' "
                        "input); allocation: N* and D* against compute with 90%% bands; ratio: histogram of "
                        "D*/N* at --budget")
    p.add_argument("--out", required=True, metavar="PNG", help="image file to write")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--plan", metavar="N=..,D=..", help="mark a planned run")
    p.add_argument("--budget", type=float, help="budget for --kind ratio (default: the plan's compute)")
    add_strict(p, "a fit failed the diagnostics gate")
    add_json(p)
    p.set_defaults(func=run_plot)


def run_predict(args) -> int:
    import pandas as pd

    from ..predict import predict

    probs = tuple(_numbers([args.prob], "--prob"))
    if args.grid:
        from ..runs import read_table

        grid, _ = read_table(args.grid)
    elif args.at:
        rows = [parse_assignments(a, "--at") for a in args.at]
        grid = pd.DataFrame(rows)
    else:
        raise BayescaleError("predict needs points: --at N=7e10,D=1.4e12 (repeatable) or --grid points.csv")
    fits = _load_for_group(args)
    table = predict(fits, grid, prob=probs, target=args.target, warn_beyond=args.warn_beyond)
    text = table.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    note = ("law_* = the law's value (parameter uncertainty); pred_* = a new run's loss (parameters + "
            "noise); intervals are central, the number is the probability in %")
    if "calibration" in table.attrs:
        note += f"\ncal_* = {table.attrs['calibration']}"
    emit(args, {"fits": list(args.fits), "predictions": table.to_dict(orient="records"),
                "calibration": table.attrs.get("calibration")},
         f"{text}\n{note}")
    return gate_status(args, _failed(fits))


def run_optimal(args) -> int:
    from ..decision import choose_allocation, compute_for_loss, plan_regret
    from ..mixture import weighted_quantile
    from ..optimal import optimal

    budgets = _numbers(args.budget, "--budget")
    plan = parse_assignments(args.plan, "--plan") if args.plan else None
    if plan is not None and set(plan) != {"N", "D"}:
        raise BayescaleError(f"--plan needs exactly N and D, got {sorted(plan)}")
    if not budgets:
        if plan is None:
            raise BayescaleError("optimal needs --budget FLOPS (repeatable) or --plan N=..,D=..")
        budgets = [6 * plan["N"] * plan["D"]]
    fits = _load_for_group(args)
    n_bounds = None if args.n_min is None and args.n_max is None else (args.n_min, args.n_max)
    alloc = optimal(fits, budgets, max_tokens=args.max_tokens, n_bounds=n_bounds,
                    inference_tokens=args.inference_tokens)
    data = alloc.as_dict()
    lines = [str(alloc)]
    choices = []
    if not args.inference_tokens:
        for b in budgets:
            c = choose_allocation(fits, b, utility=args.utility, q=args.q, max_tokens=args.max_tokens,
                                  n_bounds=n_bounds)
            choices.append(c.as_dict())
            lines.append(str(c))
    data["chosen"] = choices
    if plan is not None:
        r = plan_regret(fits, plan["N"], plan["D"])
        data["plan"] = r.as_dict()
        lines.append(str(r))
    if args.target_loss is not None:
        C, N, D, w = compute_for_loss(fits, args.target_loss, inference_tokens=args.inference_tokens,
                                      max_tokens=args.max_tokens)
        ok = ~(C != C)
        entry = {"target_loss": args.target_loss, "inference_tokens": args.inference_tokens,
                 "p_reachable": float(w[ok].sum())}
        if ok.any():
            for name, arr in (("compute", C), ("N", N), ("D", D)):
                q = weighted_quantile(arr[ok][:, None], w[ok], [0.5, 0.05, 0.95])[:, 0]
                entry[f"{name}_median"], entry[f"{name}_lower_90"], entry[f"{name}_upper_90"] = q
            lines.append(f"to reach loss {args.target_loss:g}: compute {entry['compute_median']:.3g} "
                         f"[{entry['compute_lower_90']:.3g}, {entry['compute_upper_90']:.3g}] FLOPs "
                         f"(training + inference), N {entry['N_median']:.3g}, D {entry['D_median']:.3g}; "
                         f"reachable in {100 * entry['p_reachable']:.0f}% of draws")
        data["target"] = entry
    emit(args, data, "\n".join(lines))
    return gate_status(args, _failed(fits))


def run_plot(args) -> int:
    from ..errors import FitFileError
    from ..plots.allocation import plot_allocation, plot_ratio
    from ..plots.bands import plot_bands

    out = Path(args.out)
    if out.exists() and not args.force:
        raise FitFileError(f"--out {str(out)!r} exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise FitFileError(f"--out {str(out)!r}: directory {str(out.parent)!r} does not exist")
    plan = parse_assignments(args.plan, "--plan") if args.plan else None
    fits = _load_for_group(args)
    if args.kind == "bands":
        fig = plot_bands(fits, plan=plan)
    elif args.kind == "allocation":
        fig = plot_allocation(fits, plan=plan)
    else:
        budget = args.budget or (6 * plan["N"] * plan["D"] if plan and {"N", "D"} <= set(plan) else None)
        if budget is None:
            raise BayescaleError("--kind ratio needs --budget FLOPS (or --plan N=..,D=..)")
        fig = plot_ratio(fits, budget, plan=plan)
    fig.savefig(out, dpi=120)
    emit(args, {"kind": args.kind, "out": str(out)}, f"wrote {out}")
    return gate_status(args, _failed(fits))
