"""Law cards: TOML files in ``models/`` (or a user's file, or a formula string)
compiled into :class:`Law` objects.

A card states the formula in the paper's natural units, its inputs (meaning,
units, how to derive a missing one), a prior on every parameter, the default
noise model, the citation and, for laws in N and D, the compute cost.  A
parameter may carry a ``scale`` expression: its prior is then on the
dimensionless ``value / scale``, where ``scale`` may use the data's reference
points ``<input>_ref`` (geometric means of the inputs) and ``loss_ref``
(geometric mean of the response); scales and ``[derived]`` expressions may
also use ``<input>_min`` and ``<input>_max``, the smallest and largest value of
an input over the runs (to anchor a law at the ends of the data).  This is how the catalogue's priors stay
weakly informative whatever the units, and it is the centred parametrisation
that lets NUTS take a dozen leapfrog steps per draw instead of hundreds.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from .errors import BayescaleError, CardError
from .formula import Expr, Scope, compile_expr, evaluate, is_positive, log_evaluate
from .noise import NOISE_MODELS
from .priors import Prior, parse_prior

__all__ = [
    "InputSpec", "Law", "ParamSpec", "ResponseSpec", "law_from_file", "law_from_formula",
    "list_laws", "load_law", "resolve_law", "with_priors",
]

KINDS = ("parameters", "tokens", "flops", "examples", "loss", "other")
#: Names a formula string may use as inputs without declaring them.
STANDARD_INPUTS = {
    "N": ("model parameters", "parameters", "parameters"),
    "D": ("training tokens", "tokens", "tokens"),
    "C": ("training compute", "FLOPs", "flops"),
    "U": ("unique training tokens", "tokens", "tokens"),
    "M": ("tokens per parameter", "tokens/parameter", "other"),
    "x": ("scale variable", "", "other"),
    "L": ("loss", "nats", "loss"),
}


@dataclass(frozen=True)
class InputSpec:
    name: str
    meaning: str
    units: str
    kind: str
    derive: Expr | None = None


@dataclass(frozen=True)
class ParamSpec:
    name: str
    prior: Prior
    meaning: str = ""
    scale: Expr | None = None
    prior_note: str = ""


@dataclass(frozen=True)
class ResponseSpec:
    name: str = "loss"
    meaning: str = "loss"
    units: str = ""
    scale: bool = True


@dataclass(frozen=True)
class Law:
    """A compiled scaling law: mean function, priors, noise default, metadata."""

    name: str
    title: str
    formula: Expr
    inputs: tuple[InputSpec, ...]
    params: tuple[ParamSpec, ...]
    response: ResponseSpec
    noise: str
    sigma_prior: Prior
    citation: str = ""
    description: str = ""
    lets: tuple[tuple[str, Expr], ...] = ()
    cost: Expr | None = None
    irreducible: str | None = None
    exponents: tuple[str, ...] = ()
    text: str = field(default="", repr=False)
    source: str = "builtin"
    derived: tuple[tuple[str, Expr], ...] = ()
    overridden: tuple[tuple[str, str, str], ...] = ()    # (name, card prior, prior used)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    @property
    def coord_names(self) -> tuple[str, ...]:
        """The sampled coordinates (the parameters with priors), in card order."""
        return tuple(p.name for p in self.params)

    @property
    def param_names(self) -> tuple[str, ...]:
        """The law's natural parameters (what the formula uses and summaries report): the derived
        parameters, then the sampled coordinates the formula uses directly."""
        used = self.formula.names | {n for _, e in self.lets for n in e.names}
        direct = tuple(p.name for p in self.params if p.name in used)
        return tuple(n for n, _ in self.derived) + direct

    @property
    def reported_names(self) -> tuple[str, ...]:
        """Every parameter in the posterior: the natural ones, then sampled coordinates only used to derive them."""
        natural = self.param_names
        return natural + tuple(n for n in self.coord_names if n not in natural)

    def derived_values(self, values: dict, refs: dict, xp: str = "jax", logs: dict | None = None):
        """(values, logs) of the derived parameters from the coordinates' ``values`` and the reference points.

        Logs are computed in the stable form where a derived parameter is provably positive,
        e.g. Kaplan's ``N_c = N_ref * g**(alpha_D / alpha_N) * L_c**(1 / alpha_N)``, whose
        value overflows float32 while its log never does.
        """
        positive = set(refs) | {p.name for p in self.params if p.prior.positive}
        scope = Scope({**refs, **values}, dict((n, e.tree) for n, e in self.derived), positive, xp, logs,
                      unit=self.unit_params)
        out, out_logs = {}, {}
        for name, _ in self.derived:
            if scope.name_positive(name):   # exp(log): no intermediate power can overflow
                out_logs[name] = scope.log_value(name)
                out[name] = scope.fns["exp"](out_logs[name])
            else:
                out[name] = scope.value(name)
        return out, out_logs

    @property
    def range_inputs(self) -> tuple[str, ...]:
        """The inputs whose smallest and largest values over the runs (``<input>_min``, ``<input>_max``)
        the card uses as reference points (in a prior's scale or a derived parameter)."""
        used = {n for p in self.params if p.scale is not None for n in p.scale.names}
        used |= {n for _, e in self.derived for n in e.names}
        return tuple(i for i in self.input_names if f"{i}_min" in used or f"{i}_max" in used)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def _scope(self, params: dict, inputs: dict, xp: str, logs: dict | None = None) -> Scope:
        positive = set(self.input_names) | self.positive_params
        return Scope({**inputs, **params}, dict((n, e.tree) for n, e in self.lets), positive, xp, logs)

    @property
    def unit_params(self) -> set:
        """Sampled coordinates whose prior lies inside [0, 1] (fractions such as ``f_E``)."""
        return {p.name for p in self.params if 0 <= p.prior.bounds[0] and p.prior.bounds[1] <= 1}

    @property
    def positive_params(self) -> set:
        """Natural parameters known to be positive (positive priors, provably positive derivations)."""
        positive = {p.name for p in self.params if p.prior.positive}
        scope = Scope({}, dict((n, e.tree) for n, e in self.derived),
                      positive | {f"{i}_{end}" for i in self.input_names for end in ("ref", "min", "max")}
                      | {"loss_ref"}, unit=self.unit_params)
        return positive | {n for n, e in self.derived if is_positive(e.tree, scope)}

    def mean(self, params: dict, inputs: dict, xp: str = "jax", logs: dict | None = None):
        """The law's value at ``inputs`` (arrays broadcast against parameter arrays).

        Computed as ``exp(log_mean)`` when the formula is provably positive, so
        intermediate powers cannot overflow (e.g. Kaplan's ``(N_c / N)**(a_N / a_D)``
        in float32); directly otherwise.  ``logs`` optionally gives the logs of
        parameters computed stably by the caller (see :func:`bayescale.model.make_model`).
        """
        scope = self._scope(params, inputs, xp, logs)
        if is_positive(self.formula.tree, scope):
            return scope.fns["exp"](log_evaluate(self.formula.tree, scope))
        return evaluate(self.formula.tree, scope)

    def log_mean(self, params: dict, inputs: dict, xp: str = "jax", logs: dict | None = None):
        """``log`` of the law's value in the stable (log-sum-exp) form."""
        return log_evaluate(self.formula.tree, self._scope(params, inputs, xp, logs))

    def compute(self, inputs: dict, xp: str = "numpy"):
        """Training compute from the card's cost expression."""
        if self.cost is None:
            raise BayescaleError(f"law {self.name!r} has no compute cost (it needs N and D)")
        return evaluate(self.cost.tree, Scope(inputs, xp=xp))


# --------------------------------------------------------------------------- reading cards


def _get(card: dict, key: str, typ, where: str, default=None, required=False):
    if key not in card:
        if required:
            raise CardError(f"{where}: missing required key {key!r}")
        return default
    value = card[key]
    if not isinstance(value, typ):
        names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise CardError(f"{where}: key {key!r} must be a {names}, got {value!r}")
    return value


#: Largest card accepted (the catalogue's largest is ~5 kB).
MAX_CARD_BYTES = 1 << 20
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _control_character(text: str) -> str | None:
    """The first control character in ``text`` other than tab and newlines, described, or None:
    a card's strings reach the terminal, where escape sequences would act instead of print."""
    found = _CONTROL.search(text)
    if found is None:
        return None
    return f"control character U+{ord(found.group()):04X} at line {text.count(chr(10), 0, found.start()) + 1}"


def _strings(tree) -> list[str]:
    """Every key and string value of a parsed TOML document (iteratively: it may be deep)."""
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            out.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def law_from_text(text: str, source: str = "builtin") -> Law:
    """Compile a card from its TOML text (``source`` names it in errors)."""
    where = f"card {source}"
    if not isinstance(text, str):
        raise CardError(f"{where}: the card must be text, got {type(text).__name__}")
    if len(text) > MAX_CARD_BYTES:
        raise CardError(f"{where} is {len(text)} characters long; at most {MAX_CARD_BYTES} are accepted")
    bad = _control_character(text)
    if bad:
        raise CardError(f"{where} contains a {bad}; a card is plain text")
    try:
        card = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CardError(f"{where} is not valid TOML: {exc}") from None
    except RecursionError:
        raise CardError(f"{where} is not usable TOML: its tables or arrays are nested too deeply") from None
    bad = next(filter(None, map(_control_character, _strings(card))), None)
    if bad:      # written as an escape (\u001b) in the TOML text
        raise CardError(f"{where}: a string contains a {bad.split(' at ')[0]}; a card is plain text")
    known = {"name", "title", "citation", "description", "formula", "noise", "irreducible",
             "exponents", "sigma_prior", "response", "inputs", "let", "cost", "params", "derived",
             "prior_overrides"}
    unknown = sorted(set(card) - known)
    if unknown:
        raise CardError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")
    name = _get(card, "name", str, where, required=True)
    where = f"card {name!r} ({source})" if source != name else f"card {name!r}"

    raw_inputs = _get(card, "inputs", dict, where, required=True)
    if not raw_inputs:
        raise CardError(f"{where}: [inputs] must declare at least one input")
    raw_params = _get(card, "params", dict, where, required=True)
    if not raw_params:
        raise CardError(f"{where}: [params] must declare at least one parameter")
    raw_lets = _get(card, "let", dict, where, default={})
    raw_derived = _get(card, "derived", dict, where, default={})
    groups = [set(raw_inputs), set(raw_params), set(raw_lets), set(raw_derived)]
    clash = {n for i, a in enumerate(groups) for b in groups[i + 1:] for n in a & b}
    if clash:
        raise CardError(f"{where}: names {sorted(clash)} are declared twice (inputs/params/derived/let)")
    ranges = {f"{i}_{end}" for i in raw_inputs for end in ("min", "max")}
    reserved = {n for n in list(raw_params) + list(raw_lets) + list(raw_inputs) + list(raw_derived)
                if n.endswith("_hat") or n.endswith("_ref") or n in ("sigma", "loss") or n in ranges}
    if reserved:
        raise CardError(f"{where}: names {sorted(reserved)} are reserved (sigma, loss, *_hat, *_ref, and "
                        f"<input>_min, <input>_max for the inputs)")

    inputs = []
    for iname, spec in raw_inputs.items():
        iw = f"{where} input {iname!r}"
        if not isinstance(spec, dict):
            raise CardError(f"{iw} must be a table")
        kind = _get(spec, "kind", str, iw, default="other")
        if kind not in KINDS:
            raise CardError(f"{iw}: kind {kind!r} is not one of {', '.join(KINDS)}")
        derive = _get(spec, "derive", str, iw)
        derive_expr = None
        if derive is not None:
            derive_expr = compile_expr(derive, set(STANDARD_INPUTS) | set(raw_inputs) - {iname},
                                       f"{iw} derive")
        inputs.append(InputSpec(iname, _get(spec, "meaning", str, iw, default=""),
                                _get(spec, "units", str, iw, default=""), kind, derive_expr))

    unscaled = {p for p, s in raw_params.items() if isinstance(s, dict) and "scale" not in s}
    refs = {f"{i}_ref" for i in raw_inputs} | {"loss_ref"} | ranges
    params = []
    for pname, spec in raw_params.items():
        pw = f"{where} parameter {pname!r}"
        if not isinstance(spec, dict):
            raise CardError(f"{pw} must be a table with at least a prior")
        prior = parse_prior(_get(spec, "prior", str, pw, required=True), f"{pw} prior")
        scale = _get(spec, "scale", str, pw)
        scale_expr = compile_expr(scale, refs | unscaled, f"{pw} scale") if scale else None
        params.append(ParamSpec(pname, prior, _get(spec, "meaning", str, pw, default=""),
                                scale_expr, _get(spec, "prior_note", str, pw, default="")))

    params, overridden = _apply_overrides(card, params, where)
    sigma_override = next((used for pname, _, used in overridden if pname == "sigma"), None)

    derived, derived_names = [], set(raw_params) | refs
    for dname, dtext in raw_derived.items():
        if not isinstance(dtext, str):
            raise CardError(f"{where}: derived {dname!r} must be a formula string over the parameters")
        derived.append((dname, compile_expr(dtext, derived_names, f"{where} derived {dname!r}")))
        derived_names.add(dname)

    lets, known_names = [], set(raw_inputs) | set(raw_params) | set(raw_derived)
    for lname, ltext in raw_lets.items():
        if not isinstance(ltext, str):
            raise CardError(f"{where}: let {lname!r} must be a formula string")
        lets.append((lname, compile_expr(ltext, known_names, f"{where} let {lname!r}")))
        known_names.add(lname)

    formula = compile_expr(_get(card, "formula", str, where, required=True), known_names,
                           f"{where} formula")
    unused = (set(raw_params) | set(raw_derived)) - formula.names - {n for _, e in lets + derived for n in e.names}
    if unused:
        raise CardError(f"{where}: parameters {sorted(unused)} have priors but the formula never uses them")

    cost = card.get("cost", {})
    cost_expr = None
    if cost:
        if not isinstance(cost, dict) or not isinstance(cost.get("compute"), str):
            raise CardError(f"{where}: [cost] must be a table with compute = \"<expression>\"")
        cost_expr = compile_expr(cost["compute"], set(raw_inputs), f"{where} cost")

    resp = _get(card, "response", dict, where, default={})
    response = ResponseSpec(
        _get(resp, "name", str, where, default="loss"), _get(resp, "meaning", str, where, default="loss"),
        _get(resp, "units", str, where, default=""), _get(resp, "scale", bool, where, default=True))
    if response.name in known_names or not response.name.strip():
        role = ("an input" if response.name in raw_inputs else "a parameter" if response.name in raw_params
                else "a let name" if response.name else "empty")
        raise CardError(f"{where}: the response name {response.name!r} is {role}; the response must be a "
                        f"column of its own (e.g. name = \"loss\")")

    noise = _get(card, "noise", str, where, default="student_t_log")
    if noise not in NOISE_MODELS:
        raise CardError(f"{where}: noise {noise!r} is not one of {', '.join(NOISE_MODELS)}")
    irreducible = _get(card, "irreducible", str, where)
    exponents = tuple(_get(card, "exponents", list, where, default=[]))
    if not all(isinstance(e, str) for e in exponents):
        raise CardError(f"{where}: key 'exponents' must be a list of parameter names (strings), "
                        f"got {list(exponents)!r}")
    for p in ([irreducible] if irreducible else []) + list(exponents):
        if p not in raw_params and p not in raw_derived:
            raise CardError(f"{where}: {p!r} (irreducible/exponents) is not a parameter")
    sigma_prior = parse_prior(_get(card, "sigma_prior", str, where, default="HalfNormal(0.1)"),
                              f"{where} sigma_prior")
    if sigma_override is not None:
        sigma_prior = parse_prior(sigma_override, f"{where} prior override for sigma")
    if not sigma_prior.positive:
        raise CardError(f"{where}: sigma_prior must have positive support, got {sigma_prior}")

    return Law(
        name=name, title=_get(card, "title", str, where, default=name), formula=formula,
        inputs=tuple(inputs), params=tuple(params), response=response, noise=noise,
        sigma_prior=sigma_prior, citation=_get(card, "citation", str, where, default=""),
        description=_get(card, "description", str, where, default=""), lets=tuple(lets),
        cost=cost_expr, irreducible=irreducible, exponents=exponents, text=text, source=source,
        derived=tuple(derived), overridden=tuple(overridden),
    )


def _apply_overrides(card: dict, params: list, where: str):
    """The ``[prior_overrides]`` table (written by :func:`with_priors`): name -> prior string."""
    raw = _get(card, "prior_overrides", dict, where, default={})
    by_name = {p.name: p for p in params}
    derived = _get(card, "derived", dict, where, default={})
    overridden = []
    for name, text in raw.items():
        if name == "sigma":
            overridden.append(("sigma", _get(card, "sigma_prior", str, where, default="HalfNormal(0.1)"),
                               str(parse_prior(text, f"{where} prior override for sigma"))))
            continue
        if name in derived:
            raise CardError(f"{where}: {name!r} is derived ({name} = {derived[name]}), so it has no prior of its "
                            f"own; set the prior of one of the sampled parameters "
                            f"{', '.join(by_name)} or sigma instead (bayescale show lists what each is)")
        if name not in by_name:
            raise CardError(f"{where}: no parameter {name!r} to set a prior on; the card's parameters with "
                            f"priors are {', '.join(by_name)} and sigma")
        prior = parse_prior(text, f"{where} prior override for {name!r}")
        overridden.append((name, str(by_name[name].prior), str(prior)))
        by_name[name] = replace(by_name[name], prior=prior)
    return [by_name[p.name] for p in params], overridden


def with_priors(law: "Law", priors: dict) -> "Law":
    """``law`` with some of its priors replaced: ``{"alpha": "Uniform(0.4, 0.45)", "sigma": ...}``.

    A prior given for a scaled parameter is on the same dimensionless quantity as the card's
    (``bayescale show`` says what each prior is on).  The overrides are appended to the card's
    text as a ``[prior_overrides]`` table, so a saved fit records them and reloads them.
    """
    if not isinstance(priors, dict) or not all(isinstance(k, str) for k in priors):
        raise CardError(f"priors must be a dict of parameter name -> prior string, got {priors!r}")
    if not priors:
        return law
    try:
        existing = tomllib.loads(law.text).get("prior_overrides", {})
    except tomllib.TOMLDecodeError as exc:
        raise CardError(f"card {law.name!r}: its text is not valid TOML: {exc}") from None
    merged = {**existing, **priors}
    for k, v in merged.items():
        if not isinstance(v, str):
            raise CardError(f"prior for {k!r} must be a string such as 'Uniform(0, 1)', got {v!r}")
    text = law.text
    if existing:   # replace the earlier table (always the last one in the text)
        text = text[: text.rindex("\n[prior_overrides]")]
    table = "\n".join(f"{_bare_key(k)} = {_toml_str(v)}" for k, v in merged.items())
    return law_from_text(text.rstrip("\n") + "\n\n[prior_overrides]\n" + table + "\n", source=law.source)


def _bare_key(key: str) -> str:
    return key if key.replace("_", "a").isalnum() and key.isascii() else _toml_str(key)


def _card_dir():
    return resources.files("bayescale.models")


def list_laws() -> list[str]:
    """Names of the built-in law cards."""
    return sorted(p.name[:-5] for p in _card_dir().iterdir() if p.name.endswith(".toml"))


def load_law(name: str) -> Law:
    """A built-in law by name (see :func:`list_laws`)."""
    names = list_laws()
    if name not in names:
        raise CardError(f"unknown law {name!r}; built-in laws are: {', '.join(names)}")
    text = (_card_dir() / f"{name}.toml").read_text()
    return law_from_text(text, source="builtin")


def law_from_file(path) -> Law:
    """A law from a user's card file (UTF-8 TOML)."""
    path = Path(path)
    if not path.is_file():
        raise CardError(f"card file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CARD_BYTES + 1)
    except OSError as exc:
        raise CardError(f"card file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_CARD_BYTES:
        raise CardError(f"card file {str(path)!r} is larger than {MAX_CARD_BYTES} bytes; a card is a "
                        f"small TOML file")
    return law_from_text(decode_text(data, f"card file {str(path)!r}"), source=str(path))


def decode_text(data: bytes, what: str) -> str:
    """UTF-8 text (a byte-order mark allowed) from ``data``, or a CardError saying what it looks like."""
    head = data[:64]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(head) > 1 and 0 in (max(head[0::2]), max(head[1::2]))):
        raise CardError(f"{what} looks like UTF-16 text; save it as UTF-8")
    if b"\x00" in data:
        raise CardError(f"{what} is a binary file (it contains NUL bytes), not a TOML text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CardError(f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at position {exc.start}); "
                        f"save it as UTF-8 (e.g. from Latin-1: iconv -f latin1 -t utf-8)") from None


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def law_from_formula(formula: str, priors: dict[str, str], *, inputs=None, noise="student_t_log",
                     response: str = "loss", name: str = "custom",
                     sigma_prior: str = "HalfNormal(0.1)") -> Law:
    """A law from a formula string and a prior for each of its parameters.

    Names in the formula that are standard inputs (N, D, C, U, M, x, L) or
    listed in ``inputs`` are inputs; every other name is a parameter and needs
    a prior, stated on its natural value (no reference scaling).
    """
    if not isinstance(priors, dict):
        raise CardError(f"priors must be a dict of name -> prior string, got {type(priors).__name__}")
    probe = compile_expr(formula, _AnyName(), "formula")
    declared = set(inputs) if inputs is not None else set(STANDARD_INPUTS)
    input_names = [n for n in probe.order if n in declared and n not in priors]
    params = [n for n in probe.order if n not in input_names]
    missing = [p for p in params if p not in priors]
    if missing:
        raise CardError(
            f"formula {formula!r}: parameters {missing} have no prior; give one per parameter, "
            f"e.g. --prior \"{missing[0]}=Uniform(0, 1)\" (inputs are {', '.join(input_names) or 'none'})"
        )
    extra = sorted(set(priors) - set(params))
    if extra:
        raise CardError(f"priors given for {extra}, which the formula {formula!r} does not use")
    if not input_names:
        raise CardError(f"formula {formula!r} uses no input; inputs are {sorted(declared)}")
    lines = [f"name = {_toml_str(name)}", f"title = {_toml_str('User formula: ' + formula)}",
             f"formula = {_toml_str(formula)}", f"noise = {_toml_str(noise)}",
             f"sigma_prior = {_toml_str(sigma_prior)}", "",
             "[response]", f"name = {_toml_str(response)}", "scale = false", ""]
    for i in input_names:
        meaning, units, kind = STANDARD_INPUTS.get(i, (i, "", "other"))
        lines += [f"[inputs.{i}]", f"meaning = {_toml_str(meaning)}", f"units = {_toml_str(units)}",
                  f"kind = {_toml_str(kind)}", ""]
    if {"N", "D"} <= set(input_names):
        lines += ["[cost]", 'compute = "6 * N * D"', ""]
    for p in params:
        lines += [f"[params.{p}]", f"prior = {_toml_str(priors[p])}", ""]
    return law_from_text("\n".join(lines), source="formula")


class _AnyName(set):
    """Accepts every name (used to discover a formula's names before they are classified)."""

    def __contains__(self, item):  # noqa: D105
        return True


def resolve_law(law=None, *, formula=None, priors=None, card=None, **kwargs) -> Law:
    """One of: a :class:`Law`, a built-in name, a card path, or a formula + priors.

    With ``law`` or ``card``, ``priors`` overrides the card's priors on the parameters it
    names (see :func:`with_priors`); with ``formula`` it gives every parameter's prior.
    """
    given = [x is not None for x in (law, formula, card)]
    if sum(given) != 1:
        raise BayescaleError("give exactly one of law=<name or Law>, formula=<string>, card=<path>")
    if formula is not None:
        return law_from_formula(formula, priors or {}, **kwargs)
    if isinstance(law, Law):
        resolved = law
    elif law is not None:
        if not isinstance(law, str):
            raise BayescaleError(f"law must be a name or a Law, got {type(law).__name__}")
        resolved = load_law(law)
    else:
        resolved = law_from_file(card)
    return with_priors(resolved, priors) if priors else resolved
