"""Number formatting shared by the memo's text (builder and layout)."""

from __future__ import annotations

import math

from .model import Estimate

__all__ = ["count", "flops", "g", "interval", "likelihood_words", "med_int", "pct", "quantity", "sentence"]

#: How a person reads each input: unit words after a count (N: "70B parameters").
UNITS = {"N": "parameters", "D": "tokens", "U": "unique tokens"}
_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


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


def count(v, digits: int = 3) -> str:
    """A count in human units: 7e10 -> '70B', 1.4e12 -> '1.4T', 5.66e10 -> '56.6B', 3.4e7 -> '34M'.

    ``digits`` significant digits, trailing zeros dropped; above 1000T (or below 1000) the plain
    number (``g``)."""
    if v is None or not math.isfinite(v):
        return "–"
    v = float(f"{v:.{digits}g}")           # round first: 999.7B -> 1T, not 1000B
    for scale, suffix in _SUFFIXES:
        if scale <= abs(v) < 1000 * scale:
            return f"{v / scale:.{digits}g}{suffix}"
    return g(v, max(digits, 3))


def flops(v, digits: int = 2) -> str:
    """A compute in FLOPs, e-notation: 5.88e23 -> '5.9e23 FLOPs'."""
    return "–" if v is None or not math.isfinite(v) else f"{g(v, digits)} FLOPs"


def quantity(name: str, v, digits: int = 3) -> str:
    """One input as a person reads it: ('N', 7e10) -> '70B parameters', ('C', 5.88e23) -> '5.9e23 FLOPs',
    others as plain numbers ('M', 20) -> 'M = 20'."""
    if name in UNITS:
        return f"{count(v, digits)} {UNITS[name]}"
    if name == "C":
        return flops(v, digits)
    return f"{name} = {g(v, digits)}"


def likelihood_words(p: float) -> str:
    """A probability in words (the IPCC's scale, coarsened): 0.37 -> 'about as likely as not'."""
    if p >= 0.99:
        return "virtually certain"
    if p >= 0.9:
        return "very likely"
    if p >= 0.66:
        return "likely"
    if p > 0.33:
        return "about as likely as not"
    if p > 0.1:
        return "unlikely"
    if p > 0.01:
        return "very unlikely"
    return "exceptionally unlikely"
