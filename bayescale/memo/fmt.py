"""Number formatting shared by the memo's text (builder and layout)."""

from __future__ import annotations

import math

from .model import Estimate

__all__ = ["g", "interval", "med_int", "pct", "sentence"]


def sentence(text: str) -> str:
    """``text`` on one line, ending with a full stop."""
    text = " ".join(str(text).split())
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def g(v, digits: int = 4) -> str:
    """A number in ``digits`` significant digits (``1.4e12`` style), '–' when missing."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return str(v)
    text = f"{v:.{digits}g}"
    if "e" in text:
        mant, exp = text.split("e")
        text = f"{mant}e{int(exp)}"
    return text


def interval(e: Estimate | None, prob: int = 90, digits: int = 4) -> str:
    if e is None:
        return "–"
    lo, hi = (e.lower_90, e.upper_90) if prob == 90 else (e.lower_50, e.upper_50)
    return f"{g(lo, digits)} to {g(hi, digits)}"


def med_int(e: Estimate | None, digits: int = 3) -> str:
    if e is None:
        return "–"
    return f"{g(e.median, digits)} [{g(e.lower_90, digits)}, {g(e.upper_90, digits)}]"


def pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"
