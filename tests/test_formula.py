"""The whitelisted-AST formula compiler and its two evaluators (plain and log-domain)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bayescale
from bayescale.errors import FormulaError
from bayescale.formula import FUNCTIONS, Scope, compile_expr, evaluate, is_positive, log_evaluate

CHINCHILLA = "E + A / N**alpha + B / D**beta"
KAPLAN = "((N_c / N)**(alpha_N / alpha_D) + D_c / D)**alpha_D"
BNSL1 = "a + b * x**(-c0) * (1 + (x / d1)**(1 / f1))**(-c1 * f1)"

NAMES = {"E", "A", "B", "N", "D", "alpha", "beta"}


# --------------------------------------------------------------------------- accepting


@pytest.mark.parametrize("name", bayescale.list_laws())
def test_every_card_formula_compiles(name):
    law = bayescale.load_law(name)
    allowed = set(law.input_names) | set(law.param_names) | {n for n, _ in law.lets}
    expr = compile_expr(law.formula.source, allowed)
    assert expr.names <= allowed
    assert expr.tree == law.formula.tree


def test_compiled_expression_records_names_and_source():
    expr = compile_expr("  " + CHINCHILLA + " ", NAMES)
    assert expr.source == CHINCHILLA
    assert str(expr) == CHINCHILLA
    assert expr.names == frozenset(NAMES)


@pytest.mark.parametrize("source", [
    "exp(-alpha * log(N))", "sqrt(N) + abs(-E)", "sigmoid(alpha) * tanh(beta)",
    "softplus(E) + log1p(A) + expm1(B)", "minimum(N, D) / maximum(N, D)", "+E - -A", "2.5e3 * N**-0.5",
])
def test_whitelisted_constructs_compile(source):
    compile_expr(source, NAMES)


def test_unary_minus_on_a_number_folds_to_a_constant():
    assert compile_expr("-3", set()).tree == ("num", -3.0)
    assert compile_expr("-E", NAMES).tree == ("neg", ("name", "E"))


# --------------------------------------------------------------------------- rejecting


def _assert_lists_allowed(message: str, names=NAMES):
    assert "Allowed:" in message
    # the functions and the names it may use are spelled out
    for fname in ("exp", "log", "sigmoid", "minimum"):
        assert fname in message
    for name in names:
        assert name in message
    assert "+ - * / **" in message


BAD = [
    ("N.real", "attribute access"),
    ("np.exp(N)", "a call of something other than a plain function name"),
    ("N[0]", "a subscript"),
    ("(lambda z: z)(N)", "a call of something other than a plain function name"),
    ("lambda z: z", "a lambda"),
    ("[n for n in N]", "a comprehension"),
    ("sum(n for n in N)", "the unknown function 'sum'"),
    ("{n: 1 for n in N}", "a comprehension"),
    ("{n for n in N}", "a comprehension"),
    ("N < D", "a comparison"),
    ("E if N > D else A", "a conditional expression"),
    ("N and D", "a boolean operator"),
    ("(E := 3)", "an assignment expression"),
    ("N % 2", "the operator Mod"),
    ("N // 2", "the operator FloorDiv"),
    ("~N", "the operator Invert"),
    ("N @ D", "the operator MatMult"),
    ("__import__('os')", "the unknown function '__import__'"),
    ("eval('1')", "the unknown function 'eval'"),
    ("gamma(N)", "the unknown function 'gamma'"),
    ("E + Z", "the unknown name 'Z'"),
    ("E + __builtins__", "the unknown name '__builtins__'"),
    ("E + exp", "the function 'exp' used without a call"),
    ("exp(N, D)", "exp() with 2 arguments (it takes 1)"),
    ("minimum(N)", "minimum() with 1 arguments (it takes 2)"),
    ("exp(x=N)", "keyword or starred arguments to 'exp'"),
    ("exp(*N)", "keyword or starred arguments to 'exp'"),
    ("'N'", "the constant 'N'"),
    ("True * N", "the constant True"),
    ("1j * N", "the constant 1j"),
    ("(N, D)", "the construct Tuple"),
    ("[N, D]", "the construct List"),
    ("f'{N}'", "the construct JoinedStr"),
]


@pytest.mark.parametrize("source, construct", BAD)
def test_rejected_constructs_name_the_problem_and_list_what_is_allowed(source, construct):
    with pytest.raises(FormulaError) as info:
        compile_expr(source, NAMES)
    message = str(info.value)
    assert construct in message
    assert repr(source) in message
    _assert_lists_allowed(message)


def test_rejection_reports_the_column_of_the_offending_node():
    with pytest.raises(FormulaError, match=r"the unknown name 'Z' at column 5"):
        compile_expr("E + Z", NAMES)


@pytest.mark.parametrize("source", ["E +", "E + (A", "1 2", "N = 3"])
def test_syntax_errors_are_formula_errors(source):
    with pytest.raises(FormulaError, match="is not a valid expression") as info:
        compile_expr(source, NAMES)
    _assert_lists_allowed(str(info.value))


@pytest.mark.parametrize("source", ["", "   ", None, 3.0])
def test_empty_or_non_string_formula(source):
    with pytest.raises(FormulaError, match="must be a non-empty string"):
        compile_expr(source, NAMES)


def test_error_names_the_expression_being_compiled():
    with pytest.raises(FormulaError, match=r"^prior scale of A 'N_ref\.x'"):
        compile_expr("N_ref.x", {"N_ref"}, what="prior scale of A")


def test_formula_error_is_a_bayescale_error_and_a_value_error():
    with pytest.raises(bayescale.BayescaleError):
        compile_expr("N.x", NAMES)
    with pytest.raises(ValueError):
        compile_expr("N.x", NAMES)


def test_every_whitelisted_function_is_listed_in_the_message():
    with pytest.raises(FormulaError) as info:
        compile_expr("foo(N)", NAMES)
    for fname in FUNCTIONS:
        assert fname in str(info.value)


# --------------------------------------------------------------------------- evaluation


def _random_params(rng, law_name: str, size: int) -> tuple[dict, dict]:
    """Random parameters and inputs for a law (broadcast: params (size, 1), inputs (1, n))."""
    u = rng.uniform
    n = 25
    if law_name == "chinchilla":
        params = {"E": u(0.5, 3, size), "A": np.exp(u(2, 8, size)), "B": np.exp(u(2, 9, size)),
                  "alpha": u(0.05, 1, size), "beta": u(0.05, 1, size)}
        inputs = {"N": np.exp(u(np.log(1e6), np.log(1e11), n)), "D": np.exp(u(np.log(1e7), np.log(1e12), n))}
    elif law_name == "kaplan":
        params = {"N_c": np.exp(u(20, 35, size)), "D_c": np.exp(u(20, 35, size)),
                  "alpha_N": u(0.03, 0.3, size), "alpha_D": u(0.03, 0.3, size)}
        inputs = {"N": np.exp(u(np.log(1e6), np.log(1e11), n)), "D": np.exp(u(np.log(1e7), np.log(1e12), n))}
    else:  # bnsl1
        params = {"a": u(0.1, 2, size), "b": np.exp(u(0, 3, size)), "c0": u(0, 1, size),
                  "c1": np.exp(u(-2, 1.5, size)), "d1": np.exp(u(np.log(1e6), np.log(1e10), size)),
                  "f1": np.exp(u(-2.5, 0.5, size))}
        inputs = {"x": np.exp(u(np.log(1e5), np.log(1e11), n))}
    params = {k: v[:, None] for k, v in params.items()}
    inputs = {k: v[None, :] for k, v in inputs.items()}
    return params, inputs


def _plain(law, params, inputs, xp):
    """The law's value by the plain evaluator (no log-domain rewrite)."""
    return evaluate(law.formula.tree, law._scope(params, inputs, xp))


@pytest.mark.parametrize("law_name", ["chinchilla", "bnsl1", "kaplan"])
def test_log_domain_equals_log_of_plain_value_numpy(law_name):
    law = bayescale.load_law(law_name)
    params, inputs = _random_params(np.random.default_rng(1), law_name, 200)
    with np.errstate(over="ignore"):
        plain = _plain(law, params, inputs, "numpy")
    ok = np.isfinite(plain) & (plain > 0)
    assert ok.mean() > 0.9  # the comparison covers almost every random draw
    log_mean = law.log_mean(params, inputs, xp="numpy")
    assert log_mean.shape == plain.shape
    np.testing.assert_allclose(log_mean[ok], np.log(plain[ok]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(law.mean(params, inputs, xp="numpy")[ok], plain[ok], rtol=1e-10)


@pytest.mark.parametrize("law_name", ["chinchilla", "bnsl1", "kaplan"])
def test_log_domain_equals_log_of_plain_value_jax(law_name):
    import jax.numpy as jnp

    law = bayescale.load_law(law_name)
    params, inputs = _random_params(np.random.default_rng(2), law_name, 200)
    # float64 reference in numpy; jax evaluates in float32 (its default here)
    with np.errstate(over="ignore"):
        plain = _plain(law, params, inputs, "numpy")
    ok = np.isfinite(plain) & (plain > 0) & (plain < 1e30)
    jparams = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    jinputs = {k: jnp.asarray(v, jnp.float32) for k, v in inputs.items()}
    log_mean = np.asarray(law.log_mean(jparams, jinputs, xp="jax"))
    assert log_mean.dtype == np.float32
    assert np.all(np.isfinite(log_mean))
    # float32 tolerance: relative error ~1e-6 on values whose log is O(1..70)
    np.testing.assert_allclose(log_mean[ok], np.log(plain[ok]), rtol=2e-5, atol=2e-5)


def test_chinchilla_log_form_is_a_log_sum_exp():
    law = bayescale.load_law("chinchilla")
    p = {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.37}
    x = {"N": np.array([1e8, 1e9]), "D": np.array([1e9, 2e10])}
    expected = np.logaddexp.reduce([
        np.full(2, np.log(p["E"])),
        np.log(p["A"]) - p["alpha"] * np.log(x["N"]),
        np.log(p["B"]) - p["beta"] * np.log(x["D"]),
    ])
    np.testing.assert_allclose(law.log_mean(p, x, xp="numpy"), expected, rtol=1e-12)


def test_log_domain_stays_finite_where_plain_float32_overflows():
    import jax.numpy as jnp

    f32 = jnp.float32
    # Kaplan: (N_c / N)**(alpha_N / alpha_D) is 5e44-5e54, beyond float32's 3.4e38, while the
    # loss itself, that term to the power 0.06, is ~500-2000
    kaplan = bayescale.load_law("kaplan")
    p = {"N_c": f32(8.8e13), "D_c": f32(5.4e13), "alpha_N": f32(0.3), "alpha_D": f32(0.06)}
    x = {"N": jnp.asarray([1e3, 1e5], f32), "D": jnp.asarray([1e9, 1e10], f32)}
    assert np.all(np.isinf(np.asarray(_plain(kaplan, p, x, "jax"))))
    log_mean = np.asarray(kaplan.log_mean(p, x))
    expected = 0.06 * np.logaddexp(5 * np.log(8.8e13 / np.array([1e3, 1e5])), np.log(5.4e13 / np.array([1e9, 1e10])))
    np.testing.assert_allclose(log_mean, expected, rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(kaplan.mean(p, x))))

    # Chinchilla at huge N and D: N**alpha overflows float32 in the plain form (A / inf = 0,
    # harmless), and at tiny N the plain form's A / N**alpha overflows; the log form does neither.
    chin = bayescale.load_law("chinchilla")
    p = {"E": f32(1.8), "A": f32(480.0), "B": f32(2000.0), "alpha": f32(4.0), "beta": f32(0.37)}
    x = {"N": jnp.asarray([1e-12, 1e30], f32), "D": jnp.asarray([1e9, 1e38], f32)}
    plain = np.asarray(_plain(chin, p, x, "jax"))
    assert np.isinf(plain[0])
    log_mean = np.asarray(chin.log_mean(p, x))
    assert np.all(np.isfinite(log_mean))
    np.testing.assert_allclose(log_mean[0], np.log(480.0) + 4.0 * 12 * np.log(10), rtol=1e-5)
    np.testing.assert_allclose(log_mean[1], np.log(1.8), rtol=1e-5)

    # power law at tiny x: the value itself (~e^138) overflows float32, its log does not
    power = bayescale.load_law("power_law")
    p = {"A": f32(3.0), "alpha": f32(2.0)}
    x = {"x": jnp.asarray([1e-30], f32)}
    assert np.isinf(np.asarray(_plain(power, p, x, "jax")))[0]
    np.testing.assert_allclose(np.asarray(power.log_mean(p, x)), [np.log(3.0) + 60 * np.log(10)], rtol=1e-6)


def test_log_of_a_quotient_has_a_finite_gradient_in_float32():
    """Regression: d/dC50 log(C / C50) used to be 0 in float32 because C50**2 overflowed."""
    import jax
    import jax.numpy as jnp

    expr = compile_expr("sigmoid(k * log(C / C50))", {"k", "C", "C50"})
    c = jnp.asarray([1e17, 1e20, 1e23], jnp.float32)

    def f(c50_hat):
        scope = Scope({"k": 1.0, "C": c, "C50": c50_hat * jnp.float32(1e20)}, positive={"C", "C50", "k"})
        return jnp.sum(evaluate(expr.tree, scope))

    g = float(jax.grad(f)(jnp.float32(1.0)))
    # d/dh sum sigmoid(log C - log h - log 1e20) = -sum s(1 - s), dominated by the middle point (0.25)
    assert g == pytest.approx(-0.25, rel=0.02)


# --------------------------------------------------------------------------- positivity fallback


def test_subtraction_is_not_provably_positive_and_falls_back_to_log_of_value():
    expr = compile_expr("eps - k * exp(-gamma * L)", {"eps", "k", "gamma", "L"})
    values = {"eps": 0.75, "k": 3.0, "gamma": 1.2, "L": np.linspace(2, 5, 7)}
    scope = Scope(values, positive={"eps", "k", "gamma", "L"}, xp="numpy")
    assert not is_positive(expr.tree, scope)
    plain = 0.75 - 3.0 * np.exp(-1.2 * values["L"])
    np.testing.assert_allclose(evaluate(expr.tree, scope), plain, rtol=1e-14)
    np.testing.assert_allclose(log_evaluate(expr.tree, scope), np.log(plain), rtol=1e-12)


def test_card_with_a_subtraction_evaluates_correctly():
    law = bayescale.load_law("downstream_error")  # -eps * expm1(gamma * (L0 - L)) = eps - k * exp(-gamma * L), k = eps * exp(gamma * L0)
    params = {"eps": 0.75, "gamma": 1.0, "L0": 1.5}  # natural values (L0 in nats, not L0 / L_ref)
    L = np.linspace(2.0, 5.0, 9)
    expected = 0.75 - 0.75 * math.exp(1.0 * 1.5) * np.exp(-1.0 * L)
    np.testing.assert_allclose(law.mean(params, {"L": L}, xp="numpy"), expected, rtol=1e-12)
    np.testing.assert_allclose(law.log_mean(params, {"L": L}, xp="numpy"), np.log(expected), rtol=1e-12)


def test_parameter_without_positive_support_disables_the_rewrite():
    """E + A * x**(-alpha) with E not known to be positive: still correct, via log(value)."""
    expr = compile_expr("E + A * x**(-alpha)", {"E", "A", "x", "alpha"})
    x = np.geomspace(1e3, 1e9, 5)
    values = {"E": 1.5, "A": 20.0, "alpha": 0.3, "x": x}
    expected = np.log(1.5 + 20.0 * x**-0.3)
    for positive in ({"A", "x", "E"}, {"A", "x"}):
        scope = Scope(values, positive=positive, xp="numpy")
        assert is_positive(expr.tree, scope) == ("E" in positive)
        np.testing.assert_allclose(log_evaluate(expr.tree, scope), expected, rtol=1e-12)


def test_positivity_rules():
    pos = {"a", "b"}
    scope = Scope({}, positive=pos, xp="numpy")

    def check(src):
        return is_positive(compile_expr(src, {"a", "b", "z"}).tree, scope)

    assert check("a + b * 2 / a**z")          # pow of a positive base: any exponent
    assert check("exp(z) + sigmoid(z) + softplus(z)")
    assert check("sqrt(a) * minimum(a, b) * maximum(z, a)")
    assert not check("a - b")
    assert not check("z")
    assert not check("-a")
    assert not check("minimum(a, z)")
    assert not check("log(a)")
    assert not check("0 * a")


def test_let_bindings_are_evaluated_lazily_and_cached():
    expr = compile_expr("y * 2", {"y"})
    y_tree = compile_expr("a + 1", {"a"}).tree
    scope = Scope({"a": 3.0}, lets={"y": y_tree}, positive={"a"}, xp="numpy")
    assert evaluate(expr.tree, scope) == 8.0
    assert scope.values["y"] == 4.0
    assert log_evaluate(expr.tree, scope) == pytest.approx(math.log(8.0))


def test_minimum_of_an_overflowing_argument_has_a_finite_gradient():
    """Regression: data_constrained's N_opt_U = (...)**(1/alpha) * U**(beta/alpha) overflows
    float32 when beta/alpha is large; minimum(N, inf) was right, but its gradient was 0 * inf = nan."""
    import jax
    import jax.numpy as jnp

    law = bayescale.load_law("data_constrained")
    f32 = jnp.float32
    x = {"N": jnp.asarray([1e8, 1e9], f32), "D": jnp.asarray([1e10, 1e11], f32), "U": jnp.asarray([1e9, 1e9], f32)}

    def total(alpha, beta):
        p = {"E": 1.8, "A": 500.0, "B": 1500.0, "alpha": alpha, "beta": beta, "R_D_star": 15.0, "R_N_star": 5.0}
        return jnp.sum(law.log_mean(p, x))

    for alpha, beta in [(0.35, 0.35), (0.1, 0.9), (0.05, 1.0)]:
        grads = jax.grad(total, argnums=(0, 1))(f32(alpha), f32(beta))
        assert np.all(np.isfinite(np.asarray(grads))), (alpha, beta, grads)


@pytest.mark.parametrize("xp", ["numpy", "jax"])
def test_minimum_and_maximum_values(xp):
    a, b = np.array([1.0, 5.0, 3e30]), np.array([2.0, 4.0, 1e-30])
    for src, expected in [("minimum(a, b)", np.minimum(a, b)), ("maximum(a, b)", np.maximum(a, b)),
                          ("maximum(a - 2, b)", np.maximum(a - 2, b)), ("minimum(a, b - 3)", np.minimum(a, b - 3))]:
        expr = compile_expr(src, {"a", "b"})
        got = np.asarray(evaluate(expr.tree, Scope({"a": a, "b": b}, positive={"a", "b"}, xp=xp)), float)
        # positive arguments are compared in logs: exp(log x) costs float32 ~1e-7 * |log x|
        np.testing.assert_allclose(got, expected, rtol=1e-5 if xp == "jax" else 1e-13)


def test_jax_logsumexp_matches_chained_logaddexp_and_has_softmax_gradient():
    import jax
    import jax.numpy as jnp

    from bayescale.formula import _jax_logsumexp

    a = np.array([0.0, 50.0, -80.0, 1e-3, 3.0])
    b = np.array([1.0, -50.0, -80.0, 2e-3, -np.inf])
    c = np.array([-2.0, 0.0, -79.0, 0.0, 3.0])
    expected = np.logaddexp(np.logaddexp(a, b), c)
    got = np.asarray(_jax_logsumexp([jnp.asarray(a), jnp.asarray(b), jnp.asarray(c)]))
    assert np.allclose(got, expected, rtol=1e-6, atol=1e-6)
    grad = jax.grad(lambda x: _jax_logsumexp([x[0], x[1], x[2]]))(jnp.array([0.5, -1.0, 2.0]))
    weights = np.exp([0.5, -1.0, 2.0]) / np.exp([0.5, -1.0, 2.0]).sum()
    assert np.allclose(grad, weights, rtol=1e-6)


def test_numpy_sigmoid_matches_scipy_to_an_ulp_over_the_whole_range():
    from scipy.special import expit

    from bayescale.formula import sigmoid

    x = np.concatenate([np.linspace(-700, 800, 3001), [-1e-300, 0.0, 1e-300, 36.0, 40.0]])
    assert np.allclose(sigmoid(x), expit(x), rtol=4e-16, atol=0)
    # below exp's normal range both are 0 or a denormal
    assert sigmoid(-800.0) == 0.0 and sigmoid(800.0) == 1.0 and sigmoid(-744.8) < 1e-300
