"""Whitelisted-AST compiler for law formulas.

A formula is a Python-syntax arithmetic expression such as
``E + A / N**alpha + B / D**beta``.  It is parsed with :mod:`ast` and only
numbers, names, ``+ - * / **``, unary ``-``/``+`` and calls to the functions in
:data:`FUNCTIONS` are accepted; anything else (attribute access, subscripts,
lambdas, comprehensions, comparisons, unknown names or functions) raises
:class:`~bayescale.errors.FormulaError` listing what is allowed.  Nothing is
ever passed to ``eval``.

The compiled tree is evaluated twice over:

* :func:`evaluate` computes the value with a backend namespace (``jax.numpy``
  for models, ``numpy`` for the quick initial optimum);
* :func:`log_evaluate` computes ``log(value)`` in a numerically stable form.
  Sums of provably positive terms become ``logsumexp`` of the terms' logs,
  products and quotients become sums and differences of logs, ``x**p``
  becomes ``p * log(x)``, ``exp(z)`` becomes ``z``.  For the Chinchilla law
  this gives ``logsumexp(log E, log A - alpha log N, log B - beta log D)``,
  which never overflows whatever the scale of N and D.  Where positivity
  cannot be proved (a subtraction, say) it falls back to ``log(value)``.

Positivity of names is supplied by the caller: inputs are validated to be
positive, parameters are positive when their prior's support is.

Bounded size: an expression is at most :data:`MAX_LENGTH` characters and
:data:`MAX_DEPTH` levels of nesting, and every number in it, and every
operation on numbers alone (``10**400``, ``9**9**9``), must be finite in
float32, the sampler's precision; otherwise a :class:`FormulaError` says
which limit was hit (never an ``OverflowError``, ``RecursionError`` or
``MemoryError``).
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from functools import reduce

import numpy as np

from .errors import FormulaError

__all__ = ["FLOAT32_MAX", "FLOAT32_TINY", "FUNCTIONS", "MAX_DEPTH", "MAX_LENGTH", "Expr", "compile_expr",
           "evaluate", "float32_problem", "is_positive", "log_evaluate"]

#: Longest expression accepted, in characters (the catalogue's longest formula has ~110).
MAX_LENGTH = 1000
#: Deepest nesting of operators and calls accepted (the catalogue's deepest formula has ~10).
MAX_DEPTH = 40
#: The largest finite float32, and the smallest positive normal one: the sampler computes in float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)


def float32_problem(value: float) -> str | None:
    """Why ``value`` cannot be used in float32 (``None`` if it can): not finite, beyond ~3.4e38 in
    magnitude (it would be inf), or nonzero below ~1.2e-38 (it would be subnormal or 0)."""
    if math.isnan(value):
        return "is not a real number"
    if math.isinf(value):
        return f"is infinite or too large (float32's largest value is {FLOAT32_MAX:.3g})"
    if abs(value) > FLOAT32_MAX:
        return f"exceeds float32's largest value ({FLOAT32_MAX:.3g})"
    if value != 0 and abs(value) < FLOAT32_TINY:
        return f"is below float32's smallest normal value ({FLOAT32_TINY:.3g}) and would become 0"
    return None

#: Functions a formula may call, with their number of arguments.
FUNCTIONS = {
    "exp": 1,
    "log": 1,
    "log1p": 1,
    "expm1": 1,
    "sqrt": 1,
    "abs": 1,
    "tanh": 1,
    "sigmoid": 1,
    "softplus": 1,
    "minimum": 2,
    "maximum": 2,
}

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}


@dataclass(frozen=True)
class Expr:
    """A compiled expression: its source text, its tree and the names it uses."""

    source: str
    tree: tuple
    names: frozenset
    order: tuple = ()   # the names in order of first appearance

    def __str__(self) -> str:
        return self.source


def _allowed_text(allowed: set[str]) -> str:
    names = ", ".join(sorted(allowed)) or "(none)"
    funcs = ", ".join(FUNCTIONS)
    return (
        f"Allowed: numbers; the names {names}; the operators + - * / ** and unary -; "
        f"and the functions {funcs}."
    )


def compile_expr(source: str, allowed: set[str] | frozenset, what: str = "formula") -> Expr:
    """Parse ``source`` and check it against the whitelist.

    ``allowed`` is the set of names the expression may use; ``what`` names the
    expression in error messages (e.g. ``"formula"`` or ``"prior scale of A"``).
    """
    if not isinstance(source, str) or not source.strip():
        raise FormulaError(f"{what} must be a non-empty string, got {source!r}")
    if len(source) > MAX_LENGTH:
        raise FormulaError(f"{what} is {len(source)} characters long; at most {MAX_LENGTH} are accepted")
    try:
        node = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise FormulaError(
            f"{what} {_shorten(source, 120)!r} is not a valid expression ({exc.msg}). {_allowed_text(allowed)}"
        ) from None
    except (MemoryError, RecursionError, ValueError):   # the parser's own nesting limits
        raise FormulaError(f"{what} {_shorten(source, 120)!r} is nested too deeply to parse; at most "
                           f"{MAX_DEPTH} levels are accepted") from None
    depth = _depth(node)
    if depth > MAX_DEPTH:
        raise FormulaError(f"{what} {_shorten(source, 120)!r} is nested more than {MAX_DEPTH} levels deep "
                           f"(a chain of n terms counts n); at most {MAX_DEPTH} are accepted")
    names: dict[str, None] = {}   # ordered set
    shown = _shorten(source.strip(), 120)

    def bad(n: ast.AST, construct: str):
        col = getattr(n, "col_offset", None)
        where = f" at column {col + 1}" if col is not None else ""
        return FormulaError(
            f"{what} {shown!r}: {construct}{where} is not allowed. {_allowed_text(allowed)}"
        )

    def number(n: ast.AST, value) -> tuple:
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        problem = float32_problem(value)
        if problem:
            text = _shorten(ast.get_source_segment(source.strip(), n) or repr(value), 40)
            why = "" if math.isnan(value) else "; the sampler computes in float32, so rescale the law's units"
            raise FormulaError(f"{what} {shown!r}: the number {text} {problem}{why}")
        return ("num", value)

    def conv(n: ast.AST) -> tuple:
        if isinstance(n, ast.Constant):
            if isinstance(n.value, bool) or not isinstance(n.value, (int, float)):
                raise bad(n, f"the constant {n.value!r}")
            return number(n, n.value)
        if isinstance(n, ast.Name):
            if n.id not in allowed:
                if n.id in FUNCTIONS:
                    raise bad(n, f"the function {n.id!r} used without a call")
                raise bad(n, f"the unknown name {n.id!r}")
            names.setdefault(n.id)
            return ("name", n.id)
        if isinstance(n, ast.BinOp):
            op = _BINOPS.get(type(n.op))
            if op is None:
                raise bad(n, f"the operator {type(n.op).__name__}")
            left, right = conv(n.left), conv(n.right)
            if left[0] == "num" and right[0] == "num":      # numbers alone: folded, and checked like a number
                return number(n, _constant(op, left[1], right[1]))
            return (op, left, right)
        if isinstance(n, ast.UnaryOp):
            if isinstance(n.op, ast.USub):
                inner = conv(n.operand)
                return ("num", -inner[1]) if inner[0] == "num" else ("neg", inner)
            if isinstance(n.op, ast.UAdd):
                return conv(n.operand)
            raise bad(n, f"the operator {type(n.op).__name__}")
        if isinstance(n, ast.Call):
            if not isinstance(n.func, ast.Name):
                raise bad(n, "a call of something other than a plain function name")
            fname = n.func.id
            if fname not in FUNCTIONS:
                raise bad(n, f"the unknown function {fname!r}")
            if n.keywords or any(isinstance(a, ast.Starred) for a in n.args):
                raise bad(n, f"keyword or starred arguments to {fname!r}")
            if len(n.args) != FUNCTIONS[fname]:
                raise bad(n, f"{fname}() with {len(n.args)} arguments (it takes {FUNCTIONS[fname]})")
            return ("call", fname, tuple(conv(a) for a in n.args))
        kinds = {
            ast.Attribute: "attribute access",
            ast.Subscript: "a subscript",
            ast.Lambda: "a lambda",
            ast.ListComp: "a comprehension",
            ast.SetComp: "a comprehension",
            ast.DictComp: "a comprehension",
            ast.GeneratorExp: "a comprehension",
            ast.Compare: "a comparison",
            ast.BoolOp: "a boolean operator",
            ast.IfExp: "a conditional expression",
            ast.NamedExpr: "an assignment expression",
        }
        raise bad(n, kinds.get(type(n), f"the construct {type(n).__name__}"))

    tree = conv(node)
    return Expr(source=source.strip(), tree=tree, names=frozenset(names), order=tuple(names))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _depth(node: ast.AST) -> int:
    """The nesting depth of a parsed expression, without recursion (a hostile tree may be deep)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        n, d = stack.pop()
        deepest = max(deepest, d)
        if d <= MAX_DEPTH:
            stack.extend((child, d + 1) for child in ast.iter_child_nodes(n)
                         if not isinstance(child, (ast.operator, ast.unaryop, ast.expr_context)))
    return deepest


def _constant(op: str, a: float, b: float) -> float:
    """``a <op> b`` in float64, inf where it overflows or is undefined (to be refused)."""
    try:
        if op == "add":
            return a + b
        if op == "sub":
            return a - b
        if op == "mul":
            return a * b
        if op == "div":
            return a / b
        value = a**b
        return value if isinstance(value, float) else math.inf     # a negative base to a fractional power
    except (OverflowError, ZeroDivisionError):
        return math.inf


# --------------------------------------------------------------------------- backends


def sigmoid(x):
    """The logistic function in numpy, to ~1 ulp for any x (no overflow, no cancellation)."""
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
    return np.where(np.asarray(x) >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _numpy_functions() -> dict:
    return {
        "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1,
        "sqrt": np.sqrt, "abs": np.abs, "tanh": np.tanh, "sigmoid": sigmoid,
        "softplus": lambda x: np.logaddexp(0.0, x),
        "minimum": np.minimum, "maximum": np.maximum, "logaddexp": np.logaddexp,
        "logsumexp": lambda logs: reduce(np.logaddexp, logs),
    }


def _jax_functions() -> dict:
    import jax
    import jax.numpy as jnp

    return {
        "exp": jnp.exp, "log": jnp.log, "log1p": jnp.log1p, "expm1": jnp.expm1,
        "sqrt": jnp.sqrt, "abs": jnp.abs, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
        "softplus": jax.nn.softplus, "minimum": jnp.minimum, "maximum": jnp.maximum,
        "logaddexp": jnp.logaddexp, "logsumexp": _jax_logsumexp,
    }


def _jax_logsumexp(logs: list):
    """``log(sum(exp(l) for l in logs))``, elementwise, in one pass: the shift by the largest term is
    held constant under differentiation (the value does not depend on it), so the gradient is the
    softmax weights with none of the tie and infinity branches of chained ``logaddexp`` calls."""
    import jax
    import jax.numpy as jnp

    if len(logs) == 1:
        return logs[0]
    shift = reduce(jnp.maximum, logs)
    shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, 0.0))
    return shift + jnp.log(sum(jnp.exp(lg - shift) for lg in logs))


_BACKENDS: dict[str, dict] = {}


def backend(name: str) -> dict:
    """The function table for ``"jax"`` or ``"numpy"``."""
    if name not in _BACKENDS:
        _BACKENDS[name] = _jax_functions() if name == "jax" else _numpy_functions()
    return _BACKENDS[name]


# --------------------------------------------------------------------------- evaluation


class Scope:
    """Values of names for one evaluation, with lazily evaluated let-bindings.

    ``values`` maps input and parameter names to arrays; ``lets`` maps
    intermediate names to compiled trees (evaluated on first use, cached);
    ``positive`` is the set of names known to be positive, ``unit`` those known
    to lie in (0, 1) (so that ``1 - name`` is positive).
    """

    def __init__(self, values: dict, lets: dict | None = None, positive=frozenset(), xp="jax",
                 logs: dict | None = None, unit=frozenset()):
        self.values = dict(values)
        self.unit = set(unit)
        self.lets = dict(lets or {})
        self.positive = set(positive)
        self.fns = backend(xp)
        self._logs: dict = dict(logs or {})  # known logs of names (e.g. log hat + log scale)

    def value(self, name: str):
        if name not in self.values:
            self.values[name] = evaluate(self.lets[name], self)
        return self.values[name]

    def log_value(self, name: str):
        if name not in self._logs:
            if name in self.lets and is_positive(self.lets[name], self):
                self._logs[name] = log_evaluate(self.lets[name], self)
            else:
                self._logs[name] = self.fns["log"](self.value(name))
        return self._logs[name]

    def name_positive(self, name: str) -> bool:
        if name in self.positive:
            return True
        return name in self.lets and is_positive(self.lets[name], self)


def evaluate(tree: tuple, scope: Scope):
    """The value of a compiled tree."""
    kind = tree[0]
    if kind == "num":
        return tree[1]
    if kind == "name":
        return scope.value(tree[1])
    if kind == "neg":
        return -evaluate(tree[1], scope)
    if kind == "call":
        if tree[1] == "log":
            # log(C / C50) as log C - log C50: the plain quotient's derivative
            # C / C50**2 overflows float32 for FLOP-sized values and zeroes the gradient.
            return log_evaluate(tree[2][0], scope)
        if tree[1] in ("minimum", "maximum") and all(is_positive(a, scope) for a in tree[2]):
            # compared in logs: an argument that overflows float32 (data_constrained's
            # N_opt_U = (...)**(1/alpha) * U**(beta/alpha)) loses the comparison without
            # its inf derivative turning the gradient into 0 * inf = nan.
            return scope.fns["exp"](log_evaluate(tree, scope))
        return scope.fns[tree[1]](*(evaluate(a, scope) for a in tree[2]))
    a, b = evaluate(tree[1], scope), evaluate(tree[2], scope)
    if kind == "add":
        return a + b
    if kind == "sub":
        return a - b
    if kind == "mul":
        return a * b
    if kind == "div":
        return a / b
    return a**b


def is_positive(tree: tuple, scope: Scope) -> bool:
    """Whether the tree is provably > 0 given which names are positive."""
    kind = tree[0]
    if kind == "num":
        return tree[1] > 0
    if kind == "name":
        return scope.name_positive(tree[1])
    if kind in ("add", "mul", "div"):
        return is_positive(tree[1], scope) and is_positive(tree[2], scope)
    if kind == "sub":   # 1 - u for a name known to lie in (0, 1)
        left, right = tree[1], tree[2]
        return left[0] == "num" and left[1] >= 1 and right[0] == "name" and right[1] in scope.unit
    if kind == "pow":
        return is_positive(tree[1], scope)
    if kind == "call":
        fname, args = tree[1], tree[2]
        if fname in ("exp", "sigmoid", "softplus"):
            return True
        if fname in ("sqrt", "minimum"):
            return all(is_positive(a, scope) for a in args)
        if fname == "maximum":
            return any(is_positive(a, scope) for a in args)
    return False


def _terms(tree: tuple) -> list:
    """Flatten a chain of additions into its terms."""
    if tree[0] == "add":
        return _terms(tree[1]) + _terms(tree[2])
    return [tree]


def log_evaluate(tree: tuple, scope: Scope):
    """``log`` of the tree's value, stable where positivity allows the rewrite."""
    fns = scope.fns
    if not is_positive(tree, scope):
        return fns["log"](evaluate(tree, scope))
    kind = tree[0]
    if kind == "num":
        return float(np.log(tree[1]))
    if kind == "name":
        return scope.log_value(tree[1])
    if kind == "add":
        return fns["logsumexp"]([log_evaluate(t, scope) for t in _terms(tree)])
    if kind == "mul":
        return log_evaluate(tree[1], scope) + log_evaluate(tree[2], scope)
    if kind == "div":
        return log_evaluate(tree[1], scope) - log_evaluate(tree[2], scope)
    if kind == "pow":
        return evaluate(tree[2], scope) * log_evaluate(tree[1], scope)
    fname, args = tree[1], tree[2]
    if fname == "exp":
        return evaluate(args[0], scope)
    if fname == "sqrt":
        return 0.5 * log_evaluate(args[0], scope)
    if fname == "sigmoid":
        return -fns["softplus"](-evaluate(args[0], scope))
    if fname == "minimum":
        return fns["minimum"](log_evaluate(args[0], scope), log_evaluate(args[1], scope))
    if fname == "maximum" and all(is_positive(a, scope) for a in args):
        return fns["maximum"](log_evaluate(args[0], scope), log_evaluate(args[1], scope))
    return fns["log"](evaluate(tree, scope))
