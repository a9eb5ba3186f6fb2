"""Every ArviZ call bayescale makes, in one module.

ArviZ here is 0.23 (ArviZ 1.x needs Python >= 3.12 and drops
``InferenceData``); keeping the calls together makes a later port one file.
ArviZ is imported lazily: it costs ~1.5 s of import time.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ess", "from_arrays", "loo", "rhat", "stacking_weights", "waic", "with_groups"]


def _az():
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz as az

    return az


def from_arrays(posterior: dict, log_likelihood: dict, observed: dict, constant: dict,
                sample_stats: dict, attrs: dict):
    """An InferenceData from (chain, draw, ...) arrays; per-run arrays get the dim ``run``."""
    az = _az()
    n = len(next(iter(observed.values())))
    dims = {k: ["run"] for k in list(observed) + list(constant)}
    idata = az.from_dict(
        posterior=posterior, log_likelihood=log_likelihood, observed_data=observed,
        constant_data=constant, sample_stats=sample_stats, coords={"run": np.arange(n)},
        dims=dims, attrs=attrs,
    )
    return idata


def with_groups(idata, groups: dict, n_runs: int):
    """A new InferenceData: ``idata``'s groups plus ``groups`` (group -> {var: (chain, draw, ...) array});
    a variable with a trailing axis of length ``n_runs`` gets the dim ``run``."""
    az = _az()
    dims = {v: ["run"] for g in groups.values() for v, a in g.items() if np.ndim(a) == 3 and a.shape[-1] == n_runs}
    extra = az.from_dict(**groups, coords={"run": np.arange(n_runs)}, dims=dims)
    merged = {g: getattr(idata, g) for g in idata.groups()}
    merged.update({g: getattr(extra, g) for g in extra.groups() if g in groups})
    return az.InferenceData(**merged)


def rhat(idata, var_names) -> dict:
    ds = _az().rhat(idata, var_names=list(var_names), method="rank")
    return {k: float(ds[k].values) for k in var_names}


def ess(idata, var_names, method: str) -> dict:
    ds = _az().ess(idata, var_names=list(var_names), method=method)
    return {k: float(ds[k].values) for k in var_names}


def loo(idata, var_name: str = "loss") -> dict:
    """PSIS-LOO of one observed variable, as plain numbers and arrays.

    Keys: ``elpd``, ``se``, ``p`` (effective number of parameters),
    ``pointwise`` (elpd_loo_i, shape (n,)), ``pareto_k`` (shape (n,)),
    ``n_samples``, ``good_k`` (ArviZ's sample-size dependent threshold).
    ArviZ's own warning about large Pareto k is silenced: callers report it.
    """
    import warnings

    az = _az()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = az.loo(idata, pointwise=True, var_name=var_name, scale="log")
    return {"elpd": float(res["elpd_loo"]), "se": float(res["se"]), "p": float(res["p_loo"]),
            "pointwise": np.asarray(res["loo_i"], float).reshape(-1),
            "pareto_k": np.asarray(res["pareto_k"], float).reshape(-1),
            "n_samples": int(res["n_samples"]), "good_k": float(res["good_k"])}


def waic(idata, var_name: str = "loss") -> dict:
    """WAIC (log scale) of one observed variable: ``elpd``, ``se``, ``p``, ``pointwise``, ``warning``.

    ``warning`` is ArviZ's flag that some pointwise variance of the
    log-likelihood exceeds 0.4 (WAIC then unreliable; prefer LOO).
    """
    import warnings

    az = _az()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = az.waic(idata, pointwise=True, var_name=var_name, scale="log")
    return {"elpd": float(res["elpd_waic"]), "se": float(res["se"]), "p": float(res["p_waic"]),
            "pointwise": np.asarray(res["waic_i"], float).reshape(-1), "warning": bool(res["warning"])}


def stacking_weights(pointwise: dict) -> dict:
    """Stacking weights (Yao et al. 2018) from pointwise elpd_loo arrays, one per model name.

    Done by ``az.compare(method="stacking")`` on ELPDData rebuilt from the
    arrays (so pointwise values replaced by exact refits count).  Each
    observation's values are shifted by their maximum over models first:
    the weights do not change, and ``exp`` of very negative elpds cannot
    underflow to 0 for every model at once.
    """
    import warnings

    import xarray as xr

    az = _az()
    names = list(pointwise)
    mat = np.column_stack([np.asarray(pointwise[k], float) for k in names])
    mat = mat - mat.max(axis=1, keepdims=True)
    n = mat.shape[0]
    elpds = {}
    for j, name in enumerate(names):
        col = mat[:, j]
        elpds[name] = az.ELPDData(
            data=[col.sum(), float(np.sqrt(n * col.var())), 0.0, 0, n, False,
                  xr.DataArray(col, dims="run"), xr.DataArray(np.zeros(n), dims="run"), "log", 0.7],
            index=["elpd_loo", "se", "p_loo", "n_samples", "n_data_points", "warning", "loo_i",
                   "pareto_k", "scale", "good_k"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*inplace keyword.*")  # pandas 3 vs ArviZ 0.23
        table = az.compare(elpds, ic="loo", method="stacking", scale="log")
    return {name: float(table.loc[name, "weight"]) for name in names}
