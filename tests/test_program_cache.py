"""The traced sampler is saved (jax.export) and reused by later processes.

The fits are short on purpose and never retried (``retry=False``: a refit at other settings is
another program).  Each fit here runs in a fresh Python process with its own cache folder, as a
user's successive ``bayescale fit`` commands do.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bayescale import sampler

SCRIPT = r"""
import hashlib, json, os, sys, warnings
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
fit = bayescale.fit(runs, law="chinchilla", chains=2, warmup=100, draws=100, seed=5, progress=False,
                      retry=False)
draws = np.stack([np.asarray(fit.idata.posterior[k]) for k in ("E", "alpha", "beta")])
if os.environ.get("ALSO"):      # a second data shape, fitted after the first
    bayescale.fit(runs.iloc[:int(os.environ["ALSO"])], law="chinchilla", chains=2, warmup=100, draws=100, seed=5,
                  progress=False, retry=False)
print(json.dumps({"digest": hashlib.sha256(draws.tobytes()).hexdigest()}))
"""


def _fit_in_new_process(cache, mode="trace-ok", also=""):
    env = {"BAYESCALE_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin", "HOME": str(cache), "ALSO": also}
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
        bayescale.fit(runs.iloc[:n], law="chinchilla", chains=2, warmup=37, draws=23, progress=False, retry=False)
    assert sampler._compiled.cache_info().misses == before + 1


# --------------------------------------------------------------------------- cache faults (issue 10)


def test_a_damaged_or_foreign_saved_program_is_traced_again_and_replaced(tmp_path):
    """A flipped byte used to deserialise, fail to compile, and break every later fit of that law and
    shape until the cache was deleted; the entry's checksum now catches it (as it catches a file that
    is not a program at all).  An intact entry that deserialises but does not compile for its key
    (here the program of another data shape, planted under this key's name) is caught when it fails
    to compile.  Each is rewritten, and the draws are the same."""
    first = _fit_in_new_process(tmp_path, also="20")        # two shapes: 40 runs (padded to 48) and 20 (24)
    entries = _programs(tmp_path)
    assert len(entries) == 2
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in entries}
    mine = next(p for p in entries if p.stat().st_mtime == min(q.stat().st_mtime for q in entries))
    good = mine.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x10
    mine.write_bytes(bytes(damaged))
    assert _fit_in_new_process(tmp_path)["digest"] == first["digest"]
    assert mine.read_bytes() == good
    mine.write_bytes(b"not a jax.export program")
    assert _fit_in_new_process(tmp_path)["digest"] == first["digest"]
    assert mine.read_bytes() == good
    foreign = next(p for p in entries if p != mine)
    mine.write_bytes(foreign.read_bytes())
    assert _fit_in_new_process(tmp_path)["digest"] == first["digest"]
    assert mine.read_bytes() == good
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in _programs(tmp_path)} == digests


def _cli(cache, *argv):
    env = {"BAYESCALE_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin", "HOME": "/nonexistent-home"}
    return subprocess.run([sys.executable, "-m", "bayescale", *map(str, argv)], capture_output=True, text=True,
                          env=env, timeout=600)


def test_an_unusable_cache_folder_costs_one_warning_not_a_crash(tmp_path):
    """Every command works; the first fit of a process says once that it runs without caches (it
    crashed at import, even `bayescale laws`).  Three unusable folders for `laws`, one for the rest."""
    import pandas as pd
    from importlib import resources

    (tmp_path / "afile").write_text("not a folder")
    for cache in (tmp_path / "afile" / "cache", Path("/proc/bayescale-no/cache")):
        proc = _cli(cache, "laws")
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    cache = tmp_path / "afile"
    runs = tmp_path / "runs.csv"
    pd.read_csv(resources.files("bayescale.data") / "pilot_chinchilla.csv").to_csv(runs, index=False)
    fit_nc = tmp_path / "fit.nc"
    commands = [("laws",), ("show", "chinchilla"),
                ("fit", runs, "--law", "chinchilla", "--chains", "2", "--warmup", "60", "--draws", "60",
                 "--no-retry", "--out", fit_nc),
                ("summary", fit_nc), ("predict", fit_nc, "--at", "N=7e10,D=1.4e12"),
                ("optimal", fit_nc, "--budget", "5.88e23")]
    for argv in commands:
        proc = _cli(cache, *argv)
        assert proc.returncode == 0, (argv, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, proc.stderr
        notes = [ln for ln in proc.stderr.splitlines() if "cannot be used" in ln]
        assert len(notes) == (1 if argv[0] == "fit" else 0), (argv, proc.stderr)
        if notes:
            assert notes[0].startswith(f"warning: the cache folder '{cache}' cannot be used (")
            assert "running without caches" in notes[0]
    assert (tmp_path / "afile").read_text() == "not a folder"


def _read_only_mounts() -> bool:
    """Whether this process may bind-mount a folder read-only in a private mount namespace."""
    import shutil

    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp "
                            "&& ! touch /tmp/.bayescale-ro-probe"], capture_output=True, timeout=60)
    return probe.returncode == 0


@pytest.mark.skipif(not _read_only_mounts(), reason="needs unshare and a read-only bind mount")
def test_a_read_only_warm_cache_turns_the_caches_off_with_one_warning(tmp_path):
    """A cache folder mounted read-only (root cannot write there either): the fit works and says once
    that it runs without caches (with a warm read-only cache JAX printed its multi-line warning at
    every compile; the folder is refused up front now, warm or not, so an empty one shows the same)."""
    import shlex

    from bayescale.jaxsetup import host_fingerprint

    (tmp_path / "cache" / "jax" / host_fingerprint()).mkdir(parents=True)
    runs = tmp_path / "runs.csv"
    import pandas as pd
    from importlib import resources

    pd.read_csv(resources.files("bayescale.data") / "pilot_chinchilla.csv").to_csv(runs, index=False)
    cache = tmp_path / "cache"
    fit = [sys.executable, "-m", "bayescale", "fit", str(runs), "--law", "chinchilla", "--chains", "2",
           "--warmup", "60", "--draws", "60"]
    shell = (f"mount --bind {shlex.quote(str(cache))} {shlex.quote(str(cache))} && "
             f"mount -o remount,bind,ro {shlex.quote(str(cache))} && {shlex.join(fit)}")
    env = {"BAYESCALE_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin", "HOME": "/nonexistent-home"}
    proc = subprocess.run(["unshare", "-m", "sh", "-c", shell], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if "cannot be used" in ln]
    assert len(notes) == 1 and "is not writable: Read-only file system" in notes[0], proc.stderr
    assert "persistent compilation cache" not in proc.stderr
