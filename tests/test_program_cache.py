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


def test_padded_sizes_are_few_and_waste_at_most_half():
    sizes = [sampler.padded_size(n) for n in range(1, 5000)]
    assert min(sizes) == 16 and len(set(sizes)) <= 20
    assert all(n <= s <= max(16, 1.5 * n) for n, s in zip(range(1, 5000), sizes))


def test_padding_is_masked_out_of_the_density():
    # the padded model's log density at any point equals the unpadded one's
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer.util import log_density

    import bayescale
    from bayescale.model import make_model, reference_points

    law = bayescale.load_law("chinchilla")
    rng = np.random.default_rng(0)
    inputs = {"N": 10 ** rng.uniform(7, 9, 20), "D": 10 ** rng.uniform(9, 11, 20)}
    loss = 1.8 + 400 / inputs["N"] ** 0.34 + 400 / inputs["D"] ** 0.28
    refs = reference_points(law, inputs, loss)
    model = make_model(law, "student_t_log")
    params = {"L_c_hat": 1.0, "f_E": 0.6, "g_N": 0.4, "alpha": 0.3, "beta": 0.3, "sigma": 0.02}
    plain, _ = log_density(model, (inputs, refs), {"loss": loss}, params)
    rows = np.arange(sampler.padded_size(20))
    rows[20:] = 0
    padded, _ = log_density(model, ({k: v[rows] for k, v in inputs.items()}, refs),
                            {"loss": loss[rows], "mask": jnp.arange(rows.size) < 20},
                            params)
    assert float(padded) == pytest.approx(float(plain), rel=1e-6)


@pytest.mark.filterwarnings("ignore::bayescale.ConvergenceWarning")     # 60 iterations: short on purpose
def test_data_sets_of_similar_size_share_one_compiled_program():
    from importlib import resources

    import pandas as pd

    import bayescale

    runs = pd.read_csv(resources.files("bayescale.data") / "pilot_chinchilla.csv")
    before = sampler._compiled.cache_info().misses
    for n in (18, 20, 23):                     # all padded to 24 rows
        bayescale.fit(runs.iloc[:n], law="chinchilla", chains=2, warmup=37, draws=23, progress=False)
    assert sampler._compiled.cache_info().misses == before + 1
