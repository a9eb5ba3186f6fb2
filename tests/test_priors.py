"""Prior strings: every family parses to the right NumPyro distribution; bad strings fail early."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from bayescale.errors import BayescaleError, PriorError
from bayescale.priors import PRIORS, Prior, parse_prior

# family string, expected args, support (low, high), numpyro class name
GOOD = [
    ("Uniform(0.05, 1)", (0.05, 1.0), (0.05, 1.0), "Uniform"),
    ("Normal(-1, 1.5)", (-1.0, 1.5), (-math.inf, math.inf), "Normal"),
    ("HalfNormal(0.1)", (0.1,), (0.0, math.inf), "HalfNormal"),
    ("LogNormal(-0.7, 1.0)", (-0.7, 1.0), (0.0, math.inf), "LogNormal"),
    ("Exponential(2)", (2.0,), (0.0, math.inf), "Exponential"),
    ("Gamma(2, 0.5)", (2.0, 0.5), (0.0, math.inf), "Gamma"),
    ("Beta(1.5, 3)", (1.5, 3.0), (0.0, 1.0), "Beta"),
    ("StudentT(4, 0, 2)", (4.0, 0.0, 2.0), (-math.inf, math.inf), "StudentT"),
    ("HalfCauchy(1e-1)", (0.1,), (0.0, math.inf), "HalfCauchy"),
    ("TruncatedNormal(0.3, 0.2, 0, 1)", (0.3, 0.2, 0.0, 1.0), (0.0, 1.0), "TwoSidedTruncatedDistribution"),
]


def test_the_table_covers_every_family():
    assert {g[0].split("(")[0] for g in GOOD} == set(PRIORS)


@pytest.mark.parametrize("text, args, bounds, cls", GOOD)
def test_every_family_parses(text, args, bounds, cls):
    prior = parse_prior(text)
    assert prior.family == text.split("(")[0]
    assert prior.args == pytest.approx(args)
    assert prior.bounds == bounds
    assert prior.positive == (bounds[0] >= 0)
    d = prior.dist()
    assert type(d).__name__ == cls
    draws = np.asarray(d.sample(jax.random.PRNGKey(0), (2000,)))
    assert np.all(np.isfinite(draws))
    assert draws.min() >= bounds[0] and draws.max() <= bounds[1]
    m = prior.median()
    assert bounds[0] <= m <= bounds[1] and math.isfinite(m)
    # the stated "median" is a central value: between the 5% and 95% quantiles of the draws
    lo, hi = np.quantile(draws, [0.05, 0.95])
    assert lo <= m <= hi


@pytest.mark.parametrize("text", ["  Normal( 0 ,1 )  ", "Normal(+0, 1)", "Normal(-0.0, 1)", "Normal(0, 1.)"])
def test_whitespace_and_signs(text):
    assert parse_prior(text) == Prior("Normal", (0.0, 1.0))


def test_string_form_round_trips():
    for text, *_ in GOOD:
        prior = parse_prior(text)
        assert parse_prior(str(prior)) == prior


def test_integer_and_exponent_literals_become_floats():
    prior = parse_prior("Uniform(0, 1e2)")
    assert prior.args == (0.0, 100.0)
    assert all(isinstance(a, float) for a in prior.args)


# --------------------------------------------------------------------------- errors

BAD = [
    # unknown family: the message lists the known ones with their arguments
    ("Cauchy(0, 1)", r"unknown family 'Cauchy'\. Known families: Uniform\(low, high\), Normal\(loc, scale\)"),
    ("normal(0, 1)", r"unknown family 'normal'"),
    ("Laplace(0, 1)", r"unknown family 'Laplace'.*HalfCauchy\(scale\)"),
    # wrong arity
    ("Normal(0)", r"Normal takes 2 arguments \(loc, scale\), got 1"),
    ("HalfNormal(0.1, 2)", r"HalfNormal takes 1 arguments \(scale\), got 2"),
    ("Uniform()", r"Uniform takes 2 arguments \(low, high\), got 0"),
    ("TruncatedNormal(0, 1, 0)", r"TruncatedNormal takes 4 arguments \(loc, scale, low, high\), got 3"),
    # non-numeric arguments
    ("Normal(a, 1)", r"arguments must be plain numbers"),
    ("Normal('0', 1)", r"arguments must be plain numbers"),
    ("Normal(True, 1)", r"arguments must be plain numbers"),
    ("Normal(1 + 1, 1)", r"arguments must be plain numbers"),
    ("Normal(inf, 1)", r"arguments must be plain numbers"),
    ("Normal(--1, 1)", r"arguments must be plain numbers"),
    ("Normal(0, 1e999)", r"arguments must be finite"),
    # invalid values
    ("Normal(0, 0)", r"Normal needs scale > 0"),
    ("HalfNormal(-1)", r"HalfNormal needs scale > 0"),
    ("LogNormal(0, -2)", r"LogNormal needs scale > 0"),
    ("HalfCauchy(0)", r"HalfCauchy needs scale > 0"),
    ("Exponential(0)", r"Exponential needs rate > 0"),
    ("Gamma(0, 1)", r"Gamma needs both > 0"),
    ("Beta(1, -1)", r"Beta needs both > 0"),
    ("StudentT(0, 0, 1)", r"StudentT needs df > 0 and scale > 0"),
    ("StudentT(4, 0, 0)", r"StudentT needs df > 0 and scale > 0"),
    ("Uniform(1, 1)", r"Uniform needs low < high"),
    ("Uniform(2, 1)", r"Uniform needs low < high"),
    ("TruncatedNormal(0, 1, 2, 1)", r"TruncatedNormal needs scale > 0 and low < high"),
    ("TruncatedNormal(0, 0, 0, 1)", r"TruncatedNormal needs scale > 0 and low < high"),
    # not of the form Family(number, ...)
    ("Normal", r"is not of the form Family\(number, \.\.\.\)"),
    ("Normal(0, 1", r"is not of the form Family\(number, \.\.\.\)"),
    ("Normal(loc=0, scale=1)", r"is not of the form Family\(number, \.\.\.\)"),
    ("dist.Normal(0, 1)", r"is not of the form Family\(number, \.\.\.\)"),
    ("-Normal(0, 1)", r"is not of the form Family\(number, \.\.\.\)"),
    ("", r"is not of the form Family\(number, \.\.\.\)"),
    ("__import__('os')", r"unknown family '__import__'"),
]


@pytest.mark.parametrize("text, pattern", BAD)
def test_bad_prior_strings(text, pattern):
    with pytest.raises(PriorError, match=pattern) as info:
        parse_prior(text, what="prior of alpha")
    message = str(info.value)
    assert message.startswith(f"prior of alpha {text!r}")


@pytest.mark.parametrize("value", [0.5, None, ["Normal", 0, 1]])
def test_non_string_prior(value):
    with pytest.raises(PriorError, match=r"must be a string like 'Uniform\(0, 1\)'"):
        parse_prior(value)


def test_prior_error_is_a_bayescale_error():
    with pytest.raises(BayescaleError):
        parse_prior("Normal(0, -1)")
