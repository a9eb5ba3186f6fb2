"""Core commands: ``laws``, ``show``, ``fit``, ``summary``.

::

    bayescale laws [--markdown] [--json]
    bayescale show chinchilla [--json]          # or: bayescale show --card my_law.toml
    bayescale fit runs.csv --law chinchilla [--out fit.nc] [--json]
    bayescale fit runs.csv --formula "E + A / N**alpha" \\
        --prior "E=LogNormal(0, 1)" --prior "A=LogNormal(5, 3)" --prior "alpha=Uniform(0.05, 1)"
    bayescale summary fit.nc [--json]
"""

from __future__ import annotations

import argparse
import textwrap
import time

from ._common import (add_json, add_strict, check_out_path, emit, fit_report, fit_text, gate_status,
                      parse_prior_options, prior_on, short_citation)

__all__ = ["law_info", "laws_markdown", "register"]


def register(subparsers) -> None:
    p = subparsers.add_parser("laws", help="list the built-in law cards",
                              description="The catalogue of built-in law cards.")
    p.add_argument("--markdown", action="store_true",
                   help="print the catalogue as the Markdown table used in README.md")
    add_json(p)
    p.set_defaults(func=run_laws)

    p = subparsers.add_parser("show", help="show one law card: formula, inputs, priors, noise, citation",
                              description="Show one law card in full.")
    p.add_argument("law", nargs="?", help="a built-in law name (see `bayescale laws`)")
    p.add_argument("--card", metavar="PATH", help="a law card TOML file instead of a built-in name")
    p.add_argument("--prior", action="append", default=[], metavar="NAME=PRIOR",
                   help="show the card with this prior replaced, as `fit --prior` would use it")
    add_json(p)
    p.set_defaults(func=run_show)

    p = subparsers.add_parser(
        "fit", help="fit a law to a runs table with NUTS",
        description="Fit a scaling law to a runs table (CSV) with NUTS and print the posterior "
                    "summary and the diagnostics verdict.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            examples:
              bayescale fit runs.csv --law chinchilla --out fit.nc
              bayescale fit curves.csv --law chinchilla --run model --checkpoints logspaced:8
              bayescale fit runs.csv --law chinchilla --group family --vary E,A --out fit.nc
              bayescale fit runs.csv --law chinchilla --map loss=val_loss --map N=params
              bayescale fit curves.csv --law power_law_constant --map x="Seen Examples" loss=Loss \\
                  --by Domain Task Model --out fits.nc      # one independent fit per group, batched
              bayescale fit runs.csv --formula "E + A / N**alpha" \\
                  --prior "E=LogNormal(0, 1)" --prior "A=LogNormal(5, 3)" --prior "alpha=Uniform(0.05, 1)"
            """))
    p.add_argument("runs", help="CSV file with one row per training run")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--law", help="a built-in law name (see `bayescale laws`)")
    which.add_argument("--formula", help='your own law, e.g. "E + A / N**alpha" (N, D, C, U, M, x '
                                         'are inputs; every other name is a parameter needing --prior)')
    which.add_argument("--card", metavar="PATH", help="a law card TOML file")
    p.add_argument("--prior", action="append", default=[], metavar="NAME=PRIOR",
                   help='prior for a parameter, e.g. "alpha=Uniform(0.05, 1)" (repeat per parameter): every '
                        'parameter of a --formula needs one; with --law or --card it replaces that card prior '
                        '(on the same quantity: `bayescale show` says what each prior is on)')
    p.add_argument("--reference", action="append", default=[], metavar="NAME=VALUE",
                   help="fix a reference point the priors are scaled by, e.g. loss=3.0 or N=1e8 "
                        "(default: the geometric mean of that column over the runs)")
    p.add_argument("--no-retry", dest="retry", action="store_false",
                   help="do not refit once with more effort when the fit fails the diagnostics gate")
    from ..noise import NOISE_MODELS

    p.add_argument("--noise", choices=list(NOISE_MODELS),
                   help="noise model (default: the card's; " + "; ".join(
                       f"{k}: {v}" for k, v in NOISE_MODELS.items()) + ")")
    p.add_argument("--map", action="extend", nargs="+", default=[], metavar="NAME=COLUMN",
                   help="use a differently named column, e.g. --map loss=val_loss N=params")
    p.add_argument("--run", metavar="COLUMN",
                   help="column naming the training run of each row (rows = checkpoints of that run)")
    p.add_argument("--group", metavar="COLUMNS", help="comma-separated columns of run groups (family, data mix, ...)")
    p.add_argument("--vary", metavar="PARAMS",
                   help="comma-separated law parameters that differ between the groups of --group (one column), "
                        "partially pooled; the others are shared (e.g. --vary E,A --group family)")
    p.add_argument("--run-effects", action="store_true",
                   help="with --run: each run's loss level gets its own offset (log scale, integrated out; Normal "
                        "noise on log loss); needs runs that repeat a configuration, e.g. seeds")
    p.add_argument("--offsets", choices=["auto", "centred", "non-centred", "marginal"], default="auto",
                   help="with --vary: the group offsets' form (marginal: integrated out; one varying parameter the "
                        "loss is proportional to, L_c, and --noise normal_log)")
    p.add_argument("--checkpoints", default="all", metavar="all|final|logspaced:K",
                   help="with --run: fit every checkpoint (default), each run's final one, or K log-spaced per run")
    p.add_argument("--calibrate", action="store_true",
                   help="after the fit, learn a calibrated predictive band from a compute rollout of the same rows "
                        "(refits the law once per --rollout-factors) and store it in the fit")
    p.add_argument("--calibration", choices=["discrepancy", "inflation"], default="discrepancy",
                   help="with --calibrate: discrepancy sd = s1 * log(extrapolation) (default) or a conformal factor k")
    p.add_argument("--rollout-factors", default="2,4", metavar="F,F",
                   help="with --calibrate: compute-rollout factors (default 2,4)")
    p.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    p.add_argument("--warmup", type=int, default=1000, help="warm-up iterations per chain (default 1000)")
    p.add_argument("--draws", type=int, default=1000, help="draws per chain after warm-up (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same draws)")
    p.add_argument("--target-accept", type=float, default=0.8, help="NUTS target acceptance (default 0.8)")
    p.add_argument("--max-tree-depth", type=int, default=10, help="NUTS maximum tree depth (default 10)")
    p.add_argument("--by", nargs="+", metavar="COLUMN",
                   help="fit every group of rows (one value of these columns) independently, all in one batched "
                        "program (bayescale.fit_many, lockstep HMC)")
    p.add_argument("--steps", type=int, default=None,
                   help="with --by: mean leapfrog steps per iteration of the batch sampler (default 8)")
    p.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                   help="with --by: where the batch runs (default auto: a GPU if JAX sees one)")
    p.add_argument("--out", metavar="PATH", help="save the fit to this NetCDF file (e.g. fit.nc); with --by, a file "
                                                 "(fits.nc: the whole set) or a folder (fits/: one fit file per group "
                                                 "and summary.csv)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress on stderr: a bar with an ETA on a terminal, plain log lines otherwise "
                        "(default on)")
    add_strict(p, "the fit failed the diagnostics gate")
    add_json(p)
    p.set_defaults(func=run_fit)

    p = subparsers.add_parser("summary", help="summarise a saved fit (NetCDF from fit --out)",
                              description="Print the posterior summary and diagnostics of a saved fit.")
    p.add_argument("fit", help="a fit file written by `bayescale fit --out`")
    add_strict(p, "the fit failed the diagnostics gate")
    add_json(p)
    p.set_defaults(func=run_summary)


# --------------------------------------------------------------------------- laws


def law_info(law) -> dict:
    """A law card as plain data (the JSON of ``show``)."""
    from ..noise import NOISE_MODELS

    roles = {law.irreducible: "irreducible"} if law.irreducible else {}
    roles.update({e: "exponent" for e in law.exponents})
    return {
        "name": law.name, "title": law.title, "source": law.source, "card_hash": law.hash,
        "roles": roles,
        "formula": str(law.formula),
        "response": {"name": law.response.name, "meaning": law.response.meaning,
                     "units": law.response.units, "scaled": law.response.scale},
        "description": law.description,
        "inputs": [{"name": i.name, "meaning": i.meaning, "units": i.units, "kind": i.kind,
                    "derive": str(i.derive) if i.derive is not None else None} for i in law.inputs],
        "let": {name: str(expr) for name, expr in law.lets},
        "params": [{"name": p.name, "prior": str(p.prior),
                    "scale": str(p.scale) if p.scale is not None else None,
                    "prior_on": prior_on(p),
                    "role": roles.get(p.name), "meaning": p.meaning, "prior_note": p.prior_note,
                    "overridden": any(n == p.name for n, _, _ in law.overridden)}
                   for p in law.params],
        "derived": {name: str(expr) for name, expr in law.derived},
        "natural_params": list(law.param_names),
        "priors_overridden": [{"name": n, "card": old, "used": new} for n, old, new in law.overridden],
        "noise": law.noise, "noise_description": NOISE_MODELS[law.noise],
        "sigma_prior": str(law.sigma_prior),
        "cost": f"C = {law.cost}" if law.cost is not None else None,
        "citation": law.citation, "citation_short": short_citation(law.citation),
    }


def _catalogue() -> list[dict]:
    from ..cards import list_laws, load_law

    return [law_info(load_law(name)) for name in list_laws()]


def laws_markdown(infos=None) -> str:
    """The catalogue as a Markdown table (README.md holds this text verbatim)."""
    infos = _catalogue() if infos is None else infos
    lines = ["| law | what | formula | inputs | noise | source |", "|---|---|---|---|---|---|"]
    for i in infos:
        inputs = ", ".join(x["name"] for x in i["inputs"])
        formula = f"{i['response']['name']} = {i['formula']}".replace("|", "\\|")
        cite = short_citation(i["citation"], arxiv=True)
        lines.append(f"| `{i['name']}` | {i['title']} | `{formula}` | {inputs} | {i['noise']} | {cite} |")
    return "\n".join(lines)


def run_laws(args) -> int:
    infos = _catalogue()
    if args.markdown and not args.json:
        emit(args, {}, laws_markdown(infos))
        return 0
    width = max(len(i["name"]) for i in infos)
    lines = []
    for i in infos:
        inputs = ", ".join(x["name"] for x in i["inputs"])
        lines.append(f"{i['name']:<{width}}  {i['response']['name']} = {i['formula']}")
        lines.append(f"{'':<{width}}  inputs: {inputs}   cite: {i['citation_short']}")
    lines.append("")
    lines.append("`bayescale show <law>` prints a card in full (priors, noise model, citation).")
    emit(args, {"laws": infos}, "\n".join(lines))
    return 0


# --------------------------------------------------------------------------- show


def _wrap(text: str, indent: str, first: str | None = None, width: int = 96) -> str:
    return textwrap.fill(" ".join(text.split()), width=width,
                         initial_indent=indent if first is None else first, subsequent_indent=indent)


def show_text(info: dict) -> str:
    out = [f"{info['name']}: {info['title']}", ""]
    out.append(f"formula:  {info['response']['name']} = {info['formula']}")
    for name, expr in info["let"].items():
        out.append(f"  where    {name} = {expr}")
    resp = info["response"]
    out.append(f"response: {resp['name']} ({resp['meaning']}{', ' + resp['units'] if resp['units'] else ''})")
    if info["description"]:
        out += ["", _wrap(info["description"], "")]
    out += ["", "inputs:"]
    w = max(len(x["name"]) for x in info["inputs"])
    for x in info["inputs"]:
        line = f"  {x['name']:<{w}}  {x['meaning']}"
        if x["units"]:
            line += f" [{x['units']}]"
        if x["derive"]:
            line += f"; if missing, derived as {x['name']} = {x['derive']}"
        out.append(line)
    head = "sampled parameters (NUTS samples these, with these priors)" if info["derived"] else "parameters"
    out += ["", head + ":", _wrap(
        "A prior with a scale is on the dimensionless value / scale. Reference points: <input>_ref is the "
        "geometric mean of that input over the runs (<input>_min and <input>_max its smallest and largest "
        "value); loss_ref is the geometric mean of the observed "
        "response, an empirical-Bayes choice that the fit records (fix it with --reference loss=VALUE, "
        "Python reference={'loss': VALUE}).", "  ")]
    w = max(len(p["name"]) for p in info["params"])
    for p in info["params"]:
        role = f"  ({p['role']})" if p["role"] else ""
        out.append(f"  {p['name']:<{w}}  {p['meaning']}{role}")
        on = f" on {p['prior_on']}" if p["scale"] else ""
        changed = " (overridden; the card's prior is " + next(
            o["card"] for o in info["priors_overridden"] if o["name"] == p["name"]) + ")" if p["overridden"] else ""
        out.append(f"  {'':<{w}}  prior: {p['prior']}{on}{changed}")
        if p["prior_note"]:
            pad = "  " + " " * w + "  "
            out.append(_wrap(p["prior_note"], pad + "      ", first=pad + "note: "))
    if info["derived"]:
        out += ["", "natural parameters (reported; their priors follow from the sampled parameters' priors):"]
        w = max(len(name) for name in info["derived"])
        for name, expr in info["derived"].items():
            role = f"  ({info['roles'][name]})" if name in info["roles"] else ""
            out.append(f"  {name:<{w}} = {expr}{role}")
    sigma_note = next((f" (overridden; the card's prior is {o['card']})" for o in info["priors_overridden"]
                       if o["name"] == "sigma"), "")
    out += ["", f"noise:    {info['noise']} ({info['noise_description']}); sigma ~ {info['sigma_prior']}{sigma_note}"]
    out.append(f"cost:     {info['cost'] or 'none (the law has no compute cost: it does not use both N and D)'}")
    if info["citation"]:
        out.append(_wrap(info["citation"], " " * 10, first="citation: "))
    out.append(f"source:   {info['source']} (card hash {info['card_hash']})")
    return "\n".join(out)


def run_show(args) -> int:
    from ..cards import law_from_file, load_law, with_priors
    from ..errors import BayescaleError

    if (args.law is None) == (args.card is None):
        raise BayescaleError("show needs a law name or --card PATH (one of them); "
                             "`bayescale laws` lists the built-in laws")
    law = load_law(args.law) if args.law is not None else law_from_file(args.card)
    if args.prior:
        law = with_priors(law, parse_prior_options(args.prior))
    info = law_info(law)
    emit(args, info, show_text(info))
    return 0


# --------------------------------------------------------------------------- fit, summary


def run_fit(args) -> int:
    from ..errors import BayescaleError
    from ..fitting import fit
    from ..runs import parse_mapping

    if args.by:
        return run_fit_many(args)
    if args.steps is not None or args.device != "auto":
        raise BayescaleError("--steps and --device are for the batch of --by; a single fit runs NUTS")
    out = check_out_path(args.out, args.force)
    priors = parse_prior_options(args.prior) if args.prior else None
    reference = parse_reference_options(args.reference) if args.reference else None
    mapping = parse_mapping(args.map)
    t0 = time.perf_counter()
    result = fit(args.runs, args.law, formula=args.formula, priors=priors, card=args.card,
                 noise=args.noise, mapping=mapping, chains=args.chains, warmup=args.warmup,
                 draws=args.draws, seed=args.seed, target_accept=args.target_accept,
                 max_tree_depth=args.max_tree_depth, reference=reference, retry=args.retry,
                 progress=args.progress, run=args.run, group=args.group, checkpoints=args.checkpoints,
                 vary=args.vary, offsets=args.offsets, run_effects=args.run_effects)
    if args.calibrate:
        from ..evidence.calibration import calibrate

        try:
            factors = [float(v) for v in args.rollout_factors.split(",") if v.strip()]
        except ValueError:
            raise BayescaleError(f"--rollout-factors must be numbers such as 2,4, got {args.rollout_factors!r}") from None
        result = calibrate(result, factors=factors, method=args.calibration, progress=bool(args.progress))
    elif args.calibration != "discrepancy" or args.rollout_factors != "2,4":
        raise BayescaleError("--calibration and --rollout-factors need --calibrate")
    wall = time.perf_counter() - t0
    if out is not None:
        result.save(out, force=args.force)
    text = fit_text(result, wall)
    if out is not None:
        text += f"\nsaved: {out}"
    emit(args, fit_report(result, wall, out=str(out) if out else None), text)
    return gate_status(args, not result.diagnostics.passed)


def _out_is_folder(path: str) -> bool:
    from pathlib import Path

    return path.endswith(("/", "\\")) or Path(path).is_dir() or not Path(path).suffix


def run_fit_many(args) -> int:
    """``fit --by``: one independent fit per group (:func:`bayescale.fit_many`)."""
    from pathlib import Path

    from ..errors import BayescaleError, FitFileError
    from ..inference.many import DEFAULT_STEPS, fit_many
    from ..runs import parse_mapping

    single = [flag for flag, used in (("--run", args.run), ("--group", args.group), ("--vary", args.vary),
                                      ("--run-effects", args.run_effects), ("--calibrate", args.calibrate),
                                      ("--reference", args.reference), ("--checkpoints", args.checkpoints != "all"),
                                      ("--offsets", args.offsets != "auto")) if used]
    if single:
        raise BayescaleError(f"{', '.join(single)} {'is' if len(single) == 1 else 'are'} for a single fit; with --by "
                             "every group is fitted independently (fit a group alone for run structure, pooling "
                             "or calibration)")
    folder = args.out is not None and _out_is_folder(args.out)
    if args.out is not None and not folder:
        check_out_path(args.out, args.force)
    elif folder and Path(args.out).is_dir() and any(Path(args.out).iterdir()) and not args.force:
        raise FitFileError(f"--out {args.out!r} is a folder that is not empty; pass --force to write into it")
    priors = parse_prior_options(args.prior) if args.prior else None
    t0 = time.perf_counter()
    fs = fit_many(args.runs, args.law, by=args.by, formula=args.formula, priors=priors, card=args.card,
                  noise=args.noise, mapping=parse_mapping(args.map), chains=args.chains, warmup=args.warmup,
                  draws=args.draws, seed=args.seed, target_accept=args.target_accept,
                  steps=DEFAULT_STEPS if args.steps is None else args.steps, retry=args.retry, device=args.device,
                  progress=args.progress)
    wall = time.perf_counter() - t0
    saved = None
    if args.out is not None:
        saved = str(fs.export(args.out, force=True) if folder else fs.save(args.out, force=args.force))
    table = fs.summary()
    text = str(fs) + f"\nwall time {wall:.1f} s for {len(fs.all_keys)} groups ({wall / len(fs.all_keys):.3f} s each)"
    if saved:
        text += f"\nsaved: {saved}"
    data = {"law": fs.law.name, "by": list(fs.by), "groups": len(fs.all_keys), "fitted": len(fs),
            "passed_gate": fs.passed, "not_fitted": len(fs.errors), "wall_s": wall, "timings": fs.timings,
            "settings": fs.settings, "summary": table.to_dict(orient="records"), "out": saved}
    emit(args, data, text)
    return gate_status(args, fs.passed < len(fs))


def parse_reference_options(items) -> dict[str, float]:
    """``["loss=3.0", "N=1e8"]`` -> ``{"loss": 3.0, "N": 1e8}``."""
    from ..errors import BayescaleError

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not name.strip() or number is None:
            raise BayescaleError(f"--reference {item!r} is not NAME=NUMBER (e.g. loss=3.0)")
        out[name.strip()] = number
    return out


def run_summary(args) -> int:
    from ..result import load_fit

    result = load_fit(args.fit)
    emit(args, fit_report(result, file=args.fit), fit_text(result) + f"\nfrom: {args.fit}")
    return gate_status(args, not result.diagnostics.passed)
