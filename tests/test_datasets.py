"""bayescale.datasets: cache resolution, verification, tidying, explicit download only.

Never the network: the cache is the shared datasets folder, or a temporary
folder holding a copy of its raw files; downloads are replaced by a function
that returns those bytes (or fails the test if called).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bayescale import datasets
from bayescale.cli import main
from bayescale.errors import BayescaleError, DataError

RAW = ("chinchilla_epoch", "svg_extracted_data.csv")


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any download attempt fails the test, and the default cache is a fresh folder."""
    def refuse(url, timeout):
        raise AssertionError(f"tests must not use the network (tried {url})")

    monkeypatch.setattr(datasets, "_download", refuse)
    monkeypatch.delenv("BAYESCALE_DATA_DIR", raising=False)


@pytest.fixture
def raw_csv(shared_datasets):
    return shared_datasets.joinpath(*RAW)


@pytest.fixture
def cache(tmp_path, raw_csv):
    """A temporary cache holding a copy of Epoch's raw file (never inside the repository)."""
    root = tmp_path / "cache"
    (root / RAW[0]).mkdir(parents=True)
    shutil.copyfile(raw_csv, root.joinpath(*RAW))
    return root


def _bnsl_script(frame: pd.DataFrame, change: float = 0.0) -> str:
    x = ", ".join(str(int(v)) for v in frame["train_set_size"])
    y = ", ".join(repr(float(v)) for v in frame["test_cross_entropy"] + change)
    return f"import numpy as np\n\nx = np.array([{x}])\n\ny = np.array([{y}])\n\nsplit_point = 14\n"


def test_load_from_the_shared_folder_matches_its_tidy_file(shared_datasets):
    frame = datasets.load("chinchilla_epoch", cache_dir=shared_datasets)
    tidy = pd.read_csv(shared_datasets / "chinchilla_epoch" / "chinchilla_epoch_tidy.csv")
    assert list(frame.columns) == list(tidy.columns)
    for col in ("N", "D", "C", "loss", "tokens_per_param"):
        np.testing.assert_allclose(frame[col], tidy[col], rtol=1e-9)
    assert (frame["epoch_outlier"] == tidy["epoch_outlier"]).all() and frame["epoch_outlier"].sum() == 5
    assert (frame["figure_color_hex"] == tidy["figure_color_hex"]).all()
    np.testing.assert_allclose(frame["D"], frame["C"] / (6 * frame["N"]), rtol=1e-12)


def test_cache_dir_argument_env_and_default(cache, monkeypatch, tmp_path):
    assert len(datasets.load("chinchilla_epoch", cache_dir=cache)) == 245
    monkeypatch.setenv("BAYESCALE_DATA_DIR", str(cache))
    assert datasets.cache_dir() == cache
    assert datasets.path("chinchilla_epoch") == cache.joinpath(*RAW)
    assert len(datasets.load("chinchilla_epoch")) == 245
    monkeypatch.delenv("BAYESCALE_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.cache_dir() == tmp_path / "home" / ".cache" / "bayescale" / "datasets"


def test_missing_file_says_how_to_download_and_does_not(tmp_path):
    with pytest.raises(DataError) as info:
        datasets.load("chinchilla_epoch", cache_dir=tmp_path)
    message = str(info.value)
    assert "download=True" in message and "bayescale datasets fetch chinchilla_epoch" in message
    assert "raw.githubusercontent.com/epoch-research/analyzing-chinchilla/92258837" in message


def test_a_modified_file_is_rejected(cache):
    file = cache.joinpath(*RAW)
    data = bytearray(file.read_bytes())
    data[-3] = ord("7") if data[-3] != ord("7") else ord("8")
    file.write_bytes(bytes(data))
    with pytest.raises(DataError, match="SHA-256"):
        datasets.load("chinchilla_epoch", cache_dir=cache)


def test_fetch_verifies_before_keeping(monkeypatch, raw_csv, tmp_path):
    good = raw_csv.read_bytes()
    calls = []

    def fake(url, timeout):
        calls.append(url)
        return fake.payload

    monkeypatch.setattr(datasets, "_download", fake)
    fake.payload = good[:-10]                                  # truncated download
    with pytest.raises(DataError, match="does not match"):
        datasets.fetch("chinchilla_epoch", cache_dir=tmp_path)
    assert not datasets.path("chinchilla_epoch", tmp_path).exists()
    assert not list((tmp_path / "chinchilla_epoch").iterdir())   # no temporary file left behind
    fake.payload = good
    where = datasets.fetch("chinchilla_epoch", cache_dir=tmp_path)
    assert where.read_bytes() == good and calls[-1] == datasets.DATASETS["chinchilla_epoch"].url
    datasets.fetch("chinchilla_epoch", cache_dir=tmp_path)      # a verified copy: no second download
    assert len(calls) == 2
    assert len(datasets.load("chinchilla_epoch", cache_dir=tmp_path, download=True)) == 245
    assert len(calls) == 2


def test_bnsl_numbers_are_parsed_from_the_script_never_run(shared_datasets, tmp_path):
    shared = pd.read_csv(shared_datasets / "bnsl_4digit_addition" / "bnsl_4digit_addition.csv")
    ds = datasets.DATASETS["bnsl_4digit_addition"]
    script = tmp_path / ds.name / ds.filename
    script.parent.mkdir()
    script.write_text(_bnsl_script(shared) + "raise SystemExit('this script must not be executed')\n")
    frame = datasets.load("bnsl_4digit_addition", cache_dir=tmp_path)
    pd.testing.assert_frame_equal(frame, shared, check_dtype=False)
    assert (frame["split"] == "fit").sum() == 14
    script.write_text(_bnsl_script(shared, change=1e-6))
    with pytest.raises(DataError, match="extracted numbers"):
        datasets.load("bnsl_4digit_addition", cache_dir=tmp_path)


def test_unknown_dataset():
    with pytest.raises(BayescaleError, match="available: bnsl_4digit_addition, chinchilla_epoch"):
        datasets.load("chinchilla")


def test_cli_list_path_fetch(cache, monkeypatch, raw_csv, tmp_path):
    code, out, err = run("datasets", "list", "--cache-dir", cache, "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)["datasets"]}
    assert rows["chinchilla_epoch"]["cached"] is True and rows["bnsl_4digit_addition"]["cached"] is False
    code, out, err = run("datasets", "path", "chinchilla_epoch", "--cache-dir", cache)
    assert code == 0 and out.strip() == str(cache.joinpath(*RAW))
    code, out, err = run("datasets", "fetch", "chinchilla_epoch", "--cache-dir", cache)   # cached: no network
    assert code == 0 and "verified copy" in out
    monkeypatch.setattr(datasets, "_download", lambda url, timeout: raw_csv.read_bytes())
    code, out, err = run("datasets", "fetch", "chinchilla_epoch", "--cache-dir", tmp_path / "new", "--json")
    assert code == 0 and json.loads(out)["verified"] is True
    code, out, err = run("datasets", "fetch", "nope")
    assert code == 2 and err.startswith("error: unknown dataset 'nope'")
