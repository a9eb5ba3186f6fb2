"""Every ArviZ call bayescale makes, in one module.

ArviZ here is 0.23 (ArviZ 1.x needs Python >= 3.12 and drops
``InferenceData``); keeping the calls together makes a later port one file.
ArviZ is imported lazily: it costs ~1.5 s of import time.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ess", "from_arrays", "load_netcdf", "rhat", "save_netcdf"]


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


def rhat(idata, var_names) -> dict:
    ds = _az().rhat(idata, var_names=list(var_names), method="rank")
    return {k: float(ds[k].values) for k in var_names}


def ess(idata, var_names, method: str) -> dict:
    ds = _az().ess(idata, var_names=list(var_names), method=method)
    return {k: float(ds[k].values) for k in var_names}


def save_netcdf(idata, path) -> None:
    idata.to_netcdf(str(path))


def load_netcdf(path):
    return _az().from_netcdf(str(path))
