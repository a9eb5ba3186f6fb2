"""Helpers shared by the command modules: ``--json``, output, fit reports, paths.

Command modules use :func:`add_json` on every parser they create and write
their result with :func:`emit` (one JSON object with ``--json``, text
otherwise).  :func:`fit_report` / :func:`fit_text` are the one place where a
:class:`~bayescale.result.Fit` becomes CLI output, so ``fit``, ``summary``
and ``demo`` print the same thing.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

from ..errors import FitFileError, PriorError

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED_GATE", "add_json", "add_strict", "check_out_path", "emit", "emit_error",
           "fit_report", "fit_text", "gate_status", "jsonable", "parse_prior_options", "prior_on", "short_citation"]

#: Exit status of bad input (a BayescaleError or a usage error).
EXIT_BAD_INPUT = 2
#: Exit status under ``--strict`` when a fit failed the diagnostics gate (the output is still written).
EXIT_FAILED_GATE = 3


def add_json(parser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print exactly one JSON object on stdout (and nothing else)")


def add_strict(parser, what: str = "a fit failed the diagnostics gate") -> None:
    parser.add_argument("--strict", action="store_true",
                        help=f"exit with status {EXIT_FAILED_GATE} (after writing the output) when {what}; "
                             "without it such a fit only warns and the status is 0")


def gate_status(args, failed) -> int:
    """The exit status of a command that ran: 3 under ``--strict`` when ``failed`` (a bool or the failed fits)."""
    return EXIT_FAILED_GATE if getattr(args, "strict", False) and failed else 0


def jsonable(obj):
    """``obj`` with numpy scalars/arrays made plain and NaN/inf made ``None``."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalar / array
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def emit(args, data: dict, text: str) -> None:
    """Write a command's result: ``data`` as JSON with ``--json``, else ``text``."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(jsonable(data), allow_nan=False) + "\n")
    else:
        sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()


def emit_error(args, exc: BaseException) -> None:
    message = " ".join(str(exc).split())  # one line, whatever the exception text holds
    print(f"error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps({"error": {"type": type(exc).__name__, "message": message}}) + "\n")
        sys.stdout.flush()


def check_out_path(path, force: bool) -> Path | None:
    """Fail fast (before any fitting) if ``path`` cannot be written: a directory, an existing file
    without ``force``, a missing or unwritable folder."""
    from ..storage.atomic import check_writable

    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise FitFileError(f"--out {str(path)!r} is a directory; give a file name such as fit.nc")
    if (path.exists() or path.is_symlink()) and not force:
        raise FitFileError(f"--out {str(path)!r} exists; pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FitFileError(f"--out {str(path)!r}: directory {str(parent)!r} does not exist")
    problem = check_writable(path)
    if problem:
        raise FitFileError(f"--out {str(path)!r}: cannot write in directory {str(parent)!r} ({problem})")
    return path


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_prior_options(items) -> dict[str, str]:
    """``["alpha=Uniform(0.05, 1)", ...]`` -> ``{"alpha": "Uniform(0.05, 1)"}``.

    Splits each entry on its first ``=``; the prior text itself is checked
    later, when the law is compiled.
    """
    priors: dict[str, str] = {}
    for item in items or []:
        name, sep, text = str(item).partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name or not text:
            raise PriorError(f"--prior {item!r} must look like name=Family(args), "
                             f"e.g. --prior \"alpha=Uniform(0.05, 1)\"")
        if not _IDENT.match(name):
            raise PriorError(f"--prior {item!r}: {name!r} is not a parameter name "
                             "(letters, digits and _, not starting with a digit)")
        if name in priors:
            raise PriorError(f"--prior for {name!r} given twice ({priors[name]!r} and {text!r})")
        priors[name] = text
    return priors


_AUTHOR = re.compile(r"^(?:[A-Z][a-z]?\.[\s-]?)+\s*([A-Z][\w'-]+(?:\s[A-Z][\w'-]+)*)$")


def short_citation(citation: str, arxiv: bool = False) -> str:
    """``"J. Hoffmann, S. Borgeaud, ..., arXiv:2203.15556 (NeurIPS 2022)"`` -> ``"Hoffmann et al. 2022"``
    (``"Hoffmann et al. 2022, arXiv:2203.15556"`` with ``arxiv=True``).

    One entry per ``;``-separated reference; falls back to the text itself.
    """
    out = []
    for ref in (r.strip() for r in citation.split(";")):
        if not ref:
            continue
        pieces = [p.strip() for p in ref.split(",")]
        authors = []
        for p in pieces:
            if p.startswith("et al"):
                authors.append("et al.")
                break
            etal = p.endswith(" et al.")
            m = _AUTHOR.match(p[: -len(" et al.")] if etal else p)
            if not m:
                break
            authors.append(m.group(1))
            if etal:
                authors.append("et al.")
                break
        years = re.findall(r"\b(19\d\d|20\d\d)\b", ref)
        year = years[-1] if years else ""
        if not authors:
            out.append(ref)
            continue
        name = authors[0] if len(authors) == 1 else f"{authors[0]} et al."
        if len(authors) == 2 and authors[1] != "et al.":
            name = f"{authors[0]} and {authors[1]}"
        ids = re.findall(r"arXiv:\s*(\d{4}\.\d{4,5})", ref)
        tail = f", arXiv:{ids[0]}" if arxiv and ids else ""
        out.append(f"{name} {year}".strip() + tail)
    return "; ".join(out)


def prior_on(p) -> str:
    """What a parameter's prior is on: ``"E"``, ``"E / loss_ref"``, ``"A / (loss_ref * N_ref**alpha)"``."""
    if p.scale is None:
        return p.name
    scale = str(p.scale)
    return f"{p.name} / {scale}" if scale.isidentifier() else f"{p.name} / ({scale})"


def fit_report(fit, wall_s: float | None = None, **extra) -> dict:
    """The JSON form of a fit's summary (``fit``, ``summary``, ``demo``)."""
    table = fit.summary()
    params = {name: {col: float(row[col]) for col in table.columns} for name, row in table.iterrows()}
    timings = dict(fit.timings or {})
    report = {
        "law": fit.law.name, "title": fit.law.title, "formula": str(fit.law.formula),
        "card_hash": fit.card_hash, "noise": fit.noise, "runs": len(fit.runs),
        "runs_source": fit.runs.source, "interval": "q5..q95 is the 90% central posterior interval",
        "params": params, "divergences": fit.diagnostics.divergences,
        "diagnostics": fit.diagnostics.as_dict(), "settings": dict(fit.settings),
        "wall_s": wall_s if wall_s is not None else timings.get("total_s"), "timings": timings,
    }
    if fit.structure is not None:
        report["structure"] = {k: v for k, v in fit.structure.as_dict().items() if k != "run_ids"}
    if fit.calibration is not None:
        report["calibration"] = {k: v for k, v in fit.calibration.as_dict().items()
                                 if k not in ("s1_grid", "s1_weights")}
    if fit.pooling is not None:
        report["pooling"] = {k: v for k, v in fit.pooling.as_dict().items() if k != "index"}
    report.update(extra)
    return report


def _structure_line(s) -> str:
    parts = []
    if s.run is not None:
        parts.append(f"run column {s.run!r}: {s.n_runs} runs, checkpoints {s.checkpoints} "
                     f"({s.rows_kept} of {s.rows_given} rows kept)")
    parts += [f"group column {g!r}: {n} groups" for g, n in s.n_groups.items()]
    return "; ".join(parts)


def fit_text(fit, wall_s: float | None = None) -> str:
    """The human-readable form of :func:`fit_report`."""
    from ..result import notes

    table = fit.summary().rename(columns={"q5": "5%", "q95": "95%"})
    law = fit.law
    s = fit.settings
    lines = [
        f"law: {law.name}   {law.response.name} = {law.formula}",
        f"noise: {fit.noise}   runs: {len(fit.runs)} ({fit.runs.source})   "
        f"chains: {s.get('chains')} x {s.get('draws')} draws after {s.get('warmup')} warm-up",
        *([_structure_line(fit.structure)] if fit.structure is not None else []),
        "",
        table.to_string(float_format=lambda v: f"{v:.4g}"),
        "(5%..95% is the 90% central posterior interval)",
        "",
        str(fit.diagnostics),
    ]
    if fit.calibration is not None:
        c = fit.calibration
        lines += ["", f"{c.label}", f"  from {c.source}; raw 50%/90% predictive coverage of those runs "
                  f"{c.raw_coverage.get(0.5, float('nan')):.2f}/{c.raw_coverage.get(0.9, float('nan')):.2f}"]
        lines += [f"  note: {n}" for n in c.notes]
    lines += notes(fit)
    t = fit.timings or {}
    wall = wall_s if wall_s is not None else t.get("total_s")
    if wall is not None:
        detail = []
        if "compile_s" in t:
            detail.append(f"compile {t['compile_s']:.1f} s")
        if "sampling_s" in t:
            detail.append(f"sampling {t['sampling_s']:.1f} s")
        if "gradients_sampling" in t:
            detail.append(f"{t['gradients_sampling']} gradients")
        lines.append(f"wall time {wall:.1f} s" + (f" ({', '.join(detail)})" if detail else ""))
    return "\n".join(lines)
