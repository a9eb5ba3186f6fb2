"""The fit file: NetCDF-4 (HDF5) in ArviZ's layout, with a checksum, verified field by field on load.

Layout (what ``arviz.from_netcdf`` reads): groups ``posterior`` (every law
parameter and ``sigma``, dims chain, draw), ``sample_stats`` (the sampler's
statistics, same dims), ``observed_data`` (the response, dim run),
``constant_data`` (the inputs, dim run) and, for fits of up to
:data:`STORED_LOG_LIKELIHOOD_MAX` pointwise values (about 1000 runs at the
default 4 x 1000 draws), ``log_likelihood`` in float32; for larger fits it is
left out and recomputed from the posterior when needed (it is a function of
the draws and the data, and would be most of the file: 303 MB for 10^4 runs
in float64).  The posterior group's attributes hold the metadata
(``bayescale_meta``, JSON) and the law card's text (``bayescale_card``).

Integrity: the file's bytes are followed by a trailer,
``\\nbayescale-fit-sha256:<64 hex digits>\\n``, the SHA-256 of everything before
it (HDF5 ignores bytes past its end of file).  :func:`read_fit_file` reads the
file once into memory and, before HDF5 sees a byte, checks the trailer: a
truncated, damaged or edited file is refused whatever bytes changed.  Then,
against crafted files: only plain HDF5 features are accepted (hard links;
contiguous or chunked datasets without external storage, virtual sources or
filters other than deflate, shuffle and Fletcher-32; no named types), arrays
are read with h5py directly (no CF decoding such as ``scale_factor``), and
every field is checked: the card compiles and its hash is the stored one,
every parameter's draws are finite and inside its prior's support (sigma
> 0), the runs are valid and hash to the stored runs hash, the shapes agree
with the settings, the statistics are in range, no stored string holds
control characters (escape sequences would reach the terminal).  Anything
wrong is one :class:`~bayescale.errors.FitFileError` naming the file and the
problem.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import BayescaleError, FitFileError
from .atomic import write_atomically

__all__ = ["STORED_LOG_LIKELIHOOD_MAX", "read_fit_file", "write_fit_file"]

META = "bayescale_meta"
CARD = "bayescale_card"
#: Largest pointwise log-likelihood stored in the file (values: chains x draws x runs), 16 MB in float32.
STORED_LOG_LIKELIHOOD_MAX = 4_000_000
_TAG = b"\nbayescale-fit-sha256:"
_TRAILER = len(_TAG) + 64 + 1
_FILTERS = {1, 2, 3}            # deflate, shuffle, fletcher32
_MAX_OBJECTS = 500
_STATS = {"diverging": "biu", "n_steps": "iu", "tree_depth": "iu", "energy": "f", "acceptance_rate": "f",
          "step_size": "f"}
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


# --------------------------------------------------------------------------- writing


def _clean(text: str) -> str:
    """A string safe to print: control characters replaced by '?'."""
    return _CONTROL.sub("?", str(text))


def _encode(fit) -> bytes:
    import xarray as xr

    chains, draws = np.shape(fit.samples.posterior["sigma"])
    runs = fit.runs
    n = len(runs)
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    meta = {"law": fit.law.name, "law_source": _clean(fit.law.source), "card_hash": fit.card_hash,
            "noise": fit.noise, "refs": fit.refs, "settings": fit.settings, "versions": fit.versions,
            "timings": fit.timings, "runs_source": _clean(runs.source), "runs_hash": runs.hash,
            "derived": list(runs.derived), "inputs": list(runs.inputs), "response": runs.response,
            "runs": n, "log_likelihood": "stored"}
    if getattr(fit, "structure", None) is not None:
        meta["structure"] = fit.structure.as_dict()
    if getattr(fit, "calibration", None) is not None:
        meta["calibration"] = fit.calibration.as_dict()
    if getattr(fit, "pooling", None) is not None:
        meta["pooling"] = fit.pooling.as_dict()
    attrs = {"inference_library": "numpyro", "bayescale_law": fit.law.name}
    groups = {"posterior": xr.Dataset(
        {k: (("chain", "draw"), np.asarray(fit.samples.posterior[k])) for k in fit.var_names}, coords=coords,
        attrs={**attrs, META: None, CARD: fit.law.text})}
    if chains * draws * n <= STORED_LOG_LIKELIHOOD_MAX:
        ll = np.asarray(fit.log_likelihood, np.float32)
        groups["log_likelihood"] = xr.Dataset({"loss": (("chain", "draw", "run"), ll)},
                                              coords={**coords, "run": np.arange(n)}, attrs=attrs)
    else:
        meta["log_likelihood"] = "on demand"
    groups["sample_stats"] = xr.Dataset({k: (("chain", "draw"), np.asarray(v))
                                         for k, v in fit.samples.sample_stats.items()}, coords=coords, attrs=attrs)
    groups["observed_data"] = xr.Dataset({"loss": ("run", runs.response_array())},
                                         coords={"run": np.arange(n)}, attrs=attrs)
    groups["constant_data"] = xr.Dataset({k: ("run", v) for k, v in runs.input_arrays().items()},
                                         coords={"run": np.arange(n)}, attrs=attrs)
    groups["posterior"].attrs[META] = json.dumps(meta, allow_nan=False, default=_plain)
    buf = io.BytesIO()
    for i, (name, ds) in enumerate(groups.items()):
        # compressed, except the log-likelihood: float32 noise, it shrinks by ~10% for seconds of zlib
        encoding = {k: {"zlib": True, "complevel": 4} for k in ds.data_vars
                    if ds[k].dtype.kind in "fiub" and name != "log_likelihood"}
        ds.to_netcdf(buf, mode="w" if i == 0 else "a", group=name, engine="h5netcdf", encoding=encoding)
    data = buf.getvalue()
    return data + _TAG + hashlib.sha256(data).hexdigest().encode() + b"\n"


def _plain(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_fit_file(fit, path: Path) -> Path:
    """Encode ``fit`` and write it atomically to ``path`` (the caller has checked overwriting)."""
    try:
        data = _encode(fit)
    except (TypeError, ValueError) as exc:
        raise FitFileError(f"the fit cannot be written to {str(path)!r}: {exc}") from None
    try:
        return write_atomically(path, data)
    except OSError as exc:
        raise FitFileError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- reading


class _Bad(Exception):
    """A problem found while reading; becomes a FitFileError naming the file."""


def _content(data: bytes) -> bytes:
    if len(data) < _TRAILER or data[-_TRAILER:-65] != _TAG or data[-1:] != b"\n":
        if data[:8] == b"\x89HDF\r\n\x1a\n":
            raise _Bad("it has no bayescale checksum: it was not written by this version of bayescale, or was "
                       "modified or truncated after it was written")
        raise _Bad("it is not a bayescale fit file (not NetCDF/HDF5)")
    content, digest = data[:-_TRAILER], data[-65:-1]
    if hashlib.sha256(content).hexdigest().encode() != digest:
        raise _Bad("it is damaged: its SHA-256 checksum does not match its content (the file was modified, "
                   "truncated or corrupted after bayescale wrote it)")
    return content


def _check_hdf5(f) -> None:
    """Only plain HDF5: hard links, no external storage, virtual datasets, unknown filters or named types."""
    import h5py

    stack, seen = [f], 0
    while stack:
        group = stack.pop()
        for name in group:
            seen += 1
            if seen > _MAX_OBJECTS:
                raise _Bad(f"it holds more than {_MAX_OBJECTS} HDF5 objects")
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise _Bad(f"{group.name}/{name} is not a hard link ({type(link).__name__}); fit files use "
                           f"hard links only")
            obj = group[name]
            if isinstance(obj, h5py.Group):
                stack.append(obj)
            elif isinstance(obj, h5py.Dataset):
                if obj.external:
                    raise _Bad(f"dataset {obj.name} uses external storage")
                if obj.is_virtual:
                    raise _Bad(f"dataset {obj.name} is virtual")
                plist = obj.id.get_create_plist()
                filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
                if filters - _FILTERS:
                    raise _Bad(f"dataset {obj.name} uses HDF5 filters {sorted(filters - _FILTERS)}")
                if obj.dtype.kind not in "fiub" and h5py.check_string_dtype(obj.dtype) is None:
                    raise _Bad(f"dataset {obj.name} has the unsupported type {obj.dtype}")
            else:
                raise _Bad(f"{group.name}/{name} is a {type(obj).__name__}; fit files hold groups and datasets only")


def _text(value, what: str) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(f"{what} is not UTF-8 text") from None
    if not isinstance(value, str):
        raise _Bad(f"{what} is not text")
    return value


def _array(group, name: str, shape: tuple, kinds: str, what: str) -> np.ndarray:
    if name not in group:
        raise _Bad(f"{what} {name!r} is missing")
    ds = group[name]
    if ds.dtype.kind not in kinds:
        raise _Bad(f"{what} {name!r} has type {ds.dtype}, expected {'numbers' if 'f' in kinds else 'integers'}")
    if ds.shape != shape:
        raise _Bad(f"{what} {name!r} has shape {ds.shape}, expected {shape}")
    return np.asarray(ds[()])


def _strings_ok(tree, what: str) -> None:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if _CONTROL.search(node):
                raise _Bad(f"{what} holds control characters (escape sequences)")
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _field(meta: dict, key: str, types, what: str = "metadata field"):
    if key not in meta:
        raise _Bad(f"{what} {key!r} is missing")
    value = meta[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise _Bad(f"{what} {key!r} has a wrong type ({value!r})")
    if not isinstance(value, types):
        raise _Bad(f"{what} {key!r} has a wrong type ({type(value).__name__})")
    return value


def _extras(meta: dict) -> dict:
    """The run structure, the calibration and the pooling a fit may carry (None when absent)."""
    from ..evidence.calibration import Calibration
    from ..evidence.structure import RunStructure
    from ..inference.pooling import Pooling

    out = {}
    for key, cls in (("structure", RunStructure), ("calibration", Calibration), ("pooling", Pooling)):
        value = meta.get(key)
        if value is not None and not isinstance(value, dict):
            raise _Bad(f"metadata field {key!r} must be an object")
        try:
            out[key] = None if value is None else cls.from_dict(value)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _Bad(f"its {key} is not valid ({type(exc).__name__}: {exc})") from None
    return out


def _meta(text: str) -> dict:
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError):
        raise _Bad("its metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise _Bad("its metadata is not a JSON object")
    _strings_ok(meta, "its metadata")
    for key in ("law", "law_source", "card_hash", "noise", "runs_source", "runs_hash", "response",
                "log_likelihood"):
        _field(meta, key, str)
    for key in ("refs", "settings", "versions", "timings"):
        _field(meta, key, dict)
    for key in ("derived", "inputs"):
        if not all(isinstance(v, str) for v in _field(meta, key, list)):
            raise _Bad(f"metadata field {key!r} must be a list of names")
    _field(meta, "runs", int)
    s = meta["settings"]
    for key, low, high in (("chains", 1, 10_000), ("warmup", 0, 10**8), ("draws", 1, 10**8),
                           ("seed", 0, 2**32 - 1), ("max_tree_depth", 1, 30)):
        value = _field(s, key, int, "setting")
        if not low <= value <= high:
            raise _Bad(f"setting {key!r} = {value} is out of range")
    accept = _field(s, "target_accept", (int, float), "setting")
    if not 0 < accept < 1:
        raise _Bad(f"setting 'target_accept' = {accept} is out of range")
    _field(s, "dense_mass", bool, "setting")
    for key, value in meta["versions"].items():
        if not isinstance(value, str):
            raise _Bad(f"version {key!r} is not text")
    for key, value in meta["timings"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _Bad(f"timing {key!r} is not a finite number")
    if meta["log_likelihood"] not in ("stored", "on demand"):
        raise _Bad("metadata field 'log_likelihood' must be 'stored' or 'on demand'")
    return meta


def _law(meta: dict, card_text: str):
    from ..cards import law_from_text
    from ..noise import NOISE_MODELS

    try:
        law = law_from_text(card_text, source=meta["law_source"])
    except BayescaleError as exc:
        raise _Bad(f"its law card does not compile ({exc})") from None
    if law.hash != meta["card_hash"]:
        raise _Bad(f"its law card's hash {law.hash} is not the stored card hash {meta['card_hash']} "
                   f"(the card was edited after the fit)")
    if law.name != meta["law"]:
        raise _Bad(f"its card is law {law.name!r} but the metadata says {meta['law']!r}")
    if meta["noise"] not in NOISE_MODELS:
        raise _Bad(f"its noise model {meta['noise']!r} is not one of {', '.join(NOISE_MODELS)}")
    if tuple(meta["inputs"]) != law.input_names or meta["response"] != law.response.name:
        raise _Bad("its inputs and response do not match its law card")
    if not set(meta["derived"]) <= set(law.input_names):
        raise _Bad("its derived inputs are not inputs of its law card")
    return law


def _runs(f, meta: dict, law):
    import pandas as pd

    from ..errors import DataError, DataWarning
    from ..runs import Runs, prepare_runs

    n = meta["runs"]
    if not 1 <= n <= 10**9:
        raise _Bad(f"metadata field 'runs' = {n} is out of range")
    for group in ("constant_data", "observed_data"):
        if group not in f:
            raise _Bad(f"group {group!r} is missing")
    columns = {k: _array(f["constant_data"], k, (n,), "f", "input") for k in law.input_names}
    columns[law.response.name] = _array(f["observed_data"], "loss", (n,), "f", "observed")
    table = pd.DataFrame(columns)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)     # warned about when the fit was made
            checked = prepare_runs(table, law, noise=meta["noise"])
    except DataError as exc:
        raise _Bad(f"its runs are not valid ({exc})") from None
    runs = Runs(table=checked.table, inputs=law.input_names, response=law.response.name,
                source=meta["runs_source"], derived=tuple(meta["derived"]))
    if runs.hash != meta["runs_hash"]:
        raise _Bad("its runs do not hash to the stored runs hash (they were edited after the fit)")
    from ..model import reference_points

    refs = meta["refs"]
    expected = reference_points(law, runs.input_arrays(), runs.response_array())
    if set(refs) != set(expected) or not all(
            isinstance(refs[k], (int, float)) and not isinstance(refs[k], bool)
            and math.isclose(refs[k], v, rel_tol=1e-9) for k, v in expected.items()):
        raise _Bad(f"its reference points {refs} are not those of its runs ({expected})")
    return runs


def _posterior(f, meta: dict, law) -> dict:
    if "posterior" not in f:
        raise _Bad("group 'posterior' is missing")
    shape = (meta["settings"]["chains"], meta["settings"]["draws"])
    from ..model import scale_values

    out = {p.name: _array(f["posterior"], p.name, shape, "f", "parameter") for p in law.params}
    for name, x in out.items():
        if not np.all(np.isfinite(x)):
            raise _Bad(f"parameter {name!r} has non-finite draws")
    unscaled = {p.name: out[p.name] for p in law.params if p.scale is None}
    with np.errstate(all="ignore"):
        scales = scale_values(law, unscaled, meta["refs"], xp="numpy")
    for p in law.params:        # the sampled value (natural / scale for a scaled parameter) is in the support
        x = out[p.name] if p.scale is None else out[p.name] / scales[p.name]
        lo, hi = p.prior.bounds
        slack = 1e-5 * (1.0 + np.abs(x))       # float32 rounding of the sampled value
        if np.any(~np.isfinite(x)) or np.any(x < lo - slack) or np.any(x > hi + slack):
            on = p.name if p.scale is None else f"{p.name} / ({p.scale})"
            raise _Bad(f"parameter {p.name!r} has draws outside its prior's support: {on} must be in "
                       f"[{lo:g}, {hi:g}]")
    if law.derived:             # the natural parameters must be those the sampled ones give
        with np.errstate(all="ignore"):
            derived, _ = law.derived_values(dict(out), meta["refs"], xp="numpy")
        for name, value in derived.items():
            stored = _array(f["posterior"], name, shape, "f", "parameter")
            value = np.broadcast_to(np.asarray(value, float), shape)
            if not np.all(np.isfinite(stored)):
                raise _Bad(f"parameter {name!r} has non-finite draws")
            if not np.allclose(stored, value, rtol=1e-5, atol=0.0, equal_nan=False):
                raise _Bad(f"parameter {name!r} does not equal its derivation {name} = "
                           f"{dict(law.derived)[name]} from the sampled parameters")
            out[name] = stored
    sigma = _array(f["posterior"], "sigma", shape, "f", "parameter")
    lo, hi = law.sigma_prior.bounds
    if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0) or np.any(sigma < lo) or np.any(sigma > hi):
        raise _Bad("sigma has draws that are not finite and positive (inside its prior's support)")
    out["sigma"] = sigma
    pooling = meta.get("pooling")
    if pooling is not None:
        from ..inference.pooling import Pooling

        try:
            pooling = Pooling.from_dict(pooling)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _Bad(f"its pooling is not valid ({type(exc).__name__}: {exc})") from None
        if len(pooling.index) != meta["runs"] or any(not 0 <= i < len(pooling.levels) for i in pooling.index):
            raise _Bad("its pooling's group index does not match its runs")
        from ..priors import parse_prior

        bounds = {**{pooling.tau(n): parse_prior(s).bounds for n, s in zip(pooling.vary, pooling.scales)},
                  **{u: (-np.inf, np.inf) for u in pooling.site_names if u.startswith("u_")}}
        for name in pooling.site_names:
            x = _array(f["posterior"], name, shape, "f", "parameter")
            lo, hi = bounds[name]
            if not np.all(np.isfinite(x)) or np.any(x < lo) or np.any(x > hi):
                raise _Bad(f"pooled site {name!r} has draws that are not finite or outside its prior's support")
            out[name] = x
    return out


def _sample_stats(f, meta: dict) -> dict:
    if "sample_stats" not in f:
        raise _Bad("group 'sample_stats' is missing")
    s = meta["settings"]
    shape = (s["chains"], s["draws"])
    group = f["sample_stats"]
    out = {k: _array(group, k, shape, kinds, "sampler statistic") for k, kinds in _STATS.items()}
    out["diverging"] = out["diverging"].astype(bool)
    for k in group:
        if k not in out and k not in ("chain", "draw"):
            out[k] = _array(group, k, shape, "fiub", "sampler statistic")
    if np.any(out["tree_depth"] < 0) or np.any(out["tree_depth"] > s["max_tree_depth"]):
        raise _Bad(f"sampler statistic 'tree_depth' is outside 0..{s['max_tree_depth']}")
    if np.any(out["n_steps"] < 0) or np.any(out["n_steps"] >= 2 ** (s["max_tree_depth"] + 1)):
        raise _Bad("sampler statistic 'n_steps' is out of range")
    acc = out["acceptance_rate"]
    if not np.all(np.isfinite(acc)) or np.any(acc < 0) or np.any(acc > 1):
        raise _Bad("sampler statistic 'acceptance_rate' is outside [0, 1]")
    if not np.all(np.isfinite(out["step_size"])) or np.any(out["step_size"] <= 0):
        raise _Bad("sampler statistic 'step_size' is not positive")
    if not np.all(np.isfinite(out["energy"])):
        raise _Bad("sampler statistic 'energy' is not finite")
    return out


def _log_likelihood(f, meta: dict):
    if meta["log_likelihood"] == "on demand":
        if "log_likelihood" in f:
            raise _Bad("it holds a log-likelihood its metadata says is computed on demand")
        return None
    s = meta["settings"]
    if "log_likelihood" not in f:
        raise _Bad("group 'log_likelihood' is missing")
    ll = _array(f["log_likelihood"], "loss", (s["chains"], s["draws"], meta["runs"]), "f", "log-likelihood")
    if np.any(np.isnan(ll)) or np.any(ll == np.inf):
        raise _Bad("its pointwise log-likelihood holds NaN or +inf")
    return ll


def read_fit_file(path) -> dict:
    """Read and verify a fit file; returns its parts (law, noise, runs, refs, settings, versions,
    timings, posterior, log_likelihood or None, sample_stats).  Raises FitFileError."""
    import h5py

    path = Path(path)
    where = f"fit file {str(path)!r}"
    if not path.is_file():
        raise FitFileError(f"{where} does not exist")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FitFileError(f"{where} cannot be read: {exc.strerror or exc}") from None
    try:
        content = _content(data)
        try:
            f = h5py.File(io.BytesIO(content), "r")
        except Exception as exc:    # h5py raises OSError, ValueError, ... for a file it cannot parse
            raise _Bad(f"HDF5 cannot open it ({type(exc).__name__})") from None
        with f:
            _check_hdf5(f)
            if "posterior" not in f:
                raise _Bad("group 'posterior' is missing")
            attrs = f["posterior"].attrs
            if META not in attrs or CARD not in attrs:
                raise _Bad("its posterior group has no bayescale metadata")
            meta = _meta(_text(attrs[META], "its metadata"))
            card_text = _text(attrs[CARD], "its law card")
            law = _law(meta, card_text)
            runs = _runs(f, meta, law)
            parts = {"law": law, "noise": meta["noise"], "runs": runs, "refs": dict(meta["refs"]),
                     "settings": meta["settings"], "versions": meta["versions"], "timings": meta["timings"],
                     "posterior": _posterior(f, meta, law), "log_likelihood": _log_likelihood(f, meta),
                     "sample_stats": _sample_stats(f, meta), **_extras(meta)}
    except _Bad as exc:
        raise FitFileError(f"{where} cannot be used: {exc}") from None
    except FitFileError:
        raise
    except Exception as exc:        # a crafted file h5py chokes on mid-read: still one error type
        raise FitFileError(f"{where} cannot be used: reading it failed ({type(exc).__name__})") from None
    return parts
