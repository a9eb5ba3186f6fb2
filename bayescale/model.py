"""A :class:`~bayescale.cards.Law` and a noise model as a plain NumPyro model.

``model(inputs, refs, loss=None, mask=None)``: with ``loss`` given it
conditions on the observed responses; with ``loss=None`` the same function
draws predictions (use it with :class:`numpyro.infer.Predictive`).  ``mask``
(booleans, one per run) leaves the runs marked False out of the likelihood:
the sampler pads the runs to a few fixed sizes so that one compiled program
serves data sets of similar size.

* ``inputs``: dict of input name -> 1-D array (raw units, validated > 0);
* ``refs``: dict of reference points: ``<input>_ref`` (geometric means of the
  fitted inputs), ``loss_ref`` (geometric mean of the fitted response) and, for
  cards that use them, ``<input>_min`` / ``<input>_max`` (the inputs' range).

Parameters with a ``scale`` in the card are sampled as dimensionless
``<name>_hat`` with the card's prior, and recorded as the natural value
``<name> = <name>_hat * scale`` (a deterministic site).  Parameters without a
scale are sampled directly.  A card's ``[derived]`` parameters (the law's
natural parameters when the card samples other coordinates, e.g. the loss at
the data's centre and the irreducible fraction) are deterministic sites
computed from those, their logs in the stable form.  The noise scale is the
site ``sigma``.
"""

from __future__ import annotations

import numpy as np

from .cards import Law
from .errors import DataError
from .formula import Scope, evaluate, log_evaluate
from .noise import noise_distribution, noise_location

__all__ = ["hat_name", "log_scale_values", "make_model", "natural_values", "reference_points", "scale_values"]


def hat_name(name: str) -> str:
    return f"{name}_hat"


def reference_points(law: Law, inputs: dict, loss) -> dict:
    """Geometric means of each input and of the response (the data's centre), and the smallest and
    largest value (``<input>_min``, ``<input>_max``) of the inputs whose range the card uses."""
    refs = {f"{k}_ref": float(np.exp(np.mean(np.log(np.asarray(v, float))))) for k, v in inputs.items()}
    for k in law.range_inputs:
        lo, hi = float(np.min(inputs[k])), float(np.max(inputs[k]))
        if not lo < hi:
            raise DataError(f"law {law.name!r} is anchored at the smallest and largest {k} of the runs, but "
                            f"every run has {k} = {lo:g}; give runs with at least two different values of {k}")
        refs[f"{k}_min"], refs[f"{k}_max"] = lo, hi
    refs["loss_ref"] = float(np.exp(np.mean(np.log(np.asarray(loss, float))))) if law.response.scale else 1.0
    return refs


def scale_values(law: Law, values: dict, refs: dict, xp: str = "jax") -> dict:
    """The ``scale`` of every scaled parameter, given the unscaled parameters' values."""
    scope = Scope({**refs, **values}, xp=xp)
    return {p.name: evaluate(p.scale.tree, scope) for p in law.params if p.scale is not None}


def natural_values(law: Law, z, refs: dict) -> dict:
    """Every parameter's value (numpy) from the sampled sites' unconstrained values: the natural
    parameters (derived ones included) and the sampled coordinates, as ``law.reported_names``.

    ``z``: one value or array per parameter, in ``law.params`` order (the model's site
    order, :func:`bayescale.sampler.latent_sites`, without sigma).  A scaled parameter is
    its ``<name>_hat`` times the card's scale.
    """
    values = {p.name: p.prior.constrain(zi) for p, zi in zip(law.params, z) if p.scale is None}
    with np.errstate(over="ignore", invalid="ignore"):
        scales = scale_values(law, values, refs, xp="numpy")
    for p, zi in zip(law.params, z):
        if p.scale is not None:
            values[p.name] = p.prior.constrain(zi) * scales[p.name]
    if law.derived:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            derived, _ = law.derived_values(values, refs, xp="numpy")
        values.update({k: np.asarray(v, float) for k, v in derived.items()})
    return {name: values[name] for name in law.reported_names}


def log_scale_values(law: Law, values: dict, refs: dict, xp: str = "jax") -> dict:
    """``log`` of every scaled parameter's scale, in the stable log form.

    Kaplan's ``N_ref * loss_ref**(1 / alpha_N)`` overflows float32 for small
    ``alpha_N`` and high losses; its log never does.
    """
    positive = set(refs) | {p.name for p in law.params if p.scale is None and p.prior.positive}
    scope = Scope({**refs, **values}, positive=positive, xp=xp)
    return {p.name: log_evaluate(p.scale.tree, scope) for p in law.params if p.scale is not None}


def make_model(law: Law, noise: str, pooling=None):
    """The NumPyro model function for ``law`` with the named noise model.

    ``pooling`` (a :class:`~bayescale.inference.pooling.Pooling`): the parameters it names vary by
    group (each offset centred or not, as the pooling says); the runs' group index is then
    ``inputs[GROUP_INPUT]``.  With integrated-out offsets (``pooling.marginal``) the likelihood is one
    factor ``loss``, the groups' joint density (:func:`~bayescale.inference.run_effects.marginal_log_likelihood`).
    """

    def model(inputs, refs, loss=None, mask=None):
        import jax.numpy as jnp
        import numpyro
        from numpyro.handlers import mask as masked

        values = {}
        for p in law.params:
            if p.scale is None:
                values[p.name] = numpyro.sample(p.name, p.prior.dist())
        scales = scale_values(law, values, refs)
        log_scales = log_scale_values(law, values, refs)
        logs = {}
        for p in law.params:
            if p.scale is not None:
                hat = numpyro.sample(hat_name(p.name), p.prior.dist())
                values[p.name] = numpyro.deterministic(p.name, hat * scales[p.name])
                if p.prior.positive:  # the law sees log(value) = log(hat) + log(scale), finite
                    logs[p.name] = jnp.log(hat) + log_scales[p.name]
        if law.derived:
            derived, derived_logs = law.derived_values(values, refs, logs=logs)
            for name, value in derived.items():
                values[name] = numpyro.deterministic(name, value)
            logs.update(derived_logs)
        sigma = numpyro.sample("sigma", law.sigma_prior.dist())
        if pooling is not None and pooling.marginal:
            from .inference.pooling import GROUP_INPUT
            from .inference.run_effects import marginal_log_likelihood

            inputs = dict(inputs)
            group = inputs.pop(GROUP_INPUT).astype(jnp.int32)
            tau = pooling.sample_sites()[pooling.tau(pooling.vary[0])]
            if loss is None:
                raise ValueError("a model with integrated-out offsets only conditions on observed losses; "
                                 "draw predictions from the fit (bayescale.predict)")
            location = noise_location(noise, law, values, inputs, logs=logs)
            log_y = jnp.log(loss)
            weight = jnp.ones_like(log_y) if mask is None else jnp.asarray(mask, log_y.dtype)
            numpyro.factor("loss", marginal_log_likelihood(log_y - location, log_y, weight, group,
                                                           len(pooling.levels), sigma, tau, jnp))
            return
        if pooling is not None:
            from .inference.pooling import GROUP_INPUT, apply_offsets

            inputs = dict(inputs)
            group = inputs.pop(GROUP_INPUT).astype(jnp.int32)
            sites = pooling.reported(pooling.sample_sites())
            offsets = {name: jnp.stack([pooling.offset(name, i, sites) for i in range(len(pooling.levels))])[group]
                       for name in pooling.vary}
            values, logs = apply_offsets(pooling, law, values, logs, refs, offsets, jnp, "jax")
        location = noise_location(noise, law, values, inputs, logs=logs)
        n = next(iter(inputs.values())).shape[0]
        with numpyro.plate("runs", n), masked(mask=True if mask is None else mask):
            numpyro.sample("loss", noise_distribution(noise, location, sigma, refs["loss_ref"]), obs=loss)

    model.__name__ = f"{law.name}_{noise}"
    model.__doc__ = f"NumPyro model: {law.formula} with {noise} noise."
    return model
