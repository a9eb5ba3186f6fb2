"""``bayescale memo``: a decision memo for a planned run.

::

    bayescale memo runs.csv --laws chinchilla,kaplan --budget 5.88e23 --plan N=7e10,D=1.4e12 \\
        --target 1.95 --out memo/ [--noise student_t_log,normal_raw] [--holdout-top 20%] [--quick]
    bayescale memo fit_a.nc fit_b.nc --budget 5.88e23 --plan N=7e10,D=1.4e12 --out memo/

Writes ``<out>/memo.md``, ``<out>/memo.html`` (self-contained), ``<out>/memo.json``,
``<out>/*.png`` and ``<out>/fits/*.nc``; which fit is running is shown on stderr.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap

from ._common import add_json, add_strict, emit, gate_status

__all__ = ["FULL", "QUICK", "add_sampler_options", "register", "sampler_settings"]

#: Sampler settings per fit: the library's defaults, and a quicker run for a first look.
FULL = {"chains": 4, "warmup": 1000, "draws": 1000}
QUICK = {"chains": 2, "warmup": 500, "draws": 1000}


def add_sampler_options(p) -> None:
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK['chains']} chains x {QUICK['draws']} draws after {QUICK['warmup']} warm-up per fit "
                        f"instead of {FULL['chains']} x {FULL['draws']} after {FULL['warmup']}")
    p.add_argument("--chains", type=int, help="NUTS chains per fit (overrides --quick)")
    p.add_argument("--warmup", type=int, help="warm-up iterations per chain (overrides --quick)")
    p.add_argument("--draws", type=int, help="draws per chain (overrides --quick)")
    p.add_argument("--seed", type=int, default=0, help="random seed of every fit (default 0)")
    p.add_argument("--target-accept", type=float, default=0.8, help="NUTS target acceptance (default 0.8)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="one line per step on stderr: which fit is running (default on)")


def sampler_settings(args, full=FULL, quick=QUICK) -> dict:
    base = dict(quick if args.quick else full)
    for k in ("chains", "warmup", "draws"):
        if getattr(args, k, None) is not None:
            base[k] = getattr(args, k)
    base["seed"] = args.seed
    base["target_accept"] = args.target_accept
    return base


def register(subparsers) -> None:
    from ..noise import NOISE_MODELS

    p = subparsers.add_parser(
        "memo", help="decision memo for a planned run: fit, compare, backtest, predict, allocate, diagnose",
        description="Fit every law (x noise model) to the runs, compare them by PSIS-LOO, backtest them on the "
                    "largest runs, and answer from the stacked posterior: the plan's loss with 50% and 90% "
                    "predictive intervals and P(loss < target), the compute-optimal N*, D*, D*/N* at the budget, "
                    "the allocation chosen under a utility, the plan's regret, the sensitivity to the law, and "
                    "every fit's diagnostics. Writes memo.md, memo.html (self-contained), memo.json, the "
                    "figures and fits/*.nc into --out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            examples:
              bayescale memo runs.csv --laws chinchilla,kaplan --budget 5.88e23 --plan N=7e10,D=1.4e12 \\
                  --target 1.95 --out memo/
              bayescale memo runs.csv --laws chinchilla --noise student_t_log,normal_raw --plan N=7e10,D=1.4e12
              bayescale memo fit_a.nc fit_b.nc --budget 1e24 --out memo/ --no-backtest
              bayescale memo runs.csv --law chinchilla --pool family --vary L_c --group family-b --budget 1e22
            """))
    p.add_argument("inputs", nargs="+", metavar="RUNS_OR_FITS",
                   help="a runs CSV (with --laws), or fit files (.nc) from `bayescale fit --out`")
    p.add_argument("--laws", "--law", dest="laws", help="comma-separated law names (default: chinchilla)")
    p.add_argument("--noise", help=f"comma-separated noise models, each fitted with every law; one of "
                                   f"{', '.join(NOISE_MODELS)} (default: each card's)")
    p.add_argument("--budget", type=float, metavar="FLOPS", help="compute budget (default: the plan's compute)")
    p.add_argument("--plan", metavar="N=..,D=..", help="the planned run, e.g. N=7e10,D=1.4e12")
    p.add_argument("--target", type=float, metavar="LOSS", help="target loss: report P(loss < target)")
    p.add_argument("--out", default="memo", metavar="DIR", help="output directory (default: memo)")
    p.add_argument("--force", action="store_true",
                   help="replace the memo already in --out (a folder holding anything but a memo is never replaced)")
    p.add_argument("--title", help="the memo's title")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--holdout-top", metavar="FRACTION",
                     help="backtest: hold out the top fraction of runs by --by (default 20%%)")
    how.add_argument("--holdout", metavar="EXPR", help='backtest: hold out runs matching e.g. "C>=1e21"')
    how.add_argument("--split-column", metavar="COLUMN", help="backtest: a column marking the training runs")
    how.add_argument("--no-backtest", action="store_true", help="skip the backtest")
    p.add_argument("--by", default="C", help="column for --holdout-top (default C)")
    p.add_argument("--utility", choices=["mean", "quantile", "cvar"], default="mean",
                   help="choose the allocation to run by expected loss (default), a quantile of it, or its CVaR")
    p.add_argument("--q", type=float, default=0.9, help="level of --utility quantile/cvar (default 0.9)")
    p.add_argument("--reloo", action=argparse.BooleanOptionalAction, default=None,
                   help="exact leave-one-out refits for runs with Pareto k > 0.7 (default: when a fit has at "
                        "most 5 such runs)")
    p.add_argument("--map", action="extend", nargs="+", default=[], metavar="NAME=COLUMN",
                   help="use a differently named column, e.g. --map loss=val_loss")
    p.add_argument("--law-check", action=argparse.BooleanOptionalAction, default=None,
                   help="also fit, compare and backtest the other built-in laws the runs allow, as a check that "
                        "never enters the answer (default: when one law is named for a runs CSV)")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None,
                   help="state the extrapolation-calibrated band (a compute rollout of each fit's runs), with the "
                        "posterior predictive beside it, and score it in the backtest (default: for a runs CSV, "
                        "or fit files that carry a calibration)")
    p.add_argument("--pool", metavar="COLUMN",
                   help="fit each law partially pooled over the groups of COLUMN (with --vary and --group)")
    p.add_argument("--vary", metavar="PARAMS", help="with --pool: comma-separated parameters that vary by group")
    p.add_argument("--offsets", choices=["auto", "centred", "non-centred", "marginal"], default="auto",
                   help="with --pool: the group offsets' form (as for fit)")
    p.add_argument("--group", metavar="LEVEL",
                   help="for fits pooled over groups (--pool, or pooled fit files): the group the memo answers "
                        "for, or 'new' for a group not in the data")
    add_sampler_options(p)
    add_strict(p, "a fit behind the answer failed the diagnostics gate (the memo is still written)")
    add_json(p)
    p.set_defaults(func=run_memo)


def _inputs(args):
    from ..errors import BayescaleError
    from ..result import load_fit

    fit_files = [x for x in args.inputs if str(x).endswith(".nc")]
    if fit_files:
        if len(fit_files) != len(args.inputs):
            raise BayescaleError("give either one runs CSV (with --laws) or fit files (.nc), not both")
        if args.laws or args.noise:
            raise BayescaleError("--laws and --noise are for a runs CSV; saved fits already have theirs")
        return None, [load_fit(x) for x in fit_files]
    if len(args.inputs) != 1:
        raise BayescaleError(f"give one runs CSV (got {len(args.inputs)} files), or fit files ending in .nc")
    return args.inputs[0], None


def command_line(args, prog: str = "bayescale") -> str:
    argv = getattr(args, "argv", None)
    if argv is None:
        argv = sys.argv[1:]
    return " ".join([prog] + [shlex.quote(str(a)) for a in argv])


def run_memo(args) -> int:
    from ..errors import BayescaleError
    from ..memo import build_memo, check_out_dir, write_memo
    from ..runs import parse_mapping
    from .predict import parse_assignments

    out = check_out_dir(args.out, args.force)
    plan = parse_assignments(args.plan, "--plan") if args.plan else None
    if args.budget is None and plan is None:
        raise BayescaleError("memo needs a question: --budget FLOPS and/or --plan N=..,D=..")
    runs, fits = _inputs(args)
    laws = args.laws or "chinchilla"
    memo = build_memo(
        runs, laws if fits is None else (), fits=fits, budget=args.budget, plan=plan, target=args.target,
        noise=args.noise, mapping=parse_mapping(args.map) or None, backtest=not args.no_backtest,
        holdout_top=args.holdout_top or ("20%" if not (args.holdout or args.split_column) else None),
        holdout=args.holdout, split_column=args.split_column, by=args.by, utility=args.utility, q=args.q,
        reloo=args.reloo, title=args.title, command=command_line(args), progress=args.progress,
        law_check="auto" if args.law_check is None else args.law_check,
        calibrate="auto" if args.calibrate is None else args.calibrate, group=args.group, pool=args.pool,
        vary=[v.strip() for v in args.vary.split(",") if v.strip()] if args.vary else None, offsets=args.offsets,
        **sampler_settings(args))
    paths = write_memo(memo, out, force=args.force)
    return report(args, memo, paths)


def report(args, memo, paths, **extra) -> int:
    """Print the memo's headline and the files written (JSON: the whole memo); warn on failed diagnostics."""
    failed = ", ".join(c.name + ("" if c.role == "answer" else f" ({c.role})") for c in memo.diagnostics.failed)
    if memo.failed:
        print(f"warning: diagnostics FAILED for {failed}; the memo carries the failure banner", file=sys.stderr)
    elif failed:
        print(f"warning: supporting fits failed the diagnostics gate ({failed}); the fits behind the answer pass, "
              "and the memo says which rows are unreliable", file=sys.stderr)
    files = {"markdown": str(paths["markdown"]), "html": str(paths["html"]), "json": str(paths["json"]),
             "figures": [str(p) for p in paths["figures"]], "fits": [str(p) for p in paths["fits"]]}
    text = "\n".join([str(memo), "",
                      f"wrote {files['markdown']} and {files['html']} (open it in a browser; no network needed)",
                      f"wrote {len(files['figures'])} figures and {len(files['fits'])} fits "
                      f"({files['fits'][0] if files['fits'] else ''} ...)"])
    emit(args, {**extra, "files": files, "memo": memo.as_dict()}, text)
    return gate_status(args, memo.failed)
