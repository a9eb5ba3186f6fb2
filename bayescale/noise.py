"""Noise models: how observed responses scatter around the law.

The noise model is a named choice, orthogonal to the law.  Each acts on a
*link* of the response, ``g(y)``, centred on ``g(mu)`` with ``mu`` the law's
value:

``student_t_log`` (default for losses), link ``log``
    ``log y ~ StudentT(4, log mu, sigma)``.  Robust to the occasional
    diverged or mis-logged run; on Epoch's Chinchilla data it is what makes a
    dense mass matrix safe (with a Normal the outliers cause divergences).
``normal_log``, link ``log``
    ``log y ~ Normal(log mu, sigma)``: multiplicative Gaussian error.
``normal_raw``, link ``identity``
    ``y ~ Normal(mu, sigma * loss_ref)`` (``sigma`` alone when the card's
    response is not scaled): additive error on the raw response.
``normal_logit`` (default for bounded metrics), link ``logit``
    ``logit y ~ Normal(logit mu, sigma)`` for responses in (0, 1) such as
    accuracy or error rates: the noise can never push a prediction outside
    (0, 1), and it shrinks near the bounds as binomial-like noise does.

Every model is a distribution over the *raw* response ``y``: the linked
models are pushed through the inverse link, so their densities carry the
Jacobian (``-log y`` for log, ``-log y - log(1 - y)`` for logit).  Pointwise
log-likelihoods of all of them are therefore densities of the same quantity,
and PSIS-LOO can compare them directly.

``location`` is ``g(mu)``, computed stably by :func:`noise_location` (the
log-sum-exp form of ``log mu``; ``logit mu = log mu - log1p(-mu)``).
"""

from __future__ import annotations

__all__ = ["LINKS", "NOISE_MODELS", "STUDENT_T_DF", "link", "noise_cdf", "noise_distribution",
           "noise_location", "noise_logpdf", "noise_sample", "noise_scale", "apply_link", "uses_log_mean"]

#: Degrees of freedom of the Student-t noise (fixed: heavy enough tails for
#: outlying runs, light enough that sigma stays identified).
STUDENT_T_DF = 4.0

NOISE_MODELS = {
    "student_t_log": "Student-t(4) on log loss",
    "normal_log": "Normal on log loss",
    "normal_raw": "Normal on raw loss",
    "normal_logit": "Normal on logit of a response in (0, 1)",
}

LINKS = {"student_t_log": "log", "normal_log": "log", "normal_raw": "identity", "normal_logit": "logit"}


def link(noise: str) -> str:
    """The space the noise acts in: ``"log"``, ``"logit"`` or ``"identity"``."""
    return LINKS[noise]


def uses_log_mean(noise: str) -> bool:
    """Whether the noise model is centred on ``log mu``."""
    return LINKS[noise] == "log"


def noise_location(noise: str, law, params: dict, inputs: dict, xp: str = "jax", logs=None):
    """``g(mu)`` for the noise model's link ``g``, in a numerically stable form."""
    kind = LINKS[noise]
    if kind == "identity":
        return law.mean(params, inputs, xp=xp, logs=logs)
    log_mu = law.log_mean(params, inputs, xp=xp, logs=logs)
    if kind == "log":
        return log_mu
    from .formula import backend

    fns = backend(xp)
    return log_mu - fns["log1p"](-fns["exp"](log_mu))


def noise_distribution(noise: str, location, sigma, loss_scale=1.0):
    """The NumPyro distribution of the raw response for one noise model."""
    import numpyro.distributions as dist
    from numpyro.distributions.transforms import ExpTransform, SigmoidTransform

    if noise == "student_t_log":
        return dist.TransformedDistribution(dist.StudentT(STUDENT_T_DF, location, sigma), ExpTransform())
    if noise == "normal_log":
        return dist.LogNormal(location, sigma)
    if noise == "normal_raw":
        return dist.Normal(location, sigma * loss_scale)
    if noise == "normal_logit":
        return dist.TransformedDistribution(dist.Normal(location, sigma), SigmoidTransform())
    raise ValueError(f"unknown noise model {noise!r}; choose one of {', '.join(NOISE_MODELS)}")


def noise_scale(noise: str, sigma, loss_ref: float):
    """The scale of the noise in the space it acts on (log loss, logit, or raw loss)."""
    return sigma * loss_ref if noise == "normal_raw" else sigma


def apply_link(noise: str, y):
    """``(g(y), log |dg/dy|, inside)``: the linked response, the log Jacobian, and where y is
    inside the support (outside, g is NaN)."""
    import numpy as np

    y = np.asarray(y, float)
    kind = LINKS[noise]
    if kind == "identity":
        return y, np.zeros_like(y), np.ones(y.shape, bool)
    inside = (y > 0) & (y < 1) if kind == "logit" else y > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        safe = np.where(inside, y, np.nan)
        if kind == "log":
            g = np.log(safe)
            return g, -g, inside
        log_y, log_1my = np.log(safe), np.log1p(-safe)
        return log_y - log_1my, -log_y - log_1my, inside


def noise_cdf(noise: str, y, location, scale):
    """``P(Y <= y)`` for one noise model, in numpy (float64), broadcasting.

    Exact: the Student-t(4) CDF has the closed form
    ``1/2 + t (t^2 + 6) / (2 (t^2 + 4)^(3/2))``.  A response outside the
    link's support (``y <= 0`` for log) has CDF 0 below it and 1 above.
    """
    import numpy as np
    from scipy.special import ndtr

    g, _, inside = apply_link(noise, y)
    z = (g - location) / scale
    below = np.asarray(y) <= 0
    z = np.where(inside, z, np.where(below, -np.inf, np.inf))
    if noise == "student_t_log":
        # as 1/2 + (z / sqrt(z^2 + 4)) (1 + 2 / (z^2 + 4)) / 2: no power of z^2 that could overflow
        z = np.clip(z, -1e150, 1e150)
        u = z * z + 4.0
        return np.clip(0.5 + 0.5 * (z / np.sqrt(u)) * (1.0 + 2.0 / u), 0.0, 1.0)
    return ndtr(z)


def noise_logpdf(noise: str, y, location, scale):
    """``log p(y)`` of the raw response for one noise model, in numpy (float64), broadcasting.

    The same density as :func:`noise_distribution` (the link's Jacobian
    included): ``location`` and ``scale`` as in :func:`noise_cdf`.  Used for
    the stored pointwise log-likelihood and to score held-out runs outside
    JAX.  Closed forms (no scipy.stats import): Student-t with ``nu`` degrees
    of freedom has log density
    ``lgamma((nu+1)/2) - lgamma(nu/2) - log(sqrt(nu pi) s) - (nu+1)/2 log(1 + z^2/nu)``.
    """
    import math

    import numpy as np

    g, log_jacobian, inside = apply_link(noise, y)
    scale = np.asarray(scale, float)
    z = (g - location) / scale
    if noise == "student_t_log":
        nu = STUDENT_T_DF
        const = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
        out = const - np.log(scale) - (nu + 1) / 2 * np.log1p(z * z / nu)
    else:
        out = -0.5 * z * z - np.log(scale) - 0.5 * np.log(2 * np.pi)
    return np.where(inside, out + log_jacobian, -np.inf)


def noise_sample(noise: str, location, scale, rng):
    """Draws of the raw response for one noise model, in numpy (float64), broadcasting
    ``location`` and ``scale`` as in :func:`noise_cdf`; ``rng`` a ``numpy.random.Generator``.

    The same distribution as :func:`noise_distribution`: the noise is drawn in
    the link's space and pushed through the inverse link.
    """
    import numpy as np

    location, scale = np.broadcast_arrays(np.asarray(location, float), np.asarray(scale, float))
    if noise == "student_t_log":
        z = rng.standard_t(STUDENT_T_DF, size=location.shape)
    else:
        z = rng.standard_normal(size=location.shape)
    g = location + scale * z
    kind = LINKS[noise]
    with np.errstate(over="ignore"):
        if kind == "log":
            return np.exp(g)
        if kind == "logit":
            return 1.0 / (1.0 + np.exp(-g))
    return g
