"""Public scaling-law datasets: downloaded from their original location, verified, cached, tidied.

    >>> import bayescale.datasets as ds
    >>> ds.fetch("chinchilla_epoch")        # once: download into the cache, verify its SHA-256
    >>> runs = ds.load("chinchilla_epoch")  # then: read from the cache (no network)

Nothing here touches the network unless asked: :func:`load` reads the cache
and raises a :class:`~bayescale.errors.DataError` that says how to download
when the file is missing; :func:`fetch` (or ``load(..., download=True)``, or
``bayescale datasets fetch NAME``) downloads.  Every download comes from a
URL pinned to a commit and is verified before it is kept: the SHA-256 of the
file's bytes, or, for a dataset whose numbers sit inside a script, the
SHA-256 of the extracted numbers.

The cache directory is, in order: the ``cache_dir`` argument,
``$BAYESCALE_DATA_DIR``, ``~/.cache/bayescale/datasets``.  A dataset lives in
``<cache>/<name>/<file>``, the layout of the project's shared ``datasets/``
folder, so that folder can serve as a cache as it is.

Datasets:

* ``chinchilla_epoch``: Epoch AI's reconstruction of the 245 final losses in
  Hoffmann et al. (2022), Figure 4 (Besiroglu et al. 2024), tidied to
  ``N, D = C / (6 N), C, loss, tokens_per_param, epoch_outlier,
  figure_color_hex``; ``epoch_outlier`` marks the 5 highest losses Epoch's
  headline fit excludes.
* ``bnsl_4digit_addition``: the 17-point 4-digit-addition learning curve of
  Caballero et al. (2022), ``train_set_size, test_cross_entropy, split``
  (``fit`` for the first 14 points, ``extrapolate`` for the last 3, the
  paper's split).
"""

from __future__ import annotations

import ast
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import BayescaleError, DataError

__all__ = ["DATASETS", "Dataset", "cache_dir", "fetch", "load", "path"]


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    url: str
    filename: str
    sha256: str
    verify: str           # "bytes": SHA-256 of the file; "numbers": SHA-256 of the extracted numbers
    citation: str
    license: str
    tidy: object          # callable(path) -> DataFrame


def _tidy_chinchilla(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path)
    need = {"Model Size", "Training FLOP", "loss", "hex_color"}
    if not need <= set(raw.columns):
        raise DataError(f"{path}: expected columns {sorted(need)}, found {list(raw.columns)}")
    N = raw["Model Size"].to_numpy(float)
    C = raw["Training FLOP"].to_numpy(float)
    loss = raw["loss"].to_numpy(float)
    D = C / (6 * N)
    fifth = np.sort(loss)[-5]
    return pd.DataFrame({"N": N, "D": D, "C": C, "loss": loss, "tokens_per_param": D / N,
                         "epoch_outlier": (loss >= fifth).astype(int), "figure_color_hex": raw["hex_color"]})


def _script_arrays(path: Path) -> dict:
    """The module-level ``name = np.array([...])`` literals of a Python script, parsed (never run)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not the expected Python script: {exc}") from None
    out = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        value = node.value
        if isinstance(value, ast.Call) and value.args and isinstance(value.args[0], ast.List):
            try:
                out[node.targets[0].id] = [float(v) for v in ast.literal_eval(value.args[0])]
            except (ValueError, TypeError):
                continue
    return out


def _tidy_bnsl(path: Path) -> pd.DataFrame:
    arrays = _script_arrays(path)
    if "x" not in arrays or "y" not in arrays or len(arrays["x"]) != len(arrays["y"]):
        raise DataError(f"{path}: no x and y arrays of equal length found in the script")
    x = np.asarray(arrays["x"])
    split = np.where(np.arange(len(x)) < 14, "fit", "extrapolate")   # split_point = 14 in the script
    return pd.DataFrame({"train_set_size": x.astype(int), "test_cross_entropy": arrays["y"], "split": split})


def _numbers_hash(frame: pd.DataFrame) -> str:
    text = ";".join(",".join(repr(float(v)) for v in frame[c]) for c in frame.columns
                    if pd.api.types.is_numeric_dtype(frame[c]))
    return hashlib.sha256(text.encode()).hexdigest()


DATASETS = {
    "chinchilla_epoch": Dataset(
        name="chinchilla_epoch",
        title="Chinchilla (Hoffmann et al. 2022) final losses, as reconstructed by Epoch AI (245 runs)",
        url="https://raw.githubusercontent.com/epoch-research/analyzing-chinchilla/"
            "92258837425e1b5f2851d624287f0120583a3d0e/data/svg_extracted_data.csv",
        filename="svg_extracted_data.csv",
        sha256="193478df4e90f040016431996c45682659306840ecdadf83cfb9cd5ca0aa1b30",
        verify="bytes",
        citation="T. Besiroglu, E. Erdil, M. Barnett, J. You, Chinchilla Scaling: A replication attempt, "
                 "arXiv:2404.10102 (2024); J. Hoffmann et al., arXiv:2203.15556 (2022)",
        license="no license stated by the repository; measurements read off a published figure: cite both papers",
        tidy=_tidy_chinchilla),
    "bnsl_4digit_addition": Dataset(
        name="bnsl_4digit_addition",
        title="4-digit addition learning curve from Broken Neural Scaling Laws (17 points)",
        url="https://raw.githubusercontent.com/ethancaballero/broken_neural_scaling_laws/"
            "ffa608f7ca7910b6f6bcbd39915491353ad5d600/"
            "fit_bnsl_and_extrapolate__4_digit_addition__dataset_size_x-axis.py",
        filename="fit_bnsl_and_extrapolate__4_digit_addition__dataset_size_x-axis.py",
        sha256="e8212bd131c8c8cc6d4a8f4703411b483a6a7e999d15e99e3671b8b3a31b0ce8",
        verify="numbers",
        citation="E. Caballero, K. Gupta, I. Rish, D. Krueger, Broken Neural Scaling Laws, arXiv:2210.14891 "
                 "(ICLR 2023)",
        license="no license stated by the repository; 17 numbers from a published figure: cite the paper",
        tidy=_tidy_bnsl),
}


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise BayescaleError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def cache_dir(cache_dir=None) -> Path:
    """The cache directory: ``cache_dir``, else ``$BAYESCALE_DATA_DIR``, else ``~/.cache/bayescale/datasets``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("BAYESCALE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "bayescale" / "datasets"


def path(name: str, cache_dir=None) -> Path:
    """Where the raw file of dataset ``name`` is (or would be) cached."""
    ds = _dataset(name)
    return globals()["cache_dir"](cache_dir) / ds.name / ds.filename


def _digest(ds: Dataset, file: Path) -> str:
    if ds.verify == "bytes":
        return hashlib.sha256(file.read_bytes()).hexdigest()
    return _numbers_hash(ds.tidy(file))


def _verify(ds: Dataset, file: Path) -> None:
    got = _digest(ds, file)
    if got != ds.sha256:
        what = "bytes" if ds.verify == "bytes" else "extracted numbers"
        raise DataError(f"dataset {ds.name!r}: {file} does not match the published file (SHA-256 of its {what} "
                        f"is {got}, expected {ds.sha256}); delete it and fetch again "
                        f"(bayescale datasets fetch {ds.name} --force)")


def _download(url: str, timeout: float) -> bytes:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "bayescale-datasets"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"could not download {url}: {exc}") from None


def fetch(name: str, cache_dir=None, force: bool = False, timeout: float = 60.0) -> Path:
    """Download dataset ``name`` from its original location into the cache, verify it, return its path.

    A verified cached copy is kept as it is unless ``force``.  The file is
    written under a temporary name and moved into place only once verified.
    """
    ds = _dataset(name)
    target = path(name, cache_dir)
    if target.is_file() and not force:
        _verify(ds, target)
        return target
    data = _download(ds.url, timeout)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{ds.filename}.")
    except OSError as exc:
        raise DataError(f"cannot write dataset {name!r} into the cache folder {str(target.parent)!r}: "
                        f"{exc.strerror or exc}; point cache_dir / $BAYESCALE_DATA_DIR at a writable folder") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        _verify(ds, Path(tmp))
        os.replace(tmp, target)
    except OSError as exc:
        raise DataError(f"cannot write dataset {name!r} into {str(target)!r}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load(name: str, cache_dir=None, download: bool = False) -> pd.DataFrame:
    """Dataset ``name`` as a tidy DataFrame, read from the cache (see the module docstring).

    With ``download=True`` a missing file is fetched first; otherwise a
    missing file is a :class:`~bayescale.errors.DataError` that says how to
    fetch it.  The cached file is verified on every load.
    """
    ds = _dataset(name)
    file = path(name, cache_dir)
    if not file.is_file():
        if not download:
            raise DataError(f"dataset {name!r} is not in the cache ({file} is missing); download it once with "
                            f"bayescale.datasets.load({name!r}, download=True) or `bayescale datasets fetch "
                            f"{name}` (from {ds.url}), or point cache_dir / $BAYESCALE_DATA_DIR at a folder "
                            f"holding {ds.name}/{ds.filename}")
        file = fetch(name, cache_dir)
    _verify(ds, file)
    return ds.tidy(file)
