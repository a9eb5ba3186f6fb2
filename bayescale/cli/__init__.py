"""The ``bayescale`` command line: a thin layer over the library's functions.

Each group of commands lives in its own module under ``bayescale.cli`` and
exposes ``register(subparsers)``, which adds its sub-commands with
``subparsers.add_parser(...)`` and binds each to a function
``run(args) -> int`` through ``parser.set_defaults(func=run)``.  A command
writes its result with :func:`bayescale.cli._common.emit`, so that with
``--json`` stdout holds exactly one JSON object.

Conventions shared by every command (enforced here, in :func:`main`):

* a :class:`~bayescale.errors.BayescaleError` prints ``error: <message>`` on
  one line to stderr and exits with status 2 (with ``--json`` stdout also gets
  ``{"error": {"type": ..., "message": ...}}``);
* bayescale's warnings (:class:`~bayescale.errors.DataWarning`,
  :class:`~bayescale.errors.ConvergenceWarning`, ...) print as
  ``warning: <message>`` lines on stderr;
* a usage error (a missing or unknown argument) prints ``error: <message>``
  on one line to stderr and exits with status 2 too; with ``--json`` anywhere
  on the command line, stdout gets ``{"error": {"type": "UsageError", ...}}``;
* ``--strict`` (on the commands that fit or read fits) turns a fit that
  failed the diagnostics gate into exit status 3 (:data:`EXIT_FAILED_GATE`),
  after the command has written its output.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from ._common import EXIT_BAD_INPUT, EXIT_FAILED_GATE

__all__ = ["COMMAND_MODULES", "EXIT_BAD_INPUT", "EXIT_FAILED_GATE", "build_parser", "main"]

#: Modules (under ``bayescale.cli``) that register sub-commands, in the order
#: they appear in ``bayescale --help``.  Adding a group of commands is one line.
COMMAND_MODULES = (
    "core",     # laws, show, fit, summary
    "demo",     # demo: the whole pipeline on the simulated pilot study
    "predict",  # predict, optimal, plot
    "compare",  # compare, backtest
    "memo",     # memo
    "datasets",  # datasets list / fetch / path
)


class UsageError(Exception):
    """A command line argparse could not parse (raised instead of argparse's exit)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is raised (then reported by :func:`main`) instead of printed."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="bayescale",
        description="Bayesian neural scaling laws: fit a law card to training runs with NUTS "
                    "and read off the posterior.",
        epilog="Every command takes --json (one JSON object on stdout). "
               "Bad input exits with status 2 and a one-line 'error:' message.",
    )
    parser.add_argument("--version", action="version", version=f"bayescale {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def _bayescale_warnings() -> tuple:
    """Every warning class bayescale defines (DataWarning, ConvergenceWarning, ...)."""
    from .. import errors

    return tuple(v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Warning))


_shown: set = set()   # warning texts already printed by this command (each is printed once)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    ours = issubclass(category, UserWarning) and "bayescale" in str(filename)
    if issubclass(category, _bayescale_warnings()) or ours:
        text = " ".join(str(message).split())
        if text not in _shown:
            _shown.add(text)
            print(f"warning: {text}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line),
              end="", file=sys.stderr)


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 3 a failed gate under --strict)."""
    from ..errors import BayescaleError
    from ._common import emit_error

    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_BAD_INPUT
    except UsageError as exc:
        emit_error(argparse.Namespace(json="--json" in argv), exc)
        return EXIT_BAD_INPUT
    args.argv = argv  # recorded by memo and demo
    _shown.clear()
    with warnings.catch_warnings():
        for category in _bayescale_warnings():
            warnings.simplefilter("always", category)
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args) or 0)
        except BayescaleError as exc:
            emit_error(args, exc)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130


def run() -> None:
    """The ``bayescale`` console script: :func:`main`, then a fast exit.

    Tearing down XLA's CPU client and its device threads at interpreter exit takes ~0.4 s.
    Once the command has returned, every file it wrote is closed and only stdout and stderr
    need flushing, so the process ends with ``os._exit`` instead.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
