"""Model comparison and backtest commands: ``compare``, ``backtest``.

::

    bayescale compare runs.csv --laws chinchilla,kaplan --noise student_t_log [--json] [--plot loo.png]
    bayescale compare runs.csv --laws chinchilla --noise student_t_log,normal_raw
    bayescale compare fit_a.nc fit_b.nc [--json]
    bayescale backtest runs.csv --law chinchilla --holdout "C>=1e21" [--json] [--plot bt.png]
    bayescale backtest runs.csv --law chinchilla,kaplan --holdout-top 20% --by C
    bayescale backtest curve.csv --law power_law_constant,bnsl1 --split-column split --map x=size
    bayescale backtest runs.csv --law chinchilla --rollout 3 --by C
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from ..errors import BayescaleError
from ._common import add_json, add_strict, emit, gate_status

__all__ = ["register"]

_PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def _sampler_options(p, chains: int, warmup: int, draws: int) -> None:
    p.add_argument("--map", action="extend", nargs="+", default=[], metavar="NAME=COLUMN",
                   help="use a differently named column, e.g. --map loss=val_loss x=params")
    p.add_argument("--chains", type=int, default=chains, help=f"NUTS chains per fit (default {chains})")
    p.add_argument("--warmup", type=int, default=warmup, help=f"warm-up iterations per chain (default {warmup})")
    p.add_argument("--draws", type=int, default=draws, help=f"draws per chain (default {draws})")
    p.add_argument("--seed", type=int, default=0, help="random seed of every fit")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress of every fit on stderr: a bar with an ETA on a terminal, plain log lines "
                        "otherwise (default on)")
    p.add_argument("--plot", metavar="PATH", help="also save the figure (.png, .pdf or .svg)")
    p.add_argument("--force", action="store_true", help="overwrite --plot if it exists")
    add_strict(p, "a fit failed the diagnostics gate")
    add_json(p)


def register(subparsers) -> None:
    from ..noise import NOISE_MODELS

    noises = ", ".join(NOISE_MODELS)
    p = subparsers.add_parser(
        "compare", help="compare laws or noise models on the same runs by PSIS-LOO (and stacking weights)",
        description="Compare fits of the same runs by PSIS-LOO: elpd_loo with its SE, the difference to "
                    "the best with its SE, p_loo, stacking weights, Pareto-k diagnostics (WAIC as a "
                    "secondary check). Give one runs CSV with --laws (every law x noise pair is fitted), "
                    "or two or more saved fits (.nc).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            examples:
              bayescale compare runs.csv --laws chinchilla,kaplan --noise student_t_log
              bayescale compare runs.csv --laws chinchilla --noise student_t_log,normal_raw
              bayescale compare fit_a.nc fit_b.nc --json
            """))
    p.add_argument("inputs", nargs="+", metavar="RUNS_OR_FITS",
                   help="a runs CSV (with --laws) or two or more fit files from `bayescale fit --out`")
    p.add_argument("--laws", help="comma-separated built-in law names, e.g. chinchilla,kaplan")
    p.add_argument("--noise", help=f"comma-separated noise models (default: each card's); one of {noises}")
    p.add_argument("--names", help="comma-separated names for the fits (default: law names)")
    p.add_argument("--reloo", action=argparse.BooleanOptionalAction, default=None,
                   help="exact leave-one-out refits for runs with Pareto k > 0.7 (default: when a fit "
                        "has at most 5 such runs)")
    p.add_argument("--leave-out", dest="leave_out", metavar="run|group|COLUMN",
                   help="leave out one whole training run (run column) or group at a time instead of one row "
                        "(fit files made with --run / --group)")
    _sampler_options(p, chains=4, warmup=1000, draws=1000)
    p.set_defaults(func=run_compare)

    p = subparsers.add_parser(
        "backtest", help="hold out the largest runs, fit on the rest, score the predictions",
        description="Held-out extrapolation backtest: fit each law on the runs not held out and score its "
                    "predictions of the held-out runs (absolute relative error of the predictive median, "
                    "coverage and width of the 50% and 90% predictive intervals, log predictive density).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            examples:
              bayescale backtest runs.csv --law chinchilla --holdout "C>=1e21"
              bayescale backtest runs.csv --law chinchilla,kaplan --holdout-top 20% --by C
              bayescale backtest curve.csv --law power_law_constant,bnsl1 --split-column split \\
                  --map x=train_set_size loss=test_cross_entropy
              bayescale backtest runs.csv --law chinchilla --rollout 3 --by C
              bayescale backtest curves.csv --law chinchilla --rollout-compute 4 --run model
              bayescale backtest runs.csv --law chinchilla --split-column train --pool family --vary L_c
            """))
    p.add_argument("runs", help="CSV file with one row per training run")
    p.add_argument("--law", "--laws", dest="laws", required=True,
                   help="built-in law name(s), comma-separated: each is backtested on the same split")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--holdout", metavar="EXPR", help='hold out runs matching "<column> <op> <number>", '
                                                       'e.g. "C>=1e21" (op: >=, >, <=, <, ==, !=)')
    how.add_argument("--holdout-top", metavar="FRACTION", help="hold out the top fraction by --by, e.g. 20%% or 0.2")
    how.add_argument("--split-column", metavar="COLUMN",
                     help="a column marking training runs: 1/0, True/False or labels such as fit/extrapolate")
    how.add_argument("--rollout", type=int, metavar="K",
                     help="expanding-window backtest: K windows over --by, each fitted on the runs below it")
    how.add_argument("--rollout-compute", metavar="F",
                     help="compute rollout: fit rows with C < C_max / F, score each truncated run's final loss "
                          "(comma-separated factors for several windows, e.g. 2,4)")
    p.add_argument("--by", default="C", help="column for --holdout-top and --rollout (default C)")
    p.add_argument("--train-value", help="the --split-column label of training runs, when not recognisable")
    p.add_argument("--group", help="comma-separated columns: backtest each group (learning curve) separately")
    p.add_argument("--pool", metavar="COLUMN",
                   help="fit one model partially pooled over the groups of COLUMN (with --vary); a held-out run "
                        "is predicted by its group's fit, or as a new group's when its group has no training runs")
    p.add_argument("--vary", metavar="PARAMS", help="with --pool: comma-separated parameters that vary by group")
    p.add_argument("--offsets", choices=["auto", "centred", "non-centred", "marginal"], default="auto",
                   help="with --pool: the group offsets' form (as for fit)")
    p.add_argument("--run", metavar="COLUMN",
                   help="with --rollout-compute: the column naming each row's training run (checkpoint data)")
    p.add_argument("--noise", choices=list(NOISE_MODELS), help="noise model (default: each card's)")
    p.add_argument("--law-check", action=argparse.BooleanOptionalAction, default=None,
                   help="also backtest the other built-in laws the runs allow, on the same split, and say whether "
                        "one is clearly better (default: when one law is named, for --holdout, --holdout-top "
                        "and --split-column)")
    _sampler_options(p, chains=4, warmup=1000, draws=1000)
    p.set_defaults(func=run_backtest)


def _list(text) -> list[str] | None:
    if text is None:
        return None
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _plot_path(path, force: bool = False) -> Path | None:
    """Fail fast (before any fitting) unless ``path`` can be written: a known suffix, a parent folder,
    and no existing file unless ``force``."""
    from ..errors import BayescaleError, FitFileError

    if path is None:
        return None
    path = Path(path)
    if path.suffix.lower() not in _PLOT_SUFFIXES:
        raise BayescaleError(f"--plot {str(path)!r}: use a file name ending in {', '.join(_PLOT_SUFFIXES)}")
    if path.is_dir():
        raise FitFileError(f"--plot {str(path)!r} is a directory; give a file name such as loo.png")
    if path.exists() and not force:
        raise FitFileError(f"--plot {str(path)!r} exists; pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise BayescaleError(f"--plot {str(path)!r}: directory {str(parent)!r} does not exist")
    return path


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=120)
    from ..plots._style import pyplot

    pyplot().close(fig)


def _fits_for_compare(args):
    from ..errors import BayescaleError
    from ..fitting import fit
    from ..result import load_fit
    from ..runs import parse_mapping

    laws, noises = _list(args.laws), _list(args.noise)
    fit_files = [p for p in args.inputs if p.endswith(".nc")]
    if fit_files and len(fit_files) != len(args.inputs):
        raise BayescaleError("give either one runs CSV (with --laws) or fit files (.nc), not both")
    if fit_files:
        if laws or noises:
            raise BayescaleError("--laws and --noise are for a runs CSV; saved fits already have theirs")
        if len(fit_files) < 2:
            raise BayescaleError(f"compare needs at least two fit files, got {len(fit_files)}")
        return [load_fit(p) for p in fit_files]
    if len(args.inputs) != 1:
        raise BayescaleError(f"give one runs CSV (got {len(args.inputs)} files), or fit files ending in .nc")
    if not laws:
        raise BayescaleError("--laws is required with a runs CSV, e.g. --laws chinchilla,kaplan")
    from ..noise import NOISE_MODELS

    for n in noises or []:
        if n not in NOISE_MODELS:
            raise BayescaleError(f"--noise {n!r} is not a noise model; choose from {', '.join(NOISE_MODELS)}")
    pairs = [(law, noise) for law in laws for noise in (noises or [None])]
    if len(pairs) < 2:
        raise BayescaleError("compare needs at least two fits: give several --laws or several --noise models "
                             "(comma-separated)")
    mapping = parse_mapping(args.map)
    return [fit(args.inputs[0], law, noise=noise, mapping=mapping, chains=args.chains, warmup=args.warmup,
                draws=args.draws, seed=args.seed, progress=args.progress) for law, noise in pairs]


def _emit_with_plot(args, result, plot, plotter: str) -> None:
    """Write a comparison/backtest result, with its figure saved to ``plot`` when asked."""
    data = result.as_dict()
    text = str(result)
    if plot is not None:
        from ..plots import compare as figures

        _save(getattr(figures, plotter)(result), plot)
        data["plot"] = str(plot)
        text += f"\nplot: {plot}"
    emit(args, data, text)


def run_compare(args) -> int:
    from ..compare import compare

    plot = _plot_path(args.plot, args.force)
    fits = _fits_for_compare(args)
    result = compare(fits, names=_list(args.names), reloo=args.reloo, by=args.leave_out)
    _emit_with_plot(args, result, plot, "plot_compare")
    return gate_status(args, [f for f in fits if not f.diagnostics.passed])


def _numbers_list(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise BayescaleError(f"{what} must be comma-separated numbers, e.g. 4 or 2,4; got {text!r}") from None


def run_backtest(args) -> int:
    from ..backtest import backtest, rollout
    from ..runs import parse_mapping

    plot = _plot_path(args.plot, args.force)
    laws = _list(args.laws)
    settings = dict(noise=args.noise, mapping=parse_mapping(args.map), chains=args.chains,
                    warmup=args.warmup, draws=args.draws, seed=args.seed, progress=args.progress)
    if args.run is not None and args.rollout_compute is None:
        raise BayescaleError("--run is only used with --rollout-compute (other backtests hold out rows)")
    rolling = args.rollout_compute is not None or args.rollout is not None
    if args.law_check and rolling:
        raise BayescaleError("--law-check is for --holdout, --holdout-top and --split-column backtests")
    pooled = args.pool is not None or args.vary is not None
    if pooled and rolling:
        raise BayescaleError("--pool/--vary are for --holdout, --holdout-top and --split-column backtests")
    law_check = (len(laws) == 1 and not rolling and not pooled) if args.law_check is None else args.law_check
    if args.rollout_compute is not None:
        from ..evidence.rollout import rollout_compute

        factors = _numbers_list(args.rollout_compute, "--rollout-compute")
        result = rollout_compute(args.runs, laws, factors, run=args.run, **settings)
    elif args.rollout is not None:
        result = rollout(args.runs, laws, by=args.by, k=args.rollout, **settings)
    else:
        result = backtest(args.runs, laws, holdout=args.holdout, holdout_top=args.holdout_top, by=args.by,
                          split_column=args.split_column, train_value=args.train_value,
                          group=_list(args.group), law_check=law_check, pool=args.pool, vary=_list(args.vary),
                          offsets=args.offsets, **settings)
    _emit_with_plot(args, result, plot, "plot_backtest")
    return gate_status(args, int(result.summary["fits_failed_gate"].sum()) > 0)
