"""Noise models: numpy densities and CDFs agree with NumPyro's distributions and scipy."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logit

from bayescale.noise import NOISE_MODELS, link, noise_cdf, noise_distribution, noise_logpdf

Y = {"log": np.array([0.4, 1.7, 3.2]), "identity": np.array([0.4, 1.7, 3.2]),
     "logit": np.array([0.05, 0.5, 0.93])}
LOC = {"log": np.log([0.5, 1.6, 3.0]), "identity": np.array([0.5, 1.6, 3.0]),
       "logit": np.array([-2.0, 0.1, 2.4])}
SCALE = np.array([0.1, 0.3, 0.05])


@pytest.mark.parametrize("noise", list(NOISE_MODELS))
def test_logpdf_matches_numpyro(noise):
    g = link(noise)
    d = noise_distribution(noise, jnp.asarray(LOC[g]), jnp.asarray(SCALE))
    expected = np.asarray(d.log_prob(jnp.asarray(Y[g])), float)    # float32 inside NumPyro
    np.testing.assert_allclose(noise_logpdf(noise, Y[g], LOC[g], SCALE), expected, atol=2e-5)


@pytest.mark.parametrize("noise", list(NOISE_MODELS))
def test_cdf_matches_scipy(noise):
    g = link(noise)
    y, loc = Y[g], LOC[g]
    z = {"log": (np.log(y) - loc) / SCALE, "identity": (y - loc) / SCALE,
         "logit": (logit(y) - loc) / SCALE}[g]
    ref = stats.t.cdf(z, 4) if noise == "student_t_log" else stats.norm.cdf(z)
    np.testing.assert_allclose(noise_cdf(noise, y, loc, SCALE), ref, rtol=1e-12, atol=1e-15)


def test_outside_the_support():
    assert np.all(noise_logpdf("student_t_log", np.array([0.0, -1.0]), 0.0, 1.0) == -np.inf)
    assert np.all(noise_logpdf("normal_logit", np.array([0.0, 1.0, 1.5]), 0.0, 1.0) == -np.inf)
    np.testing.assert_array_equal(noise_cdf("normal_logit", np.array([-0.1, 0.0, 1.0, 2.0]), 0.0, 1.0),
                                  [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(noise_cdf("normal_log", np.array([-0.1, 0.0]), 0.0, 1.0), [0.0, 0.0])
