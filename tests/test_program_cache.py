"""The traced sampler is saved (jax.export) and reused by later processes.

Each fit here runs in a fresh Python process with its own cache folder, as a
user's successive ``bayescale fit`` commands do.
"""

import json
import subprocess
import sys

import pytest

from bayescale import sampler

SCRIPT = r"""
import hashlib, json, sys, warnings
import numpy as np, pandas as pd
from importlib import resources
import bayescale
from bayescale import sampler
if sys.argv[1] == "forbid-trace":
    def refuse(*args, **kwargs):
        raise AssertionError("the program was traced, not loaded")
    sampler._trace = refuse
runs = pd.read_csv(resources.files("bayescale.data") / "pilot_chinchilla.csv")
warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
fit = bayescale.fit(runs, law="chinchilla", chains=2, warmup=100, draws=100, seed=5, progress=False)
draws = np.stack([np.asarray(fit.idata.posterior[k]) for k in ("E", "alpha", "beta")])
print(json.dumps({"digest": hashlib.sha256(draws.tobytes()).hexdigest()}))
"""


def _fit_in_new_process(cache, mode="trace-ok"):
    env = {"BAYESCALE_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin", "HOME": str(cache)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _programs(cache):
    return sorted(cache.glob("programs/*/*.jaxexport"))


def test_a_second_process_loads_the_program_and_draws_the_same(tmp_path):
    first = _fit_in_new_process(tmp_path)
    saved = _programs(tmp_path)
    assert len(saved) == 1
    second = _fit_in_new_process(tmp_path, "forbid-trace")
    assert second["digest"] == first["digest"]
    assert _programs(tmp_path) == saved


def test_an_unreadable_saved_program_is_traced_again_and_replaced(tmp_path):
    first = _fit_in_new_process(tmp_path)
    (path,) = _programs(tmp_path)
    good = path.read_bytes()
    path.write_bytes(b"not a jax.export program")
    again = _fit_in_new_process(tmp_path)
    assert again["digest"] == first["digest"]
    assert path.read_bytes() == good


def test_the_program_key_covers_the_code_and_the_settings(monkeypatch):
    key = {"law": "x", "noise": "student_t_log", "warmup": 1000}
    base = sampler._program_path(key)
    if base is None:
        pytest.skip("the cache is off (BAYESCALE_JAX_CACHE=0)")
    assert sampler._program_path({**key, "warmup": 999}) != base
    monkeypatch.setattr(sampler, "_code_fingerprint", lambda: "edited-source")
    assert sampler._program_path(key) != base
