"""The fit file: a faithful round trip, refused with one FitFileError when damaged, edited or crafted,
written atomically (kill -9 at any moment leaves nothing or a complete file at the final path).

One short fit (2 chains x 60 draws) serves the module; damaged copies are made from its file with
fixed seeds, so every run tests the same copies.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import bayescale
from bayescale import FitFileError
from bayescale.data import pilot_chinchilla
from bayescale.storage import fitfile
from bayescale.storage.atomic import stale_temporaries

h5py = pytest.importorskip("h5py")


@pytest.fixture(scope="module")
def fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
        return bayescale.fit(pilot_chinchilla(), law="chinchilla", chains=2, warmup=60, draws=60, seed=2, retry=False,
                             progress=False)


@pytest.fixture(scope="module")
def saved(fit, tmp_path_factory):
    path = tmp_path_factory.mktemp("fitfile") / "fit.nc"
    fit.save(path)
    return path


def same_fit(a, b) -> bool:
    """The same draws, statistics, runs, card, settings and log-likelihood."""
    return (all(np.array_equal(a.samples.posterior[k], b.samples.posterior[k]) for k in a.var_names)
            and all(np.array_equal(a.samples.sample_stats[k], b.samples.sample_stats[k])
                    for k in a.samples.sample_stats)
            and a.runs.table.equals(b.runs.table) and a.law.text == b.law.text and a.settings == b.settings
            and a.refs == b.refs and a.noise == b.noise
            and np.allclose(a.log_likelihood, b.log_likelihood, rtol=1e-6, atol=1e-5))


def test_round_trip(fit, saved):
    back = bayescale.load_fit(saved)
    assert same_fit(fit, back)
    assert back.diagnostics == fit.diagnostics and back.runs.source == fit.runs.source
    assert back.samples.log_likelihood.dtype == np.float32          # stored compactly


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_arviz_reads_the_file(fit, saved):
    az = pytest.importorskip("arviz")
    idata = az.from_netcdf(str(saved))
    assert set(idata.groups()) == {"posterior", "log_likelihood", "sample_stats", "observed_data", "constant_data"}
    # float32 storage moves elpd_loo by rounding only (|ll| ~ 1e-7 relative)
    assert az.loo(idata).elpd_loo == pytest.approx(az.loo(fit.idata).elpd_loo, abs=1e-3)


def test_a_large_fit_stores_no_log_likelihood_and_computes_it_on_demand(fit, saved, tmp_path, monkeypatch):
    """Above STORED_LOG_LIKELIHOOD_MAX values the pointwise log-likelihood (303 MB of a 10^4-run
    file in float64) is left out and recomputed from the draws when needed: the same numbers."""
    monkeypatch.setattr(fitfile, "STORED_LOG_LIKELIHOOD_MAX", 100)
    fit.save(tmp_path / "big.nc")
    with h5py.File(io.BytesIO((tmp_path / "big.nc").read_bytes()[:-fitfile._TRAILER]), "r") as f:
        assert "log_likelihood" not in f
        assert json.loads(f["posterior"].attrs["bayescale_meta"])["log_likelihood"] == "on demand"
    back = bayescale.load_fit(tmp_path / "big.nc")
    assert back.samples.log_likelihood is None
    assert back.log_likelihood.dtype == np.float32          # this large, it is kept in float32
    np.testing.assert_allclose(back.log_likelihood, fit.log_likelihood, rtol=1e-6, atol=1e-6)
    assert (tmp_path / "big.nc").stat().st_size < saved.stat().st_size


# --------------------------------------------------------------------------- damaged files


def _damaged_copies(data: bytes, count: int, seed: int):
    """(description, bytes): flipped bits, overwritten or deleted ranges, truncations, garbage appended."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        b = bytearray(data)
        kind = i % 6
        if kind in (0, 1):
            for _ in range(1 + kind * 3):
                pos = int(rng.integers(len(b)))
                b[pos] ^= 1 << int(rng.integers(8))
            what = f"{1 + kind * 3} bit flips"
        elif kind == 2:
            pos = int(rng.integers(len(b) - 64))
            fill = b"\xff" if not any(b[pos:pos + 64]) else b"\x00"     # HDF5 files hold long runs of zeros
            b[pos:pos + 64] = fill * 64
            what = f"64 bytes {fill!r} at {pos}"
        elif kind == 3:
            cut = int(rng.integers(1, len(b)))
            b = b[:cut]
            what = f"truncated to {cut} bytes"
        elif kind == 4:
            pos = int(rng.integers(len(b)))
            del b[pos:pos + int(rng.integers(1, 16))]
            what = f"bytes deleted at {pos}"
        else:
            b += bytes(rng.integers(0, 256, int(rng.integers(1, 100)), dtype=np.uint8))
            what = "garbage appended"
        if bytes(b) != data:                # zeroing bytes that were zero already is no damage
            yield what, bytes(b)


def test_every_damaged_copy_is_one_fit_file_error(saved, tmp_path):
    """300 damaged copies (fixed seed): each is refused by the checksum before HDF5 reads it."""
    data = saved.read_bytes()
    path = tmp_path / "damaged.nc"
    copies = list(_damaged_copies(data, 300, seed=10))
    assert len(copies) > 295
    for what, copy in copies:
        path.write_bytes(copy)
        with pytest.raises(FitFileError, match=r"fit file '.*damaged\.nc' cannot be used: it (is damaged|has no "
                                               r"bayescale checksum|is not a bayescale fit file)"):
            bayescale.load_fit(path)


def test_summary_of_a_damaged_file_is_one_error_line(saved, tmp_path):
    import contextlib

    from bayescale.cli import main

    for i, (what, copy) in enumerate(_damaged_copies(saved.read_bytes(), 12, seed=11)):
        path = tmp_path / f"d{i}.nc"
        path.write_bytes(copy)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["summary", str(path), "--json"])
        assert code == 2 and json.loads(out.getvalue())["error"]["type"] == "FitFileError", (what, err.getvalue())
        assert len(err.getvalue().strip().splitlines()) == 1


def _sign(content: bytes) -> bytes:
    """A valid checksum over edited content: what a deliberate tamperer would write."""
    return content + fitfile._TAG + hashlib.sha256(content).hexdigest().encode() + b"\n"


def test_damaged_content_behind_a_valid_checksum_is_one_error_or_a_valid_fit(fit, saved, tmp_path):
    """200 copies with damaged bytes *re-signed*, so that HDF5 and the field checks see them: each is
    a FitFileError or a fit that passes every check and can be summarised (a zeroed energy, say, is
    a valid value: only the checksum, which a tamperer can recompute, tells it from the original).
    Never another exception."""
    content = saved.read_bytes()[:-fitfile._TRAILER]
    path = tmp_path / "resigned.nc"
    refused = loaded = 0
    for what, copy in _damaged_copies(content, 200, seed=12):
        if what == "garbage appended":
            continue
        path.write_bytes(_sign(copy))
        try:
            back = bayescale.load_fit(path)
        except FitFileError:
            refused += 1
            continue
        loaded += 1
        assert np.all(back.draws("sigma") > 0) and np.all(np.isfinite(back.summary()["mean"])), what
        assert back.law.hash == fit.law.hash and back.runs.hash == fit.runs.hash, what
    assert refused > 100, (refused, loaded)


def _edited(saved: Path, tmp_path: Path, edit) -> Path:
    buf = io.BytesIO(saved.read_bytes()[:-fitfile._TRAILER])
    with h5py.File(buf, "r+") as f:
        edit(f)
    path = tmp_path / "edited.nc"
    path.write_bytes(_sign(buf.getvalue()))
    return path


def _meta(change):
    def edit(f):
        meta = json.loads(f["posterior"].attrs["bayescale_meta"])
        change(meta)
        f["posterior"].attrs["bayescale_meta"] = json.dumps(meta)
    return edit


def _replace(group, name, **kwargs):
    def edit(f):
        del f[group][name]
        f[group].create_dataset(name, **kwargs)
    return edit


def _set(group, name, index, value):
    def edit(f):
        f[group][name][index] = value
    return edit


def _card(old, new):
    def edit(f):
        f["posterior"].attrs["bayescale_card"] = f["posterior"].attrs["bayescale_card"].replace(old, new)
    return edit


EDITS = [
    ("the card's prior edited", _card("Uniform(0, 1)", "Uniform(0, 2)"),
     r"its law card's hash \w+ is not the stored card hash \w+ \(the card was edited after the fit\)"),
    ("the card's formula edited", _card("E + A / N**alpha", "E + 2 * A / N**alpha"), r"is not the stored card hash"),
    ("an escape sequence in the card", _card('title = "', 'title = "\x1b[2J'),
     r"its law card does not compile \(.*control character U\+001B"),
    ("an escape sequence in the metadata", _meta(lambda m: m.__setitem__("runs_source", "\x1b[31mred")),
     r"its metadata holds control characters"),
    ("sigma = -1", _set("posterior", "sigma", (0, 0), -1.0), r"sigma has draws that are not finite and positive"),
    ("alpha = 2 (prior Uniform(0, 1))", _set("posterior", "alpha", (0, 3), 2.0),
     r"parameter 'alpha' has draws outside its prior's support: alpha must be in \[0, 1\]"),
    ("E = NaN", _set("posterior", "E", (1, 0), np.nan), r"parameter 'E' has non-finite draws"),
    ("L_c negative (a scaled LogNormal)", _set("posterior", "L_c", (0, 0), -5.0),
     r"parameter 'L_c' has draws outside its prior's support: L_c / \(loss_ref\) must be in \[0, inf\]"),
    ("A edited (derived)", _set("posterior", "A", (0, 0), 5.0),
     r"parameter 'A' does not equal its derivation A = \(1 - f_E\)"),
    ("a run's N edited", _set("constant_data", "N", 0, 5e9), r"its runs do not hash to the stored runs hash"),
    ("a loss edited", _set("observed_data", "loss", 3, 2.5), r"its runs do not hash to the stored runs hash"),
    ("a negative N", _set("constant_data", "N", 0, -5.0), r"its runs are not valid \(column 'N' has 1 non-positive"),
    ("a reference point edited", _meta(lambda m: m["refs"].__setitem__("N_ref", 1e9)),
     r"its reference points .* are not those of its runs"),
    ("metadata not JSON", lambda f: f["posterior"].attrs.__setitem__("bayescale_meta", "{"),
     r"its metadata is not valid JSON"),
    ("metadata 100000 levels deep", lambda f: f["posterior"].attrs.__setitem__("bayescale_meta",
                                                                              "[" * 100000 + "]" * 100000),
     r"its metadata is not valid JSON"),
    ("metadata a list", lambda f: f["posterior"].attrs.__setitem__("bayescale_meta", "[]"),
     r"its metadata is not a JSON object"),
    ("metadata removed", lambda f: f["posterior"].attrs.__delitem__("bayescale_meta"),
     r"its posterior group has no bayescale metadata"),
    ("chains a string", _meta(lambda m: m["settings"].__setitem__("chains", "2")),
     r"setting 'chains' has a wrong type \(str\)"),
    ("chains disagree with the draws", _meta(lambda m: m["settings"].__setitem__("chains", 3)),
     r"parameter 'L_c' has shape \(2, 60\), expected \(3, 60\)"),
    ("settings a list", _meta(lambda m: m.__setitem__("settings", [])),
     r"metadata field 'settings' has a wrong type \(list\)"),
    ("max_tree_depth a bool", _meta(lambda m: m["settings"].__setitem__("max_tree_depth", True)),
     r"setting 'max_tree_depth' has a wrong type"),
    ("an unknown noise model", _meta(lambda m: m.__setitem__("noise", "gaussian")),
     r"its noise model 'gaussian' is not one of"),
    ("inputs disagree with the card", _meta(lambda m: m.__setitem__("inputs", ["N"])),
     r"its inputs and response do not match its law card"),
    ("a timing infinite", _meta(lambda m: m["timings"].__setitem__("total_s", float("inf"))),
     r"timing 'total_s' is not a finite number"),
    ("the law's name changed", _meta(lambda m: m.__setitem__("law", "kaplan")),
     r"its card is law 'chinchilla' but the metadata says 'kaplan'"),
    ("a group removed", lambda f: f.__delitem__("sample_stats"), r"group 'sample_stats' is missing"),
    ("tree depth beyond the maximum", _set("sample_stats", "tree_depth", (0, 0), 99),
     r"sampler statistic 'tree_depth' is outside 0\.\.10"),
    ("an acceptance rate of 7", _set("sample_stats", "acceptance_rate", (0, 0), 7.0),
     r"'acceptance_rate' is outside \[0, 1\]"),
    ("a soft link", lambda f: f["posterior"].__setitem__("extra", h5py.SoftLink("/posterior/E")),
     r"/posterior/extra is not a hard link \(SoftLink\)"),
    ("an external link", lambda f: f["posterior"].__setitem__("extra", h5py.ExternalLink("/etc/passwd", "/x")),
     r"/posterior/extra is not a hard link \(ExternalLink\)"),
    ("HDF5 external storage (another file's bytes as alpha)",
     _replace("posterior", "alpha", shape=(2, 60), dtype="f8", external=[("/etc/hostname", 0, 960)]),
     r"dataset /posterior/alpha uses external storage"),
    ("a parameter stored as strings", _replace("posterior", "E", data=np.array([["x"] * 60] * 2, dtype=object),
                                               dtype=h5py.string_dtype()),
     r"parameter 'E' has type object, expected numbers"),
    ("a log-likelihood of the wrong shape", _replace("log_likelihood", "loss", data=np.zeros((2, 60, 3))),
     r"log-likelihood 'loss' has shape \(2, 60, 3\), expected \(2, 60, 40\)"),
    ("a log-likelihood the metadata disowns", _meta(lambda m: m.__setitem__("log_likelihood", "on demand")),
     r"holds a log-likelihood its metadata says is computed on demand"),
    ("a NaN log-likelihood", _set("log_likelihood", "loss", (0, 0, 0), np.nan),
     r"its pointwise log-likelihood holds NaN or \+inf"),
]


@pytest.mark.parametrize("case, edit, pattern", EDITS, ids=[e[0] for e in EDITS])
def test_an_edited_or_crafted_file_is_refused(saved, tmp_path, case, edit, pattern):
    """Edits behind a valid checksum (a tamperer's): every field is checked."""
    path = _edited(saved, tmp_path, edit)
    with pytest.raises(FitFileError, match=r"fit file '.*edited\.nc' cannot be used: (.* )?" + pattern):
        bayescale.load_fit(path)


def test_a_file_without_the_checksum_is_refused(saved, tmp_path):
    path = tmp_path / "old.nc"
    path.write_bytes(saved.read_bytes()[:-fitfile._TRAILER])
    with pytest.raises(FitFileError, match=r"it has no bayescale checksum: it was not written by this version"):
        bayescale.load_fit(path)


# --------------------------------------------------------------------------- writing


def test_save_refuses_to_overwrite_without_force(fit, tmp_path):
    path = tmp_path / "fit.nc"
    fit.save(path)
    with pytest.raises(FitFileError, match=r"exists; pass force=True"):
        fit.save(path)
    (tmp_path / "dangling.nc").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FitFileError, match=r"exists; pass force=True"):
        fit.save(tmp_path / "dangling.nc")
    fit.save(path, force=True)
    assert same_fit(fit, bayescale.load_fit(path))


def test_save_never_writes_through_a_planted_name(fit, tmp_path):
    """The old fixed name X.nc.tmp followed a symlink (overwriting its target) and crashed if it was a
    directory; the temporary is now unique and created exclusively, and a symlink at X.nc itself is
    replaced, not written through."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "fit.nc.tmp").symlink_to(victim)
    (tmp_path / "other.nc.tmp").mkdir()
    fit.save(tmp_path / "fit.nc")
    fit.save(tmp_path / "other.nc")
    (tmp_path / "link.nc").symlink_to(victim)
    fit.save(tmp_path / "link.nc", force=True)
    assert victim.read_text() == "precious"
    assert not (tmp_path / "link.nc").is_symlink()
    for name in ("fit.nc", "other.nc", "link.nc"):
        assert same_fit(fit, bayescale.load_fit(tmp_path / name))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.nc", "fit.nc.tmp", "link.nc", "other.nc",
                                                          "other.nc.tmp", "victim.txt"]


def test_a_killed_writers_temporaries_are_removed_by_the_next_write(fit, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    orphan = tmp_path / f".fit.nc.{dead}-abc123.tmp"
    orphan.write_bytes(b"half a file")
    live = tmp_path / f".other.nc.{os.getppid()}-abc123.tmp"        # a running process's: kept
    live.write_bytes(b"being written")
    assert stale_temporaries(tmp_path) == [orphan]
    fit.save(tmp_path / "fit.nc")
    assert not orphan.exists() and live.exists()


def test_a_failed_write_leaves_nothing(fit, tmp_path, monkeypatch):
    import bayescale.storage.atomic as atomic

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(FitFileError, match=r"cannot write '.*fit\.nc': No space left on device"):
        fit.save(tmp_path / "fit.nc")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- kill -9


CHILD = r"""
import os, sys, time
import bayescale.storage.atomic as atomic
from bayescale.cli import main
if sys.argv[1] == "stall-in-write":          # stop inside the write: temporary complete, not yet renamed
    real = os.fsync
    target = "." + os.path.basename(sys.argv[sys.argv.index("--out") + 1]) + "."
    def stall(fd):
        real(fd)
        # only the fit file's temporary: a cold program cache writes its own files atomically first
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(target):
            print("writing", flush=True)
            time.sleep(120)
    atomic.os.fsync = stall
main(sys.argv[2:])
"""


def _fit_argv(runs: Path, out: Path, *extra) -> list:
    return ["fit", str(runs), "--law", "chinchilla", "--chains", "2", "--warmup", "60", "--draws", "60",
            "--seed", "2", "--no-progress", "--out", str(out), *extra]


def _complete_or_absent(out: Path) -> str:
    if not out.exists():
        return "absent"
    bayescale.load_fit(out)           # a FitFileError here fails the test
    return "complete"


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("kill") / "runs.csv"
    pilot_chinchilla().to_csv(path, index=False)
    return path


def test_kill_9_mid_write_leaves_the_old_file_or_nothing(fit, runs_csv, tmp_path):
    """The child stops after its temporary is written and flushed, before the rename; kill -9 there."""
    for existing in (False, True):
        out = tmp_path / f"fit{int(existing)}.nc"
        if existing:
            fit.save(out)
            before = out.read_bytes()
        proc = subprocess.Popen([sys.executable, "-c", CHILD, "stall-in-write", *_fit_argv(runs_csv, out, "--force")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "writing", proc.stderr.read()[-2000:]
            assert len(stale_temporaries(tmp_path)) == 0            # its writer is alive
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        if existing:
            assert out.read_bytes() == before
        else:
            assert not out.exists()
        assert len(stale_temporaries(tmp_path)) == 1                # the orphan, now of a dead process
        fit.save(tmp_path / "another.nc", force=True)               # the next write in the folder sweeps it
        assert stale_temporaries(tmp_path) == []
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_kill_9_at_several_moments_leaves_nothing_or_a_complete_file(runs_csv, tmp_path):
    """``bayescale fit --out`` killed 0.5 s to ~6 s after starting (importing, compiling, sampling,
    writing) and once left to finish: the final path holds nothing or a fit that loads."""
    outcomes = []
    for i, delay in enumerate((0.5, 1.5, 3.0, 4.5, 6.0, None)):
        out = tmp_path / f"fit{i}.nc"
        proc = subprocess.Popen([sys.executable, "-c", CHILD, "run", *_fit_argv(runs_csv, out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if delay is None:
            assert proc.wait(600) == 0, proc.stderr.read()[-2000:]
        else:
            time.sleep(delay)
            proc.kill()
            proc.wait(30)
        outcomes.append(_complete_or_absent(out))
    assert outcomes[-1] == "complete" and outcomes[0] == "absent"
