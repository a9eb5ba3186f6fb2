"""Typed errors and warnings.

Every error bayescale raises on bad input is a subclass of :class:`BayescaleError`
(itself a ``ValueError``), so callers can catch one type; the CLI prints the
message on one line and exits with status 2.  Messages name the argument,
column or rows at fault and say what was expected.
"""

from __future__ import annotations

__all__ = [
    "BayescaleError",
    "CacheWarning",
    "CardError",
    "ConvergenceWarning",
    "DataError",
    "DataWarning",
    "FitRetried",
    "ExtrapolationWarning",
    "FitFileError",
    "FormulaError",
    "PriorError",
]


class BayescaleError(ValueError):
    """Base class of every bad-input error bayescale raises."""


class FormulaError(BayescaleError):
    """A formula string uses syntax, names or functions outside the whitelist."""


class PriorError(BayescaleError):
    """A prior string cannot be parsed, or its arguments are invalid."""


class CardError(BayescaleError):
    """A law card is missing a field, has a wrong type, or is inconsistent."""


class DataError(BayescaleError):
    """The runs table cannot be used: a column is missing, non-numeric, non-finite, ..."""


class FitFileError(BayescaleError):
    """A fit file cannot be written (it exists, its folder is not writable) or read (missing, damaged,
    edited, or not a bayescale fit file): raised for anything wrong with the file, never a raw
    ``OSError`` or ``KeyError`` from HDF5."""


class DataWarning(UserWarning):
    """The runs table is usable but looks suspicious (duplicates, odd units)."""


class CacheWarning(UserWarning):
    """A cache (compiled programs, compiled code) cannot be used; bayescale works without it, slower."""


class ConvergenceWarning(UserWarning):
    """The sampler failed the diagnostics gate; the message says what to try."""


def plural(n: int, word: str) -> str:
    """``plural(1, "value")`` -> ``'1 value'``; ``plural(3, "value")`` -> ``'3 values'``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_rows(rows, limit: int = 8) -> str:
    """``[3, 9, 17]`` -> ``'rows 3, 9, 17'`` (0-based positions, truncated)."""
    rows = [int(r) for r in rows]
    head = ", ".join(str(r) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    word = "row" if len(rows) == 1 else "rows"
    return f"{word} {head}{more}"


class FitRetried(UserWarning):
    """A fit failed the diagnostics gate and was refitted once with more effort (the warning says how)."""


class ExtrapolationWarning(UserWarning):
    """A prediction or an optimum lies far outside the range of the fitted runs."""
