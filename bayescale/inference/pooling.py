"""Partial pooling across groups of runs: chosen law parameters vary by group, the rest are shared.

``fit(runs, law, group="family", vary=["E", "A"])``: each named natural
parameter ``P`` of the law takes a value per group,

* ``P_g = P * exp(tau_P * z_P_g)`` when ``P`` is positive (coefficients,
  irreducible losses, exponents: a relative offset), or
* ``P_g = P + tau_P * z_P_g`` otherwise,

with ``z_P_g ~ Normal(0, 1)`` per group and a group scale
``tau_P ~ HalfNormal(0.3)`` (by default; ``vary={"E": "HalfNormal(0.1)"}``
states another).  This is the non-centred form: the sampler moves the
standardised offsets ``z``, so a small ``tau`` is no funnel.  ``P`` itself is
the law's parameter as the card samples it (through its identified
coordinates) and is the value of a typical group: for a relative offset its
median over groups, the value a *new* group is centred on.  Exponents are
shared unless named (Hestness et al.: model improvements shift the error,
not the exponent).  HalfNormal(0.3) on the scale of a relative offset: its
median 0.2 says a group's parameter typically lies within about 20% of the
typical group's, and 97.5% of its mass lies below 0.67 (a factor of 2).

The sampled sites ``tau_P`` and ``z_P_<i>`` (``i`` indexing
:attr:`Pooling.levels`) are scalars in the posterior beside the law's
parameters; :func:`group_params` turns them into the parameters of one
group, or of a new group (fresh offsets ``z ~ Normal(0, 1)``, one per draw),
which is what :meth:`bayescale.result.Fit.group` hands to ``predict``,
``optimal`` and the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BayescaleError
from ..priors import parse_prior

__all__ = ["DEFAULT_GROUP_SCALE", "GROUP_INPUT", "NEW_GROUP", "Pooling", "group_params", "make_pooling",
           "run_params"]

DEFAULT_GROUP_SCALE = "HalfNormal(0.3)"
#: the name under which the runs' group index travels with the inputs into the model (not a column name)
GROUP_INPUT = "__group__"
#: the level name of a group not in the data
NEW_GROUP = "new"


@dataclass(frozen=True)
class Pooling:
    """Which parameters vary by which group column, the groups, and each fitted run's group."""

    column: str
    levels: tuple[str, ...]
    index: tuple[int, ...]               # the group (position in levels) of every fitted run
    vary: tuple[str, ...]
    scales: tuple[str, ...]              # the prior of each tau, as text
    relative: tuple[bool, ...]           # offset on the log scale (positive parameter) or additive

    def tau(self, name: str) -> str:
        return f"tau_{name}"

    def z(self, name: str, i: int) -> str:
        return f"z_{name}_{i}"

    @property
    def site_names(self) -> tuple[str, ...]:
        """The sampled sites pooling adds, in the order of the position vector (after the law's and sigma)."""
        out = []
        for name in self.vary:
            out.append(self.tau(name))
            out += [self.z(name, i) for i in range(len(self.levels))]
        return tuple(out)

    def priors(self) -> dict:
        """Site name -> Prior, in :attr:`site_names` order."""
        normal = parse_prior("Normal(0, 1)")
        out = {}
        for name, scale in zip(self.vary, self.scales):
            out[self.tau(name)] = parse_prior(scale)
            out.update({self.z(name, i): normal for i in range(len(self.levels))})
        return out

    def level_index(self, level) -> int | None:
        """The position of ``level`` in :attr:`levels`; None for :data:`NEW_GROUP`."""
        if str(level) == NEW_GROUP and NEW_GROUP not in self.levels:
            return None
        try:
            return self.levels.index(str(level))
        except ValueError:
            shown = ", ".join(map(repr, self.levels[:12])) + (" ..." if len(self.levels) > 12 else "")
            raise BayescaleError(f"group {level!r} is not a level of column {self.column!r}; the fit's groups are "
                                 f"{shown}, or {NEW_GROUP!r} for a group not in the data") from None

    def as_dict(self) -> dict:
        return {"column": self.column, "levels": list(self.levels), "index": list(self.index),
                "vary": list(self.vary), "scales": list(self.scales), "relative": list(self.relative)}

    @classmethod
    def from_dict(cls, d: dict) -> "Pooling":
        return cls(column=str(d["column"]), levels=tuple(map(str, d["levels"])),
                   index=tuple(int(i) for i in d["index"]), vary=tuple(map(str, d["vary"])),
                   scales=tuple(map(str, d["scales"])), relative=tuple(bool(r) for r in d["relative"]))

    def describe(self) -> str:
        parts = [f"{n} ({'relative' if r else 'additive'} offset, tau ~ {s})"
                 for n, s, r in zip(self.vary, self.scales, self.relative)]
        return (f"partially pooled over {len(self.levels)} groups of {self.column!r}: " + ", ".join(parts)
                + "; other parameters shared")


def make_pooling(law, labels, vary, column: str) -> Pooling:
    """Validate ``vary`` against ``law`` and build the :class:`Pooling` of runs labelled ``labels``.

    ``vary``: a parameter name, a list of names, or a dict name -> prior of its group scale.
    """
    if isinstance(vary, str):
        vary = [v.strip() for v in vary.split(",") if v.strip()]
    if isinstance(vary, dict):
        items = list(vary.items())
    elif isinstance(vary, (list, tuple)):
        items = [(v, DEFAULT_GROUP_SCALE) for v in vary]
    else:
        raise BayescaleError(f"vary must be a parameter name, a list of names or a dict name -> prior of its group "
                             f"scale, got {type(vary).__name__}")
    if not items:
        raise BayescaleError("vary names no parameter; give the law parameters that differ between groups, "
                             f"e.g. vary=['E'] (law {law.name!r} has {list(law.param_names)})")
    natural = list(law.param_names)
    positive = law.positive_params
    names, scales, relative = [], [], []
    for name, scale in items:
        if not isinstance(name, str) or name not in natural:
            hint = (f" ({name!r} is a coordinate the card samples; pooling varies the law's own parameters)"
                    if name in law.coord_names else "")
            raise BayescaleError(f"vary: {name!r} is not a parameter of law {law.name!r}{hint}; "
                                 f"its parameters are {natural}")
        if name in names:
            raise BayescaleError(f"vary names {name!r} twice")
        if not isinstance(scale, str):
            raise BayescaleError(f"vary: the group scale of {name!r} must be a prior such as 'HalfNormal(0.3)', "
                                 f"got {scale!r}")
        prior = parse_prior(scale, f"vary: group scale of {name!r}")
        if not prior.positive:
            raise BayescaleError(f"vary: the group scale of {name!r} must have positive support, got {prior}")
        names.append(name)
        scales.append(str(prior))
        relative.append(name in positive)
    labels = [str(v) for v in labels]
    levels = tuple(sorted(set(labels), key=_natural_key))
    if len(levels) < 2:
        raise BayescaleError(f"vary needs at least two groups in column {column!r}; every run has "
                             f"{column} = {levels[0] if levels else None!r}")
    where = {v: i for i, v in enumerate(levels)}
    return Pooling(column=column, levels=levels, index=tuple(where[v] for v in labels), vary=tuple(names),
                   scales=tuple(scales), relative=tuple(relative))


def _natural_key(text: str):
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def apply_offsets(pooling: Pooling, values: dict, logs: dict, sites: dict, group, xp):
    """The varying parameters' values per run (``group``: each run's group index), in place of the shared ones.

    ``values``/``logs``: the law's parameter values (and stable logs) of one draw; ``sites``: the
    pooled sites' values; ``xp``: the array module.  Returns new dicts.
    """
    values, logs = dict(values), dict(logs)
    for name, rel in zip(pooling.vary, pooling.relative):
        z = xp.stack([sites[pooling.z(name, i)] for i in range(len(pooling.levels))])
        offset = sites[pooling.tau(name)] * z[group]
        if rel:
            values[name] = values[name] * xp.exp(offset)
            if name in logs:
                logs[name] = logs[name] + offset
        else:
            values[name] = values[name] + offset
            logs.pop(name, None)
    return values, logs


def run_params(pooling: Pooling, params: dict) -> dict:
    """Posterior draws (arrays (..., 1) per name, numpy) -> the varying parameters per fitted run (..., runs)."""
    group = np.asarray(pooling.index)
    out = dict(params)
    for name, rel in zip(pooling.vary, pooling.relative):
        z = np.stack([np.asarray(params[pooling.z(name, i)], float)[..., 0] for i in range(len(pooling.levels))],
                     axis=-1)
        offset = np.asarray(params[pooling.tau(name)], float) * z[..., group]
        out[name] = params[name] * np.exp(offset) if rel else params[name] + offset
    return out


def group_params(pooling: Pooling, posterior: dict, level, seed: int = 0) -> dict:
    """Draws of the law's parameters for one group (a level, or :data:`NEW_GROUP`): name -> array like the draws.

    For a new group each draw gets a fresh offset ``z ~ Normal(0, 1)`` (seeded): the predictive of a
    group not in the data, the group scale's uncertainty included.
    """
    i = pooling.level_index(level)
    out = {k: np.asarray(v, float) for k, v in posterior.items()}
    rng = np.random.default_rng([seed, 7])
    for name, rel in zip(pooling.vary, pooling.relative):
        tau = out[pooling.tau(name)]
        z = out[pooling.z(name, i)] if i is not None else rng.standard_normal(tau.shape)
        out[name] = out[name] * np.exp(tau * z) if rel else out[name] + tau * z
    return out
