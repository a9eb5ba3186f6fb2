"""Partial pooling across groups of runs: chosen law parameters vary by group, the rest are shared.

``fit(runs, law, group="family", vary=["L_c"])``: each named parameter ``P``
takes a value per group, ``P_g = T^-1(T(P) + u_P_g)``, where ``T`` maps ``P``'s
support onto the real line:

* ``log`` for a positive parameter (a relative offset: ``P_g = P * exp(u)``),
* a scaled ``logit`` for one bounded on both sides by its prior (fractions
  such as ``f_E``, exponents with a Uniform(0, 1) prior): ``P_g`` stays in the
  support,
* the identity otherwise,

with group offsets ``u_P_g ~ Normal(0, tau_P)`` and a group scale
``tau_P ~ HalfNormal(0.3)`` by default (``vary={"L_c": "HalfNormal(0.1)"}``
states another).  ``P`` itself is the value of a typical group, the one a
*new* group is centred on.

Which parameters may vary: the card's **sampled coordinates** (for the
Chinchilla card ``L_c``, ``f_E``, ``g_N``, ``alpha``, ``beta``; see ``bayescale
show``) — the group's natural parameters are then derived from the group's
coordinates, so varying several of them keeps the identified geometry the
cards were built for — or a **derived natural parameter** (``E``, ``A``, ``B``),
offset after the derivation.  Offsetting a coefficient together with its
exponent (``A`` and ``alpha``) rebuilds the curved ridge the coordinates
remove; vary ``L_c``/``g_N`` with the exponents instead.  Exponents are shared
unless named (Hestness et al.: model improvements shift the error, not the
exponent).  HalfNormal(0.3) on the scale of an offset: its median 0.2 says a
group's parameter typically lies within about 20% of the typical group's (on
the transformed scale), and 97.5% of its mass lies below 0.67.

The offsets' form is chosen per group from the data (``offsets="auto"``,
:func:`data_pin_offsets`): **centred** (the sampler moves ``u`` itself) when
the data pin each group's offset down more tightly than its prior does, as
for groups of several low-noise runs, where the non-centred form ``u = tau *
z`` makes a funnel between ``tau`` and every ``z`` (measured on 4 simulated
families of 10 runs, 1% noise: 70-120 leapfrog steps per draw and ESS below
400, against 10 steps and ESS above 1000 centred); **non-centred** otherwise,
where centred offsets meet the funnel of a small ``tau`` (divergences).  A
fit that fails the gate retries in the other form when its failure points
there: many divergences, or slow mixing of non-centred offsets
(:func:`bayescale.fitting.retry_form`).

The sampled sites ``tau_P`` and ``u_P_<i>`` (``z_P_<i>`` non-centred; ``i``
indexing :attr:`Pooling.levels`) are scalars in the posterior beside the
law's parameters; :func:`group_params` turns them into the parameters of one
group, or of a new group (a fresh offset per draw from ``Normal(0, tau)``),
which is what :meth:`bayescale.result.Fit.group` hands to ``predict``,
``optimal`` and the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BayescaleError
from ..priors import parse_prior

__all__ = ["DEFAULT_GROUP_SCALE", "GROUP_INPUT", "NEW_GROUP", "Pooling", "apply_offsets", "data_pin_offsets",
           "group_params", "make_pooling", "run_params"]

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
    kinds: tuple[str, ...]               # "log", "logit:<low>:<high>" or "add": the scale of the offset
    stages: tuple[str, ...]              # "coordinate" (offset before the derivation) or "natural" (after)
    centred: tuple[bool, ...] = ()       # per (parameter, group), in site order: sample u ~ Normal(0, tau)
                                         # (True) or z ~ Normal(0, 1) with u = tau * z; () = all centred
    marginal: bool = False               # the offsets (of one log-scale level) are integrated out of the
                                         # likelihood and drawn afterwards (bayescale.inference.run_effects)

    def is_centred(self, name: str, i: int) -> bool:
        return True if not self.centred else self.centred[self.vary.index(name) * len(self.levels) + i]

    @property
    def form(self) -> str:
        """"centred", "non-centred", "mixed (k of n offsets centred)" or "marginal"."""
        if self.marginal:
            return "marginal"
        flags = [self.is_centred(n, i) for n in self.vary for i in range(len(self.levels))]
        if all(flags):
            return "centred"
        if not any(flags):
            return "non-centred"
        return f"mixed ({sum(flags)} of {len(flags)} offsets centred)"

    def tau(self, name: str) -> str:
        return f"tau_{name}"

    def u(self, name: str, i: int) -> str:
        """The posterior's name of group ``i``'s offset of ``name``: ``u_<P>_<i>``."""
        return f"u_{name}_{i}"

    def z(self, name: str, i: int) -> str:
        """The sampled site of group ``i``'s offset: ``u_<P>_<i>`` or, non-centred, ``z_<P>_<i>`` (standardised)."""
        return f"{'u' if self.is_centred(name, i) else 'z'}_{name}_{i}"

    @property
    def site_names(self) -> tuple[str, ...]:
        """What pooling adds to the posterior: each group scale ``tau_<P>`` and offsets ``u_<P>_<i>``
        (whichever form was sampled)."""
        out = []
        for name in self.vary:
            out.append(self.tau(name))
            out += [self.u(name, i) for i in range(len(self.levels))]
        return tuple(out)

    def priors(self) -> dict:
        """Sampled site name -> Prior, in the order of the position vector (after the law's and sigma).
        The offsets' entry is Normal(0, 1): their prior when non-centred, and their (identity)
        bijection either way."""
        return self.prior_sites(offsets=not self.marginal)

    def prior_sites(self, offsets: bool = True) -> dict:
        """Each group scale's prior and (``offsets``) each offset's standardised Normal(0, 1), site name ->
        Prior: independent draws of these are what :meth:`from_standard` turns into the model's joint
        prior, whatever the form (integrated-out offsets included)."""
        normal = parse_prior("Normal(0, 1)")
        out = {}
        for name, scale in zip(self.vary, self.scales):
            out[self.tau(name)] = parse_prior(scale)
            if offsets:
                out.update({self.z(name, i): normal for i in range(len(self.levels))})
        return out

    def offset(self, name: str, i, values: dict):
        """Group ``i``'s offset of ``name`` (on its transformed scale) from the posterior's values."""
        return values[self.u(name, i)]

    def reported(self, sampled: dict) -> dict:
        """The sampled sites' values -> the posterior's: ``tau_<P>`` and ``u_<P>_<i>``."""
        out = {}
        for name in self.vary:
            tau = out[self.tau(name)] = sampled[self.tau(name)]
            if self.marginal:       # drawn after sampling (run_effects.draw_marginal_offsets)
                continue
            for i in range(len(self.levels)):
                z = sampled[self.z(name, i)]
                out[self.u(name, i)] = z if self.is_centred(name, i) else tau * z
        return out

    def for_program(self) -> "Pooling":
        """What the compiled sampler depends on: the runs' group index and the level names are data
        (the index is an argument of the program), so fits of other data with the same number of groups
        and the same varying parameters share one program."""
        from dataclasses import replace

        flags = tuple(self.is_centred(n, i) for n in self.vary for i in range(len(self.levels)))
        return replace(self, levels=tuple(str(i) for i in range(len(self.levels))), index=(), centred=flags)

    def with_form(self, centred) -> "Pooling":
        """The same pooling with offsets centred (True), non-centred (False), or per (parameter, group)
        as a sequence of flags in site order."""
        from dataclasses import replace

        n = len(self.vary) * len(self.levels)
        flags = tuple(bool(c) for c in centred) if isinstance(centred, (tuple, list)) else (bool(centred),) * n
        if len(flags) != n:
            raise ValueError(f"{len(flags)} form flags for {n} offsets")
        return replace(self, centred=flags)

    def sample_sites(self) -> dict:
        """Sample the pooled sites inside a NumPyro model: site name -> value."""
        import numpyro
        import numpyro.distributions as dist

        out = {}
        for name, scale in zip(self.vary, self.scales):
            tau = out[self.tau(name)] = numpyro.sample(self.tau(name), parse_prior(scale).dist())
            if self.marginal:
                continue
            for i in range(len(self.levels)):
                offsets = dist.Normal(0.0, tau) if self.is_centred(name, i) else dist.Normal(0.0, 1.0)
                out[self.z(name, i)] = numpyro.sample(self.z(name, i), offsets)
        return out

    def from_standard(self, values: dict) -> dict:
        """Sites drawn independently from :meth:`priors` (offsets standard normal, whatever the form)
        -> draws of the model's joint prior under the posterior's names (``u = tau * z``)."""
        out = {k: v for k, v in values.items() if k not in self.priors()}
        for name in self.vary:
            tau = out[self.tau(name)] = values[self.tau(name)]
            for i in range(len(self.levels)):
                out[self.u(name, i)] = tau * values[self.z(name, i)]
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
                "vary": list(self.vary), "scales": list(self.scales), "kinds": list(self.kinds),
                "stages": list(self.stages), "centred": [self.is_centred(n, i) for n in self.vary
                                                         for i in range(len(self.levels))],
                "marginal": self.marginal}

    @classmethod
    def from_dict(cls, d: dict) -> "Pooling":
        out = cls(column=str(d["column"]), levels=tuple(map(str, d["levels"])),
                  index=tuple(int(i) for i in d["index"]), vary=tuple(map(str, d["vary"])),
                  scales=tuple(map(str, d["scales"])), kinds=tuple(map(str, d["kinds"])),
                  stages=tuple(map(str, d["stages"])), centred=tuple(bool(c) for c in d["centred"]),
                  marginal=bool(d.get("marginal", False)))
        if not (len(out.vary) == len(out.scales) == len(out.kinds) == len(out.stages)) or \
                len(out.centred) != len(out.vary) * len(out.levels) or \
                any(_kind(k) is None for k in out.kinds) or any(s not in ("coordinate", "natural") for s in out.stages):
            raise ValueError("the pooling's vary, scales, kinds and stages do not match")
        return out

    def describe(self) -> str:
        parts = [f"{n} ({k.split(':')[0]} offset, tau ~ {s})" for n, s, k in zip(self.vary, self.scales, self.kinds)]
        form = ("offsets integrated out of the likelihood, drawn from their exact conditional" if self.marginal
                else f"{self.form} offsets")
        return (f"partially pooled over {len(self.levels)} groups of {self.column!r}: " + ", ".join(parts)
                + f"; other parameters shared ({form})")


def _kind(text: str):
    """("log",), ("add",) or ("logit", low, high) from a kind's text; None if not one."""
    if text in ("log", "add"):
        return (text,)
    parts = text.split(":")
    if len(parts) == 3 and parts[0] == "logit":
        try:
            lo, hi = float(parts[1]), float(parts[2])
        except ValueError:
            return None
        return ("logit", lo, hi) if lo < hi else None
    return None


def make_pooling(law, labels, vary, column: str, centred: bool = True) -> Pooling:
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
    allowed = list(law.coord_names) + [n for n, _ in law.derived]
    if not items:
        raise BayescaleError(f"vary names no parameter; give the law parameters that differ between groups, "
                             f"e.g. vary=[{allowed[0]!r}] (law {law.name!r}: {allowed})")
    sampled = {p.name: p for p in law.params}
    positive = law.positive_params
    names, scales, kinds, stages = [], [], [], []
    for name, scale in items:
        if not isinstance(name, str) or name not in allowed:
            raise BayescaleError(f"vary: {name!r} is not a parameter of law {law.name!r}; it samples "
                                 f"{list(law.coord_names)}"
                                 + (f" and derives {[n for n, _ in law.derived]}" if law.derived else ""))
        if name in names:
            raise BayescaleError(f"vary names {name!r} twice")
        if not isinstance(scale, str):
            raise BayescaleError(f"vary: the group scale of {name!r} must be a prior such as 'HalfNormal(0.3)', "
                                 f"got {scale!r}")
        prior = parse_prior(scale, f"vary: group scale of {name!r}")
        if not prior.positive:
            raise BayescaleError(f"vary: the group scale of {name!r} must have positive support, got {prior}")
        if name in sampled:
            p = sampled[name]
            lo, hi = p.prior.bounds
            if p.scale is None and np.isfinite(lo) and np.isfinite(hi):
                kind = f"logit:{lo!r}:{hi!r}"
            else:
                kind = "log" if p.prior.positive else "add"
            stage = "coordinate"
        else:
            kind, stage = ("log" if name in positive else "add"), "natural"
        names.append(name)
        scales.append(str(prior))
        kinds.append(kind)
        stages.append(stage)
    labels = [str(v) for v in labels]
    levels = tuple(sorted(set(labels), key=_natural_key))
    if len(levels) < 2:
        raise BayescaleError(f"vary needs at least two groups in column {column!r}; every run has "
                             f"{column} = {levels[0] if levels else None!r}")
    where = {v: i for i, v in enumerate(levels)}
    return Pooling(column=column, levels=levels, index=tuple(where[v] for v in labels), vary=tuple(names),
                   scales=tuple(scales), kinds=tuple(kinds), stages=tuple(stages),
                   centred=(bool(centred),) * (len(names) * len(levels)))


def data_pin_offsets(pooling: Pooling, law, noise: str, natural: dict, inputs: dict, loss, refs: dict,
                     step: float = 1e-3) -> tuple[bool, ...]:
    """Per (parameter, group), in site order: whether the data pin that group's offset down more
    tightly than its prior does, the rule that picks a centred offset (True) or a non-centred one
    (False) before sampling.

    At the start point (the shared law's robust fit, natural values ``natural``): the noise ``s`` is the
    residuals' standard deviation on the noise model's scale around each group's mean residual (so
    that the groups' differences do not count as noise; ``n - groups`` degrees of freedom); the data's standard error of group
    ``g``'s offset of ``P`` is ``s / sqrt(sum_i d_i**2)`` over the group's runs, ``d_i`` the change of
    the law (on that scale) per unit offset; it is compared with the median of ``tau_P``'s prior:
    centred where the data's error is the smaller.  Groups differ (a family with many runs, one with
    two), so each offset gets its own form.
    """
    from ..noise import LINKS, noise_location

    xs = {k: np.asarray(v, float) for k, v in inputs.items()}
    y = np.asarray(loss, float)
    link = LINKS[noise]
    with np.errstate(all="ignore"):
        target = np.log(y) if link == "log" else (np.log(y) - np.log1p(-y) if link == "logit" else y)
        params = {k: np.asarray([v], float) for k, v in natural.items()}
        base = np.broadcast_to(noise_location(noise, law, params, xs, xp="numpy"), y.shape)
    group = np.asarray(pooling.index)
    resid = target - base
    means = np.array([np.mean(resid[group == g]) for g in range(len(pooling.levels))])
    dof = len(y) - len(pooling.levels)
    n_pairs = len(pooling.vary) * len(pooling.levels)
    if dof < 1:
        return (False,) * n_pairs
    spread = float(np.sqrt(np.sum((resid - means[group]) ** 2) / dof))
    if not np.isfinite(spread) or spread <= 0:
        return (True,) * n_pairs
    votes = []
    for name, scale in zip(pooling.vary, pooling.scales):
        moved = {}
        for sign in (1.0, -1.0):
            offsets = {n: np.full(y.shape, sign * step if n == name else 0.0) for n in pooling.vary}
            with np.errstate(all="ignore"):
                values, _ = apply_offsets(pooling, law, params, {}, refs, offsets, np, "numpy")
                moved[sign] = np.broadcast_to(noise_location(noise, law, {**params, **values}, xs, xp="numpy"),
                                              y.shape)
        slope = (moved[1.0] - moved[-1.0]) / (2 * step)
        tau = float(parse_prior(scale).median())
        for g in range(len(pooling.levels)):
            info = float(np.sum(slope[group == g] ** 2))
            votes.append(bool(np.isfinite(info) and info > 0 and spread / np.sqrt(info) < tau))
    return tuple(votes)


def _natural_key(text: str):
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _shift(kind: str, value, log_value, offset, xp):
    """(value, log value or None) of a parameter moved by ``offset`` on its kind's scale."""
    k = _kind(kind)
    if k[0] == "log":
        return value * xp.exp(offset), (None if log_value is None else log_value + offset)
    if k[0] == "add":
        return value + offset, None
    lo, hi = k[1], k[2]
    t = (value - lo) / (hi - lo)
    t = 1.0 / (1.0 + xp.exp(-(xp.log(t) - xp.log1p(-t) + offset)))
    return lo + (hi - lo) * t, None


def _apply(pooling: Pooling, stage: str, values: dict, logs: dict, offsets: dict, xp):
    values, logs = dict(values), dict(logs)
    for name, kind, st in zip(pooling.vary, pooling.kinds, pooling.stages):
        if st != stage:
            continue
        values[name], log_value = _shift(kind, values[name], logs.get(name), offsets[name], xp)
        if log_value is None:
            logs.pop(name, None)
        else:
            logs[name] = log_value
    return values, logs


def apply_offsets(pooling: Pooling, law, values: dict, logs: dict, refs: dict, offsets: dict, xp, xp_name: str):
    """The law's parameters with the group offsets applied: ``values``/``logs`` hold the sampled
    coordinates (and, if derived already, the natural parameters); the coordinate offsets are applied,
    the derived parameters (re)computed from them, then the natural offsets.  ``offsets``: name ->
    offset array (one per run, or per draw).  Returns new (values, logs)."""
    values, logs = _apply(pooling, "coordinate", values, logs, offsets, xp)
    if law.derived:
        coords = {k: values[k] for k in law.coord_names}
        clogs = {k: v for k, v in logs.items() if k in law.coord_names}
        derived, derived_logs = law.derived_values(coords, refs, xp=xp_name, logs=clogs)
        values.update(derived)
        logs = {**{k: v for k, v in logs.items() if k not in derived}, **derived_logs}
    return _apply(pooling, "natural", values, logs, offsets, xp)


def run_params(pooling: Pooling, law, params: dict, refs: dict) -> dict:
    """Posterior draws (arrays (..., 1) per name, numpy) -> the law's parameters per fitted run (..., runs)."""
    group = np.asarray(pooling.index)
    offsets = {}
    for name in pooling.vary:
        per_group = np.stack([np.asarray(pooling.offset(name, i, params), float)[..., 0]
                              for i in range(len(pooling.levels))], axis=-1)
        offsets[name] = per_group[..., group]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        values, _ = apply_offsets(pooling, law, params, {}, refs, offsets, np, "numpy")
    return {**params, **values}


def group_params(pooling: Pooling, law, posterior: dict, refs: dict, level, seed: int = 0) -> dict:
    """Draws of the law's parameters for one group (a level, or :data:`NEW_GROUP`): name -> array like the draws.

    For a new group each draw gets a fresh offset ``u ~ Normal(0, tau)`` (seeded): the predictive of a
    group not in the data, the group scale's uncertainty included.
    """
    i = pooling.level_index(level)
    out = {k: np.asarray(v, float) for k, v in posterior.items()}
    rng = np.random.default_rng([seed, 7])
    offsets = {}
    for name in pooling.vary:
        tau = out[pooling.tau(name)]
        offsets[name] = pooling.offset(name, i, out) if i is not None else tau * rng.standard_normal(tau.shape)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        values, _ = apply_offsets(pooling, law, out, {}, refs, offsets, np, "numpy")
    return {**out, **values}

