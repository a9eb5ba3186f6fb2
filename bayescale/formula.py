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
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import reduce

import numpy as np

from .errors import FormulaError

__all__ = ["FUNCTIONS", "Expr", "compile_expr", "evaluate", "is_positive", "log_evaluate"]

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
    try:
        node = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise FormulaError(
            f"{what} {source!r} is not a valid expression ({exc.msg}). {_allowed_text(allowed)}"
        ) from None
    names: dict[str, None] = {}   # ordered set

    def bad(n: ast.AST, construct: str):
        col = getattr(n, "col_offset", None)
        where = f" at column {col + 1}" if col is not None else ""
        return FormulaError(
            f"{what} {source!r}: {construct}{where} is not allowed. {_allowed_text(allowed)}"
        )

    def conv(n: ast.AST) -> tuple:
        if isinstance(n, ast.Constant):
            if isinstance(n.value, bool) or not isinstance(n.value, (int, float)):
                raise bad(n, f"the constant {n.value!r}")
            return ("num", float(n.value))
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
            return (op, conv(n.left), conv(n.right))
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
