"""The law catalogue, table-driven: every card compiles, has priors on every parameter and
gives finite, positive prior predictive draws; user cards and formula strings behave like
built-ins; malformed cards fail with a CardError that says what is wrong."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpyro.infer import Predictive
from numpyro.infer.util import log_density

import bayescale
from bayescale.cards import STANDARD_INPUTS, law_from_text
from bayescale.errors import CardError, FormulaError, PriorError
from bayescale.model import hat_name, natural_values, reference_points
from bayescale.noise import link

LAWS = bayescale.list_laws()
N_RUNS = 40


def test_catalogue_holds_the_laws_the_design_asks_for():
    assert set(LAWS) >= {"power_law", "power_law_constant", "kaplan", "chinchilla", "bnsl1", "bnsl2",
                         "data_constrained", "overtraining", "downstream_error", "sigmoid_metric"}


def data_like_inputs(law, n: int = N_RUNS) -> tuple[dict, np.ndarray]:
    """Inputs spanning the ranges of real scaling studies, and a typical response."""
    rng = np.random.default_rng(0)

    def logspace(lo, hi, shuffle):
        v = np.geomspace(lo, hi, n)
        return v[rng.permutation(n)] if shuffle else v

    columns = {
        "N": logspace(1e7, 1e10, False), "D": logspace(1e8, 1e11, True), "C": logspace(1e17, 1e22, False),
        "U": logspace(1e8, 1e10, True), "M": logspace(5, 500, True), "x": logspace(1e6, 1e10, False),
        "L": np.linspace(2.0, 4.0, n),
    }
    inputs = {k: columns[k] for k in law.input_names}
    bounded = law.response.units.startswith("fraction")
    response = np.full(n, 0.5 if bounded else 3.0)
    return inputs, response


@pytest.fixture(scope="module", params=LAWS)
def prior_draws(request):
    law = bayescale.load_law(request.param)
    inputs, response = data_like_inputs(law)
    refs = reference_points(law, inputs, response)
    model = bayescale.make_model(law, law.noise)
    draws = Predictive(model, num_samples=500)(jax.random.PRNGKey(0), inputs, refs)
    return law, inputs, refs, {k: np.asarray(v, float) for k, v in draws.items()}


# --------------------------------------------------------------------------- the catalogue


@pytest.mark.parametrize("name", LAWS)
def test_card_compiles_and_is_complete(name):
    law = bayescale.load_law(name)
    assert law.name == name
    assert law.source == "builtin"
    lets = {n for n, _ in law.lets}
    # the formula uses only declared names; every parameter is used and has a prior
    assert law.formula.names <= set(law.input_names) | set(law.param_names) | lets
    used = law.formula.names | {n for _, e in law.lets for n in e.names}
    assert set(law.param_names) <= used
    for p in law.params:
        assert isinstance(p.prior, bayescale.cards.Prior)
        assert p.meaning and p.prior_note, f"{name}.{p.name} lacks a meaning or a prior note"
        if p.scale is not None:
            refs = {f"{i}_ref" for i in law.input_names} | {"loss_ref"}
            assert p.scale.names <= refs | set(law.param_names)
    # irreducible term and exponents are parameters
    for p in list(law.exponents) + ([law.irreducible] if law.irreducible else []):
        assert p in law.param_names
    assert law.exponents, f"{name} declares no exponents"
    # inputs are documented; a law in N and D states its compute cost
    for spec in law.inputs:
        assert spec.meaning and spec.kind
    if {"N", "D"} <= set(law.input_names):
        assert law.cost is not None and law.cost.names <= set(law.input_names)
        assert law.compute({"N": 1e9, "D": 2e10}) == pytest.approx(6 * 1e9 * 2e10)
    assert law.noise in bayescale.NOISE_MODELS
    assert law.sigma_prior.positive
    assert law.citation and law.description and law.title
    assert len(law.hash) == 16 and law.hash == bayescale.load_law(name).hash


def test_prior_predictive_is_finite_and_positive(prior_draws):
    law, inputs, refs, draws = prior_draws
    # every latent site was drawn, and the natural value of every parameter is recorded
    for p in law.params:
        assert p.name in draws
        if p.scale is not None:
            assert hat_name(p.name) in draws
        assert np.all(np.isfinite(draws[p.name])), p.name
        lo, hi = p.prior.bounds
        if p.scale is None:
            assert np.all((draws[p.name] >= lo) & (draws[p.name] <= hi)), p.name
    assert np.all(draws["sigma"] > 0)
    # the law's mean at every draw, in float64 (derived parameters recomputed from the sampled
    # coordinates in float64: Kaplan's N_c = N_ref * g_N**(alpha_D / alpha_N) * L_c**(1 / alpha_N)
    # exceeds float32 for some prior draws, which is why the model uses its log)
    z = [p.prior.unconstrain(draws[hat_name(p.name) if p.scale is not None else p.name]) for p in law.params]
    natural = natural_values(law, z, refs)
    params = {p: natural[p][:, None] for p in law.param_names}
    x = {k: v[None, :] for k, v in inputs.items()}
    mean = np.asarray(law.mean(params, x, xp="numpy"))
    log_mean = np.asarray(law.log_mean(params, x, xp="numpy"))
    assert mean.shape == (500, N_RUNS)
    assert np.all(np.isfinite(mean)) and np.all(mean > 0)
    assert np.all(np.isfinite(log_mean))
    np.testing.assert_allclose(log_mean, np.log(mean), rtol=1e-9, atol=1e-9)
    if law.response.units.startswith("fraction"):  # bounded metrics stay in (0, 1]
        assert np.all(mean <= 1.0)
    # the response draws
    y = draws["loss"]
    assert y.shape == (500, N_RUNS)
    assert np.all(np.isfinite(y))
    # every card's default noise keeps draws in the response's support: log noise > 0, and
    # logit noise (the bounded metrics) strictly inside (0, 1)
    assert np.all(y > 0)
    if link(law.noise) == "logit":
        assert np.all(y < 1)


@pytest.mark.parametrize("name", LAWS)
def test_prior_predictive_under_log_noise_at_other_loss_levels(name):
    """Every card with each log-space noise model, at loss levels far from the data-like one.

    Response draws are positive by construction under log-space noise.  Losses of 0.3 or 8
    (nats, bits, per-character...) move the reference points: the scaled parameters' natural
    values can then overflow float32 (Kaplan's N_c = N_c_hat * N_ref * loss_ref**(1/alpha_N)
    reaches 1e43 at loss 8), but the law sees their logs, so the draws stay finite.  Cards
    with an unscaled (bounded) response keep their data-like level.
    """
    law = bayescale.load_law(name)
    inputs, response = data_like_inputs(law)
    levels = (0.3, 8.0) if law.response.scale else (response[0], response[0])
    for noise, level in zip(("normal_log", "student_t_log"), levels):
        refs = reference_points(law, inputs, np.full(N_RUNS, level))
        draws = Predictive(bayescale.make_model(law, noise), num_samples=300)(
            jax.random.PRNGKey(2), inputs, refs)
        y = np.asarray(draws["loss"])
        assert np.all(np.isfinite(y)) and np.all(y > 0), (noise, level, np.mean(~np.isfinite(y)))


def test_range_reference_points_only_for_cards_that_use_them():
    """``<input>_min`` / ``<input>_max`` are reference points of a card whose scales or derived
    parameters use them (downstream_error is anchored at the data's smallest and largest loss),
    and of no other card (their fits and fit files keep the geometric means alone)."""
    from bayescale.errors import DataError

    law = bayescale.load_law("downstream_error")
    assert law.range_inputs == ("L",)
    refs = reference_points(law, {"L": np.array([3.0, 2.5, 4.0])}, np.ones(3))
    assert refs["L_min"] == 2.5 and refs["L_max"] == 4.0
    assert refs["L_ref"] == pytest.approx(30.0 ** (1 / 3))
    inputs, response = data_like_inputs(bayescale.load_law("chinchilla"))
    assert set(reference_points(bayescale.load_law("chinchilla"), inputs, response)) == {"N_ref", "D_ref", "loss_ref"}
    with pytest.raises(DataError, match=r"anchored at the smallest and largest L of the runs, but every run has "
                                        r"L = 3; give runs with at least two different values of L"):
        reference_points(law, {"L": np.full(4, 3.0)}, np.ones(4))
    anchored = law_from_text(MINIMAL.replace("[params.E]", "[params.Ec]") + '[derived]\nE = "Ec * x_max / x_min"\n',
                             source="test")
    assert anchored.range_inputs == ("x",)
    assert set(reference_points(anchored, {"x": np.array([1.0, 4.0])}, np.ones(2))) == {
        "x_ref", "x_min", "x_max", "loss_ref"}


def test_model_conditions_on_observed_loss():
    law = bayescale.load_law("chinchilla")
    inputs, response = data_like_inputs(law)
    refs = reference_points(law, inputs, response)
    model = bayescale.make_model(law, "student_t_log")
    params = {"L_c_hat": 1.0, "f_E": 0.5, "g_N": 0.4, "alpha": 0.35, "beta": 0.35, "sigma": 0.05}
    lp_obs, trace = log_density(model, (inputs, refs), {"loss": response}, params)
    assert trace["loss"]["is_observed"]
    lp_other, _ = log_density(model, (inputs, refs), {"loss": response * 1.5}, params)
    assert np.isfinite(float(lp_obs)) and float(lp_obs) != float(lp_other)
    assert model.__name__ == "chinchilla_student_t_log"


# --------------------------------------------------------------------------- user laws


def test_user_card_file_works_like_the_builtin(tmp_path):
    builtin = bayescale.load_law("chinchilla")
    path = tmp_path / "my_law.toml"
    path.write_text(builtin.text)
    user = bayescale.law_from_file(path)
    assert user.source == str(path)
    assert user.hash == builtin.hash
    assert user.formula == builtin.formula
    assert user.params == builtin.params and user.inputs == builtin.inputs
    # the same model: identical log density at the same point
    inputs, response = data_like_inputs(builtin)
    refs = reference_points(builtin, inputs, response)
    params = {"L_c_hat": 1.0, "f_E": 0.5, "g_N": 0.4, "alpha": 0.35, "beta": 0.35, "sigma": 0.05}
    lp = [float(log_density(bayescale.make_model(law, law.noise), (inputs, refs), {"loss": response},
                            params)[0]) for law in (builtin, user)]
    assert lp[0] == lp[1]
    # and resolve_law/fit accept it through card=
    assert bayescale.cards.resolve_law(card=str(path)).hash == builtin.hash


def test_edited_user_card_is_a_new_law(tmp_path):
    text = bayescale.load_law("power_law_constant").text
    text = text.replace('name = "power_law_constant"', 'name = "my_pl"').replace(
        'prior = "Uniform(0, 2)"', 'prior = "Uniform(0.1, 0.9)"')
    path = tmp_path / "my_pl.toml"
    path.write_text(text)
    law = bayescale.law_from_file(path)
    assert law.name == "my_pl"
    assert str(dict((p.name, p) for p in law.params)["alpha"].prior) == "Uniform(0.1, 0.9)"
    assert law.hash != bayescale.load_law("power_law_constant").hash


def test_law_from_formula_classifies_inputs_and_parameters():
    law = bayescale.law_from_formula(
        "E + A / N**alpha + B / D**beta",
        {"E": "LogNormal(0.5, 0.5)", "A": "LogNormal(6, 2)", "B": "LogNormal(6, 2)",
         "alpha": "Uniform(0, 1)", "beta": "Uniform(0, 1)"})
    # both in order of first appearance in the formula
    assert law.input_names == ("N", "D")
    assert law.param_names == ("E", "A", "alpha", "B", "beta")
    assert all(p.scale is None for p in law.params)  # priors on natural values
    assert law.source == "formula" and law.noise == "student_t_log"
    assert law.cost is not None  # N and D: C = 6 N D
    assert law.response.name == "loss" and not law.response.scale
    # the same value as the built-in card at the same natural parameters
    builtin = bayescale.load_law("chinchilla")
    p = {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.37}
    x = {"N": np.array([1e8, 1e9]), "D": np.array([1e9, 1e10])}
    np.testing.assert_allclose(law.mean(p, x, xp="numpy"), builtin.mean(p, x, xp="numpy"), rtol=1e-12)


def test_law_from_formula_with_declared_inputs_and_options():
    law = bayescale.law_from_formula("a * steps**(-b)", {"a": "LogNormal(0, 2)", "b": "Uniform(0, 1)"},
                                     inputs=["steps"], noise="normal_log", response="val_loss",
                                     name="mine", sigma_prior="HalfNormal(0.2)")
    assert law.input_names == ("steps",) and law.name == "mine"
    assert law.noise == "normal_log" and law.response.name == "val_loss"
    assert str(law.sigma_prior) == "HalfNormal(0.2)"
    assert law.cost is None


def test_law_from_formula_prior_predictive_and_fit():
    """A user formula goes through the same model, validation and NUTS as a built-in card."""
    priors = {"E": "LogNormal(0.5, 0.5)", "A": "LogNormal(3, 2)", "alpha": "Uniform(0.05, 1)"}
    law = bayescale.law_from_formula("E + A * x**(-alpha)", priors)
    x = np.geomspace(1e3, 1e7, 25)
    refs = reference_points(law, {"x": x}, np.full(25, 3.0))
    draws = Predictive(bayescale.make_model(law, law.noise), num_samples=300)(
        jax.random.PRNGKey(0), {"x": x}, refs)
    assert np.all(np.isfinite(np.asarray(draws["loss"]))) and np.all(np.asarray(draws["loss"]) > 0)

    # noiseless-ish data from E = 1.7, A = 30, alpha = 0.4; n = 25, sigma 0.005 on log loss
    rng = np.random.default_rng(3)
    loss = (1.7 + 30.0 * x**-0.4) * np.exp(0.005 * rng.standard_normal(25))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
        fit = bayescale.fit(pd.DataFrame({"x": x, "loss": loss}), formula="E + A * x**(-alpha)",
                            priors=priors, chains=2, warmup=300, draws=300, seed=1, progress=False)
    assert fit.law.source == "formula"
    assert fit.diagnostics.divergences == 0
    for name, truth in {"E": 1.7, "alpha": 0.4}.items():
        lo, hi = np.quantile(fit.draws(name), [0.05, 0.95])
        assert lo <= truth <= hi, (name, lo, hi)


# --------------------------------------------------------------------------- malformed cards

MINIMAL = """
name = "mini"
formula = "E + A * x**(-alpha)"

[inputs.x]
meaning = "scale"
kind = "other"

[params.E]
prior = "LogNormal(0, 1)"

[params.A]
prior = "LogNormal(0, 1)"

[params.alpha]
prior = "Uniform(0, 1)"
"""


def test_minimal_card_compiles_with_defaults():
    law = law_from_text(MINIMAL, source="test")
    assert law.noise == "student_t_log" and str(law.sigma_prior) == "HalfNormal(0.1)"
    assert law.response.name == "loss" and law.title == "mini"


def _replace(old: str, new: str) -> str:
    assert old in MINIMAL
    return MINIMAL.replace(old, new)


CARD_ERRORS = [
    ("missing formula", _replace('formula = "E + A * x**(-alpha)"\n', ""),
     CardError, r"card 'mini' \(test\): missing required key 'formula'"),
    ("missing name", _replace('name = "mini"\n', ""), CardError, r"missing required key 'name'"),
    ("unknown key", _replace('name = "mini"', 'name = "mini"\nformual = "x"'),
     CardError, r"unknown keys \['formual'\]; known keys are \[.*'formula'"),
    ("param without prior", _replace('[params.E]\nprior = "LogNormal(0, 1)"', '[params.E]\nmeaning = "floor"'),
     CardError, r"parameter 'E': missing required key 'prior'"),
    ("param not a table", _replace('[params.E]\nprior = "LogNormal(0, 1)"', '[params]\nE = "LogNormal(0, 1)"'),
     CardError, r"parameter 'E' must be a table with at least a prior"),
    ("unused param", MINIMAL + '\n[params.B]\nprior = "LogNormal(0, 1)"\n',
     CardError, r"parameters \['B'\] have priors but the formula never uses them"),
    ("unknown noise", _replace('name = "mini"', 'name = "mini"\nnoise = "cauchy"'),
     CardError, r"noise 'cauchy' is not one of student_t_log, normal_log, normal_raw, normal_logit"),
    ("formula uses an undeclared name", _replace("E + A * x**(-alpha)", "E + A * x**(-alpha) + Z"),
     FormulaError, r"the unknown name 'Z'.*Allowed:"),
    ("formula with attribute access", _replace("E + A * x**(-alpha)", "E + A * x.real"),
     FormulaError, r"attribute access"),
    ("bad prior", _replace('prior = "Uniform(0, 1)"', 'prior = "Uniform(1, 0)"'),
     PriorError, r"card 'mini' \(test\) parameter 'alpha' prior 'Uniform\(1, 0\)': Uniform needs low < high"),
    ("prior not a string", _replace('prior = "Uniform(0, 1)"', "prior = 0.5"),
     CardError, r"key 'prior' must be a str, got 0.5"),
    ("invalid TOML", MINIMAL + "\n[params.E\n", CardError, r"is not valid TOML"),
    ("no inputs", _replace('[inputs.x]\nmeaning = "scale"\nkind = "other"\n', ""),
     CardError, r"missing required key 'inputs'"),
    ("bad input kind", _replace('kind = "other"', 'kind = "seconds"'),
     CardError, r"input 'x': kind 'seconds' is not one of parameters, tokens, flops"),
    ("name declared twice", MINIMAL + '\n[params.x]\nprior = "LogNormal(0, 1)"\n',
     CardError, r"names \['x'\] are declared twice"),
    ("reserved name", _replace("E + A", "sigma + A").replace("[params.E]", "[params.sigma]"),
     CardError, r"names \['sigma'\] are reserved"),
    ("reserved range name", MINIMAL.replace("E + A", "x_min + A").replace("[params.E]", "[params.x_min]"),
     CardError, r"names \['x_min'\] are reserved \(.*<input>_min, <input>_max"),
    ("irreducible not a parameter", _replace('name = "mini"', 'name = "mini"\nirreducible = "F"'),
     CardError, r"'F' \(irreducible/exponents\) is not a parameter"),
    ("exponents not a list", _replace('name = "mini"', 'name = "mini"\nexponents = "alpha"'),
     CardError, r"key 'exponents' must be a list"),
    ("sigma prior not positive", _replace('name = "mini"', 'name = "mini"\nsigma_prior = "Normal(0, 1)"'),
     CardError, r"sigma_prior must have positive support"),
    ("bad cost", MINIMAL + '\n[cost]\nflops = "6 * x"\n',
     CardError, r"\[cost\] must be a table with compute"),
    ("scale uses a scaled parameter",
     _replace('[params.A]\nprior = "LogNormal(0, 1)"', '[params.A]\nprior = "LogNormal(0, 1)"\nscale = "E"')
     .replace('[params.E]\nprior = "LogNormal(0, 1)"', '[params.E]\nprior = "LogNormal(0, 1)"\nscale = "loss_ref"'),
     FormulaError, r"parameter 'A' scale 'E': the unknown name 'E'"),
]


@pytest.mark.parametrize("what, text, exc, pattern", CARD_ERRORS, ids=[c[0] for c in CARD_ERRORS])
def test_malformed_card(what, text, exc, pattern):
    with pytest.raises(exc, match=pattern):
        law_from_text(text, source="test")


def test_card_file_errors(tmp_path):
    with pytest.raises(CardError, match=r"card file '.*nope\.toml' does not exist"):
        bayescale.law_from_file(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL.replace('noise', 'x').replace('name = "mini"', 'name = "mini"\nnoise = "t"'))
    with pytest.raises(CardError, match=rf"card 'mini' \({bad}\): noise 't' is not one of"):
        bayescale.law_from_file(bad)


def test_unknown_builtin_law_lists_the_catalogue():
    with pytest.raises(CardError, match=r"unknown law 'chinchila'; built-in laws are: bnsl1, bnsl2, chinchilla"):
        bayescale.load_law("chinchila")


FORMULA_ERRORS = [
    ("E + A / N**alpha", {"E": "LogNormal(0, 1)", "A": "LogNormal(0, 1)"}, CardError,
     r"parameters \['alpha'\] have no prior; give one per parameter, e\.g\. --prior \"alpha=Uniform\(0, 1\)\""),
    ("A / N**alpha", {"A": "LogNormal(0, 1)", "alpha": "Uniform(0, 1)", "E": "LogNormal(0, 1)"}, CardError,
     r"priors given for \['E'\], which the formula 'A / N\*\*alpha' does not use"),
    ("A * alpha", {"A": "LogNormal(0, 1)", "alpha": "Uniform(0, 1)"}, CardError, r"uses no input"),
    ("A * N.size", {"A": "LogNormal(0, 1)"}, FormulaError, r"attribute access.*Allowed:"),
    ("A * N**alpha", {"A": "LogNormal(0, 1)", "alpha": "Uniform(1, 0)"}, PriorError, r"low < high"),
    ("A * N**alpha", "alpha=Uniform(0, 1)", CardError, r"priors must be a dict"),
]


@pytest.mark.parametrize("formula, priors, exc, pattern", FORMULA_ERRORS)
def test_bad_user_formula(formula, priors, exc, pattern):
    with pytest.raises(exc, match=pattern):
        bayescale.law_from_formula(formula, priors)


def test_standard_inputs_are_documented():
    for name, (meaning, _units, kind) in STANDARD_INPUTS.items():
        assert meaning and kind in bayescale.cards.KINDS, name


def test_derived_parameters_built_on_the_data_range_are_known_positive():
    """bnsl1's d1 = x_min * (x_max / x_min)**(...) and b (which uses d1) are provably positive, so the
    law's mean uses their stable logs: a steep prior draw (c0 ~ 7 at x_ref 1e8) overflows b in float32
    while log b stays finite (regression: b = inf gave NaN prior-predictive losses)."""
    law = bayescale.load_law("bnsl1")
    assert {"d1", "b", "a", "c0", "c1"} <= law.positive_params
    refs = {"x_ref": 1e8, "x_min": 1e6, "x_max": 1e10, "loss_ref": 3.0}
    coords = {"L_c": jnp.float32(5.75), "f_a": jnp.float32(0.47), "s_m": jnp.float32(7.6),
              "k1": jnp.float32(2.0), "u": jnp.float32(0.39), "w": jnp.float32(0.39)}
    values, logs = law.derived_values(coords, refs, logs={"L_c": jnp.log(coords["L_c"])})
    assert not np.isfinite(float(values["b"])) and np.isfinite(float(logs["b"]))
    x = {"x": jnp.geomspace(1e6, 1e10, 5).astype(jnp.float32)}
    log_mean = law.log_mean({**coords, **values}, x, logs={"L_c": jnp.log(coords["L_c"]), **logs})
    assert np.all(np.isfinite(np.asarray(log_mean)))
