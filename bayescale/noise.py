"""Noise models: how observed losses scatter around the law.

The noise model is a named choice, orthogonal to the law:

``student_t_log`` (default)
    ``log y ~ StudentT(4, log mu, sigma)``.  Robust to the occasional
    diverged or mis-logged run; on Epoch's Chinchilla data it is what makes a
    dense mass matrix safe (with a Normal the outliers cause divergences).
``normal_log``
    ``log y ~ Normal(log mu, sigma)``: multiplicative Gaussian error.
``normal_raw``
    ``y ~ Normal(mu, sigma * loss_ref)`` (``sigma`` alone when the card's
    response is not scaled): additive error on the raw response.

Every model is a distribution over the *raw* response ``y``: the log-space
models are pushed through ``exp`` so their densities carry the Jacobian
``-log y``.  Pointwise log-likelihoods of all three are therefore densities of
the same quantity, and PSIS-LOO can compare them directly.

``location`` is the law's mean in the stable log-sum-exp form (see
:func:`bayescale.formula.log_evaluate`) for the log-space models and the
law's mean itself for ``normal_raw`` (see :func:`uses_log_mean`).
"""

from __future__ import annotations

__all__ = ["NOISE_MODELS", "STUDENT_T_DF", "noise_cdf", "noise_distribution", "noise_logpdf", "noise_scale",
           "uses_log_mean"]

#: Degrees of freedom of the Student-t noise (fixed: heavy enough tails for
#: outlying runs, light enough that sigma stays identified).
STUDENT_T_DF = 4.0

NOISE_MODELS = {
    "student_t_log": "Student-t(4) on log loss",
    "normal_log": "Normal on log loss",
    "normal_raw": "Normal on raw loss",
}


def uses_log_mean(noise: str) -> bool:
    """Whether the noise model is centred on ``log mu`` (else on ``mu``)."""
    return noise != "normal_raw"


def noise_distribution(noise: str, location, sigma, loss_scale=1.0):
    """The NumPyro distribution of the raw response for one noise model."""
    import numpyro.distributions as dist
    from numpyro.distributions.transforms import ExpTransform

    if noise == "student_t_log":
        return dist.TransformedDistribution(dist.StudentT(STUDENT_T_DF, location, sigma), ExpTransform())
    if noise == "normal_log":
        return dist.LogNormal(location, sigma)
    if noise == "normal_raw":
        return dist.Normal(location, sigma * loss_scale)
    raise ValueError(f"unknown noise model {noise!r}; choose one of {', '.join(NOISE_MODELS)}")


def noise_scale(noise: str, sigma, loss_ref: float):
    """The scale of the noise in the space it acts on (log loss, or raw loss)."""
    return sigma * loss_ref if noise == "normal_raw" else sigma


def noise_cdf(noise: str, y, location, scale):
    """``P(Y <= y)`` for one noise model, in numpy (float64), broadcasting.

    Exact: the Student-t(4) CDF has the closed form
    ``1/2 + t (t^2 + 6) / (2 (t^2 + 4)^(3/2))``.
    """
    import numpy as np
    from scipy.special import ndtr

    if uses_log_mean(noise):
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (np.log(np.where(y > 0, y, np.nan)) - location) / scale
        z = np.where(np.asarray(y) > 0, z, -np.inf)
    else:
        z = (y - location) / scale
    if noise == "student_t_log":
        z = np.clip(z, -1e150, 1e150)
        u = z * z
        return 0.5 + z * (u + 6.0) / (2.0 * (u + 4.0) ** 1.5)
    return ndtr(z)


def noise_logpdf(noise: str, y, location, scale):
    """``log p(y)`` of the raw response for one noise model, in numpy (float64), broadcasting.

    The same density as :func:`noise_distribution` (Jacobian ``-log y``
    included for the log-space models): ``location`` and ``scale`` as in
    :func:`noise_cdf`.  Used for the stored pointwise log-likelihood and to
    score held-out runs outside JAX.  Closed forms (no scipy.stats import):
    Student-t with ``nu`` degrees of freedom has log density
    ``lgamma((nu+1)/2) - lgamma(nu/2) - log(sqrt(nu pi) s) - (nu+1)/2 log(1 + z^2/nu)``.
    """
    import numpy as np
    from scipy.special import gammaln

    y = np.asarray(y, float)
    scale = np.asarray(scale, float)
    if uses_log_mean(noise):
        with np.errstate(divide="ignore", invalid="ignore"):
            logy = np.log(np.where(y > 0, y, np.nan))
        z = (logy - location) / scale
        if noise == "student_t_log":
            nu = STUDENT_T_DF
            const = gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * np.log(nu * np.pi)
            out = const - np.log(scale) - (nu + 1) / 2 * np.log1p(z * z / nu) - logy
        else:
            out = -0.5 * z * z - np.log(scale) - 0.5 * np.log(2 * np.pi) - logy
        return np.where(y > 0, out, -np.inf)
    z = (y - location) / scale
    return -0.5 * z * z - np.log(scale) - 0.5 * np.log(2 * np.pi)
