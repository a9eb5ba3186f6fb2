"""Prior strings such as ``"Uniform(0.05, 1)"`` parsed into NumPyro distributions.

Grammar: ``Name(arg, arg, ...)`` with numeric positional arguments only, parsed
with :mod:`ast` (never ``eval``).  Each family's arguments are checked here so
a bad prior fails when the card or the command line is read, not inside JAX:
besides each family's own conditions, every argument must be usable in
float32 (the sampler's precision: no 1e300, no 1e-320), a prior's width must
be resolvable next to its location (``Normal(0.3, 1e-12)`` is a point mass in
float32: NUTS would freeze), and a ``LogNormal``'s median ``exp(loc)`` must be
a float32 number.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

import numpy as np

from .errors import PriorError
from .formula import FLOAT32_MAX, float32_problem, sigmoid

#: Smallest width of a prior relative to its location: float32 resolves ~6e-8 relative steps, so
#: a width of 1e-5 |loc| still spans ~170 representable values; a narrower one is a point mass.
MIN_RELATIVE_WIDTH = 1e-5
#: Largest |loc| of a LogNormal: its median exp(loc) must stay inside float32 (exp(88.7) = 3.4e38).
MAX_LOG_LOC = math.log(FLOAT32_MAX) - 1.0
_MAX_TEXT = 200

__all__ = ["PRIORS", "Prior", "parse_prior"]

# family -> (argument names, check(args) -> error text or None, support (lo, hi))
PRIORS = {
    "Uniform": (("low", "high"), lambda a: None if a[0] < a[1] else "low < high"),
    "Normal": (("loc", "scale"), lambda a: None if a[1] > 0 else "scale > 0"),
    "HalfNormal": (("scale",), lambda a: None if a[0] > 0 else "scale > 0"),
    "LogNormal": (("loc", "scale"), lambda a: None if a[1] > 0 else "scale > 0"),
    "Exponential": (("rate",), lambda a: None if a[0] > 0 else "rate > 0"),
    "Gamma": (("concentration", "rate"), lambda a: None if min(a) > 0 else "both > 0"),
    "Beta": (("concentration1", "concentration0"), lambda a: None if min(a) > 0 else "both > 0"),
    "StudentT": (("df", "loc", "scale"), lambda a: None if a[0] > 0 and a[2] > 0 else "df > 0 and scale > 0"),
    "HalfCauchy": (("scale",), lambda a: None if a[0] > 0 else "scale > 0"),
    "TruncatedNormal": (
        ("loc", "scale", "low", "high"),
        lambda a: None if a[1] > 0 and a[2] < a[3] else "scale > 0 and low < high",
    ),
}


@dataclass(frozen=True)
class Prior:
    """A parsed prior: family name and numeric arguments."""

    family: str
    args: tuple

    def __str__(self) -> str:
        return f"{self.family}({', '.join(f'{a:g}' for a in self.args)})"

    @property
    def bounds(self) -> tuple[float, float]:
        """Support as ``(low, high)``, with infinities for unbounded sides."""
        f, a = self.family, self.args
        if f == "Uniform":
            return (a[0], a[1])
        if f == "TruncatedNormal":
            return (a[2], a[3])
        if f == "Beta":
            return (0.0, 1.0)
        if f in ("HalfNormal", "LogNormal", "Exponential", "Gamma", "HalfCauchy"):
            return (0.0, math.inf)
        return (-math.inf, math.inf)

    @property
    def positive(self) -> bool:
        return self.bounds[0] >= 0

    def constrain(self, z):
        """Map unconstrained ``z`` (numpy) into the support: the bijection NumPyro's ``biject_to`` uses
        (``lo + (hi - lo) * sigmoid(z)``, ``lo + exp(z)``, ``hi - exp(z)`` or the identity)."""
        lo, hi = self.bounds
        z = np.asarray(z, float)
        if math.isfinite(lo) and math.isfinite(hi):
            return lo + (hi - lo) * sigmoid(z)
        if math.isfinite(lo):
            return lo + np.exp(z)
        if math.isfinite(hi):
            return hi - np.exp(z)
        return z

    def unconstrain(self, v):
        """The inverse of :meth:`constrain`."""
        lo, hi = self.bounds
        v = np.asarray(v, float)
        if math.isfinite(lo) and math.isfinite(hi):
            u = (v - lo) / (hi - lo)
            with np.errstate(divide="ignore"):
                return np.log(u) - np.log1p(-u)
        if math.isfinite(lo):
            return np.log(v - lo)
        if math.isfinite(hi):
            return np.log(hi - v)
        return v

    def sample(self, rng: np.random.Generator, size=None) -> np.ndarray:
        """Draws from the prior in numpy (for prior predictive simulation and SBC)."""
        f, a = self.family, self.args
        if f == "Uniform":
            return rng.uniform(a[0], a[1], size)
        if f == "Normal":
            return rng.normal(a[0], a[1], size)
        if f == "HalfNormal":
            return np.abs(rng.normal(0.0, a[0], size))
        if f == "LogNormal":
            return np.exp(rng.normal(a[0], a[1], size))
        if f == "Exponential":
            return rng.exponential(1.0 / a[0], size)
        if f == "Gamma":
            return rng.gamma(a[0], 1.0 / a[1], size)
        if f == "Beta":
            return rng.beta(a[0], a[1], size)
        if f == "StudentT":
            return a[1] + a[2] * rng.standard_t(a[0], size)
        if f == "HalfCauchy":
            return np.abs(a[0] * rng.standard_cauchy(size))
        from scipy.special import ndtr, ndtri      # TruncatedNormal: inverse CDF

        lo, hi = ndtr((a[2] - a[0]) / a[1]), ndtr((a[3] - a[0]) / a[1])
        return np.clip(a[0] + a[1] * ndtri(rng.uniform(lo, hi, size)), a[2], a[3])

    def dist(self):
        """The NumPyro distribution."""
        import numpyro.distributions as dist

        f, a = self.family, self.args
        if f == "TruncatedNormal":
            return dist.TruncatedNormal(a[0], a[1], low=a[2], high=a[3])
        return getattr(dist, f)(*a)

    def median(self) -> float:
        """A central value inside the support (used to start optimisers)."""
        f, a = self.family, self.args
        if f == "Uniform":
            return 0.5 * (a[0] + a[1])
        if f in ("Normal", "StudentT"):
            return a[-2]
        if f in ("HalfNormal", "HalfCauchy"):
            return 0.6745 * a[0]
        if f == "LogNormal":
            return math.exp(a[0])
        if f == "Exponential":
            return math.log(2) / a[0]
        if f == "Gamma":
            return a[0] / a[1]
        if f == "Beta":
            return a[0] / (a[0] + a[1])
        lo, hi = a[2], a[3]
        return float(np.clip(a[0], lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo)))


def parse_prior(text: str, what: str = "prior") -> Prior:
    """Parse ``"Family(a, b)"``; ``what`` names the prior in error messages."""
    families = ", ".join(f"{k}({', '.join(v[0])})" for k, v in PRIORS.items())
    if not isinstance(text, str):
        raise PriorError(f"{what} must be a string like 'Uniform(0, 1)', got {text!r}")
    if len(text) > _MAX_TEXT:
        raise PriorError(f"{what} is {len(text)} characters long; a prior such as 'Uniform(0, 1)' needs "
                         f"at most {_MAX_TEXT}")
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, MemoryError, RecursionError, ValueError):
        node = None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)) or node.keywords:
        raise PriorError(
            f"{what} {text!r} is not of the form Family(number, ...). Known families: {families}"
        )
    family = node.func.id
    if family not in PRIORS:
        raise PriorError(f"{what} {text!r}: unknown family {family!r}. Known families: {families}")
    args = []
    for a in node.args:
        sign = 1.0
        if isinstance(a, ast.UnaryOp) and isinstance(a.op, (ast.USub, ast.UAdd)):
            sign = -1.0 if isinstance(a.op, ast.USub) else 1.0
            a = a.operand
        if not (isinstance(a, ast.Constant) and isinstance(a.value, (int, float))
                and not isinstance(a.value, bool)):
            raise PriorError(f"{what} {text!r}: arguments must be plain numbers")
        try:
            args.append(sign * float(a.value))
        except OverflowError:       # an integer literal with hundreds of digits
            args.append(sign * math.inf)
    names, check = PRIORS[family]
    if len(args) != len(names):
        raise PriorError(
            f"{what} {text!r}: {family} takes {len(names)} arguments ({', '.join(names)}), got {len(args)}"
        )
    if not all(math.isfinite(v) for v in args):
        raise PriorError(f"{what} {text!r}: arguments must be finite")
    for name, value in zip(names, args):
        problem = float32_problem(value)
        if problem:
            raise PriorError(f"{what} {text!r}: {name} = {value:g} {problem}; the sampler computes in "
                             f"float32, so rescale the parameter")
    problem = check(args)
    if problem:
        raise PriorError(f"{what} {text!r}: {family} needs {problem}")
    problem = _resolution(family, args)
    if problem:
        raise PriorError(f"{what} {text!r}: {problem}")
    prior = Prior(family, tuple(args))
    problem = float32_problem(prior.median())
    if problem:
        raise PriorError(f"{what} {text!r}: its median {prior.median():g} {problem}; the sampler computes "
                         f"in float32, so give the prior on a rescaled parameter")
    return prior


def _resolution(family: str, a: list) -> str | None:
    """Why a prior cannot be sampled in float32 although its arguments are valid (``None`` if it can)."""
    if family == "LogNormal" and abs(a[0]) > MAX_LOG_LOC:
        return (f"LogNormal's median exp(loc) = exp({a[0]:g}) is outside float32 (|loc| must be at most "
                f"{MAX_LOG_LOC:.4g}); give the prior on a rescaled parameter")
    spans = []      # (width, size of the location, what the width is)
    if family in ("Uniform", "TruncatedNormal"):
        low, high = a[-2], a[-1]
        spans.append((high - low, max(abs(low), abs(high)), "high - low"))
    if family in ("Normal", "StudentT", "TruncatedNormal"):
        loc, scale = (a[1], a[2]) if family == "StudentT" else (a[0], a[1])
        spans.append((scale, abs(loc), "scale"))
    for width, size, label in spans:
        if width > FLOAT32_MAX:
            return f"{label} = {width:g} exceeds float32's largest value ({FLOAT32_MAX:.3g})"
        if width < MIN_RELATIVE_WIDTH * size:
            return (f"{label} = {width:g} is below {MIN_RELATIVE_WIDTH:g} of the location's size {size:g}: "
                    f"float32 cannot resolve so narrow a prior (NUTS would not move); widen it or fix the "
                    f"parameter in the formula")
    return None
