"""The frozen :class:`FitSet` (many fits of one law) and its file.

A ``FitSet`` maps each group's key to its :class:`~bayescale.result.Fit`;
groups that could not be fitted (their runs failed validation) are in
``errors`` (key -> message) instead, and every group, fitted or not, has a
row in :meth:`FitSet.summary`.  Keys are a group's value of the ``by``
column (one column) or a tuple of values (several), the index of a table in
a list, or the key of a dict of tables.

The file is ONE NetCDF file (``save`` / :func:`load_fitset`): every group's
posterior draws, sampler statistics, runs and reference points stacked
along a ``group`` axis, with the law card, settings, keys and errors as
JSON in its attributes.  One file rather than a folder of fit files because
a batch is often thousands of small fits: one write instead of thousands
(a fit file costs ~0.1 s to write), and a half-written set is never left
behind (written to a temporary name, then renamed).  Pointwise
log-likelihoods are not stored: they are a function of the draws and the
runs and are recomputed on load (as the diagnostics are), which keeps the
file ~10x smaller for curves of a few dozen runs.  :meth:`FitSet.export`
writes the per-group fit files instead, for commands that take one fit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import FitFileError

__all__ = ["FitSet", "key_label", "load_fitset"]

_META = "bayescale_fitset"


def key_label(key) -> str:
    """A key as text: ``"IC / inet_5 / ViT/B/16"`` for a tuple, ``str(key)`` otherwise."""
    return " / ".join(map(str, key)) if isinstance(key, tuple) else str(key)


@dataclass(frozen=True)
class FitSet(Mapping):
    """Independent fits of one law: ``fitset[key] -> Fit``, plus the groups that failed and a summary."""

    fits: dict
    law: object
    noise: str
    by: tuple = ()
    errors: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    keys_order: tuple = ()

    def __getitem__(self, key):
        if key in self.fits:
            return self.fits[key]
        if key in self.errors:
            raise KeyError(f"group {key_label(key)!r} was not fitted: {self.errors[key]}")
        raise KeyError(f"no group {key!r}; groups are {[k for k in self.all_keys][:10]}"
                       + (" ..." if len(self.all_keys) > 10 else ""))

    def __iter__(self):
        return (k for k in self.all_keys if k in self.fits)

    def __len__(self) -> int:
        return len(self.fits)

    @property
    def all_keys(self) -> tuple:
        """Every group's key, fitted or not, in the order the groups were given."""
        return self.keys_order or tuple(self.fits) + tuple(k for k in self.errors if k not in self.fits)

    @property
    def passed(self) -> int:
        """How many fits passed the diagnostics gate."""
        return sum(f.diagnostics.passed for f in self.fits.values())

    def summary(self, prob: float = 0.9) -> pd.DataFrame:
        """One row per group: status, runs, every parameter's median and central ``prob`` interval, diagnostics.

        ``status`` is ``"ok"`` (passed the gate), ``"failed gate"`` or ``"error"``
        (not fitted; ``error`` says why); ``retried``: the first attempt failed the gate; ``sampler``:
        which made the draws kept, ``"batch"`` (the first attempt or the batched retry) or ``"nuts"``
        (the refit of a fit that failed both).  Interval columns are ``<param>_lo`` and
        ``<param>_hi`` (quantiles ``(1 - prob) / 2`` and ``(1 + prob) / 2``).
        """
        lo, hi = (1 - prob) / 2, (1 + prob) / 2
        names = list(self.law.param_names) + ["sigma"]
        by = list(self.by) or ["group"]
        rows = []
        for key in self.all_keys:
            values = key if isinstance(key, tuple) and len(by) == len(key) else (key,)
            row = dict(zip(by, values))
            if key in self.fits:
                f = self.fits[key]
                d = f.diagnostics.as_dict()
                row.update({"status": "ok" if f.diagnostics.passed else "failed gate", "runs": len(f.runs),
                            "retried": bool(f.settings.get("retried")),
                            "sampler": "nuts" if f.settings.get("sampler") == "bayescale.nuts" else "batch"})
                for name in names:
                    q = np.quantile(f.draws(name), [0.5, lo, hi])
                    row.update({name: q[0], f"{name}_lo": q[1], f"{name}_hi": q[2]})
                row.update({"r_hat_max": d["r_hat_max"], "ess_bulk_min": d["ess_bulk_min"],
                            "ess_tail_min": d["ess_tail_min"], "divergences": d["divergences"],
                            "problems": "; ".join(d["problems"]), "error": ""})
            else:
                row.update({"status": "error", "error": self.errors[key]})
            row["notes"] = "; ".join(self.notes.get(key, ()))
            rows.append(row)
        return pd.DataFrame(rows)

    def plot(self, keys=None, **kwargs):
        """Small multiples, one panel per group (:func:`bayescale.plots.fitset.plot_fitset`); a Figure."""
        from ..plots.fitset import plot_fitset

        return plot_fitset(self, keys, **kwargs)

    def __str__(self) -> str:
        failed = len(self.fits) - self.passed
        head = (f"{self.law.name}: {len(self.all_keys)} groups, {len(self.fits)} fitted "
                f"({self.passed} passed the gate, {failed} failed it), {len(self.errors)} not fitted")
        table = self.summary()
        table["error"] = table["error"].str.slice(0, 60)
        cols = [c for c in table.columns if not c.endswith(("_lo", "_hi")) and c not in ("problems", "notes")]
        return head + "\n" + table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")

    # ------------------------------------------------------------------ files

    def save(self, path, force: bool = False) -> Path:
        """Write the whole set to one NetCDF file; refuses to overwrite unless ``force``."""
        import xarray as xr

        path = Path(path)
        if path.is_dir():
            raise FitFileError(f"{str(path)!r} is a directory; give a file name such as fits.nc "
                               "(FitSet.export writes one fit file per group into a folder)")
        if path.exists() and not force:
            raise FitFileError(f"{str(path)!r} exists; pass force=True (CLI: --force) to overwrite it")
        if not path.parent.exists():
            raise FitFileError(f"directory {str(path.parent)!r} does not exist")
        keys = [k for k in self.all_keys if k in self.fits]
        fits = [self.fits[k] for k in keys]
        data = {}
        if fits:
            names = list(self.law.reported_names) + ["sigma"]
            # a fit refitted by NUTS after a failed gate has more draws than the batch's: pad with NaN, keep the count
            chains = max(f.samples.posterior[names[0]].shape[0] for f in fits)
            draws = max(f.samples.posterior[names[0]].shape[1] for f in fits)
            for name in names:
                data[f"posterior__{name}"] = (("group", "chain", "draw"),
                                              _padded([f.samples.posterior[name] for f in fits], chains, draws))
            for name in fits[0].samples.sample_stats:
                data[f"stats__{name}"] = (("group", "chain", "draw"),
                                          _padded([f.samples.sample_stats[name] for f in fits], chains, draws))
            width = max(len(f.runs) for f in fits)
            columns = list(fits[0].runs.inputs) + [fits[0].runs.response]
            for col in columns:
                block = np.full((len(fits), width), np.nan)
                for i, f in enumerate(fits):
                    block[i, :len(f.runs)] = f.runs.table[col].to_numpy(float)
                data[f"runs__{col}"] = (("group", "run"), block)
        meta = {"version": 1, "law_text": self.law.text, "law_source": self.law.source, "noise": self.noise,
                "by": list(self.by), "settings": self.settings, "timings": self.timings,
                "keys": [_encode_key(k) for k in self.all_keys],
                "errors": [[_encode_key(k), v] for k, v in self.errors.items()],
                "notes": [[_encode_key(k), list(v)] for k, v in self.notes.items()],
                "fits": [{"key": _encode_key(k), "runs": len(f.runs), "refs": f.refs, "settings": f.settings,
                          "shape": list(f.samples.posterior[names[0]].shape),
                          "stat_dtypes": {k2: str(np.asarray(v).dtype) for k2, v in f.samples.sample_stats.items()},
                          "timings": f.timings, "versions": f.versions, "runs_source": f.runs.source,
                          "derived": list(f.runs.derived), "inputs": list(f.runs.inputs),
                          "response": f.runs.response} for k, f in zip(keys, fits)]}
        ds = xr.Dataset(data, attrs={_META: json.dumps(meta, default=_json_default)})
        tmp = path.with_name(path.name + ".tmp")
        try:
            ds.to_netcdf(tmp)
            tmp.replace(path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def export(self, folder, force: bool = False) -> Path:
        """Write every fitted group as its own fit file ``<folder>/<key>.nc`` and ``summary.csv``."""
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise FitFileError(f"{str(folder)!r} is a file; give a folder to export into")
        if folder.is_dir() and any(folder.iterdir()) and not force:
            raise FitFileError(f"folder {str(folder)!r} is not empty; pass force=True (CLI: --force) to write into it")
        folder.mkdir(parents=True, exist_ok=True)
        used = set()
        for key in self:
            name = _slug(key_label(key)) or "group"
            stem, i = name, 1
            while stem in used:
                i += 1
                stem = f"{name}_{i}"
            used.add(stem)
            self.fits[key].save(folder / f"{stem}.nc", force=True)
        self.summary().to_csv(folder / "summary.csv", index=False)
        return folder


def _padded(arrays: list, chains: int, draws: int) -> np.ndarray:
    """Arrays (chains, draws) of different sizes stacked as float (group, chains, draws), NaN-padded."""
    out = np.full((len(arrays), chains, draws), np.nan)
    for i, a in enumerate(arrays):
        a = np.asarray(a, float)
        out[i, :a.shape[0], :a.shape[1]] = a
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.")[:120]


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _encode_key(key):
    return {"tuple": [_plain(k) for k in key]} if isinstance(key, tuple) else {"value": _plain(key)}


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _decode_key(data):
    return tuple(data["tuple"]) if "tuple" in data else data["value"]


def load_fitset(path) -> FitSet:
    """Read a set written by :meth:`FitSet.save` (log-likelihoods and diagnostics recomputed)."""
    import xarray as xr

    from ..cards import law_from_text
    from ..diagnostics import diagnose_many
    from ..result import Fit, Samples
    from ..runs import Runs

    path = Path(path)
    if not path.is_file():
        raise FitFileError(f"fit-set file {str(path)!r} does not exist")
    try:
        with xr.open_dataset(path) as ds:
            ds = ds.load()
        meta = json.loads(ds.attrs[_META])
    except (OSError, KeyError, ValueError) as exc:
        raise FitFileError(f"{str(path)!r} is not a bayescale fit-set file ({type(exc).__name__}: {exc})") from None
    law = law_from_text(meta["law_text"], source=meta["law_source"])
    names = list(law.reported_names) + ["sigma"]
    stat_names = [v[len("stats__"):] for v in ds.data_vars if v.startswith("stats__")]
    parts = []
    for i, info in enumerate(meta["fits"]):
        n = info["runs"]
        table = pd.DataFrame({c: ds[f"runs__{c}"].values[i, :n] for c in info["inputs"] + [info["response"]]})
        runs = Runs(table=table, inputs=tuple(info["inputs"]), response=info["response"],
                    source=info["runs_source"], derived=tuple(info["derived"]))
        c, d = info["shape"]
        posterior = {name: ds[f"posterior__{name}"].values[i, :c, :d] for name in names}
        stats = {name: ds[f"stats__{name}"].values[i, :c, :d].astype(info["stat_dtypes"][name]) for name in stat_names}
        parts.append((info, runs, posterior, stats))
    verdicts = diagnose_many([p[2] for p in parts], [p[3] for p in parts], names,
                             meta["settings"].get("max_tree_depth", 10), meta["noise"]) if parts else []
    fits = {}
    for (info, runs, posterior, stats), diagnostics in zip(parts, verdicts):
        fits[_decode_key(info["key"])] = Fit(
            samples=Samples(posterior, None, stats), law=law, noise=meta["noise"], runs=runs, refs=info["refs"],
            settings=info["settings"], versions=info["versions"], diagnostics=diagnostics, timings=info["timings"])
    return FitSet(fits=fits, law=law, noise=meta["noise"], by=tuple(meta["by"]),
                  errors={_decode_key(k): v for k, v in meta["errors"]},
                  notes={_decode_key(k): tuple(v) for k, v in meta["notes"]}, settings=meta["settings"],
                  timings=meta["timings"], keys_order=tuple(_decode_key(k) for k in meta["keys"]))
