"""The runs table: read, rename, derive missing inputs, validate.

Everything is checked here, before any array reaches JAX; each problem is a
:class:`~bayescale.errors.DataError` that names the column, the rows (0-based
positions in the table as given) and what was expected.  Suspicious but
usable tables (duplicated rows, inputs that look like the wrong units) give a
:class:`~bayescale.errors.DataWarning`.

CSV files are read strictly: UTF-8, comma-separated, ``.`` as the decimal
point, every row with as many fields as the header, and no column name twice.
A row with an extra field is what a decimal comma (``2,416``) or a trailing
comma looks like, and a lenient reader would shift the columns or drop a
digit silently; such files are refused with the rows and the likely cause.
Values must also be usable in float32, the sampler's precision (between
~1.2e-38 and ~3.4e38 in magnitude).
"""

from __future__ import annotations

import csv
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .cards import Law
from .errors import DataError, DataWarning, format_rows, plural
from .formula import FLOAT32_MAX, FLOAT32_TINY, Scope, evaluate
from .noise import link

__all__ = ["Runs", "parse_mapping", "prepare_grid", "prepare_runs", "read_table", "rename_columns"]

# kind -> smallest plausible value; below it the column probably has other units
_UNIT_FLOOR = {"parameters": (1e3, "parameter counts (e.g. 7e10, not 70 for 70B)"),
               "tokens": (1e3, "token counts (e.g. 1.4e12, not 1.4 for 1.4T)"),
               "flops": (1e6, "FLOPs (e.g. 5.88e23)")}


@dataclass(frozen=True)
class Runs:
    """A validated runs table: the law's inputs and the response, nothing else."""

    table: pd.DataFrame
    inputs: tuple[str, ...]
    response: str
    source: str = "DataFrame"
    derived: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.table)

    def input_arrays(self) -> dict:
        return {k: self.table[k].to_numpy(float) for k in self.inputs}

    def response_array(self) -> np.ndarray:
        return self.table[self.response].to_numpy(float)

    @property
    def hash(self) -> str:
        """SHA-256 (first 16 hex digits) of the used columns, for provenance."""
        data = self.table[list(self.inputs) + [self.response]].to_csv(index=False)
        return hashlib.sha256(data.encode()).hexdigest()[:16]


def parse_mapping(items) -> dict[str, str]:
    """``["loss=val_loss", "N=params"]`` -> ``{"loss": "val_loss", "N": "params"}``."""
    if items is None:
        return {}
    if isinstance(items, dict):
        return dict(items)
    out = {}
    for item in items:
        for part in str(item).split(","):
            if not part.strip():
                continue
            key, sep, col = part.partition("=")
            if not sep or not key.strip() or not col.strip():
                raise DataError(f"--map entry {part!r} must look like name=column (e.g. loss=val_loss)")
            out[key.strip()] = col.strip()
    return out


def read_table(data) -> tuple[pd.DataFrame, str]:
    """A DataFrame and a description of where it came from."""
    if isinstance(data, pd.DataFrame):
        return data.reset_index(drop=True).copy(), "DataFrame"
    if isinstance(data, (str, Path)):
        path = Path(data)
        if path.is_dir():
            raise DataError(f"runs file {str(path)!r} is a directory; give a CSV file")
        if not path.is_file():
            raise DataError(f"runs file {str(path)!r} does not exist")
        return _read_csv(path), str(path)
    raise DataError(f"runs must be a pandas DataFrame or a CSV path, got {type(data).__name__}")


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV file read strictly (see the module docstring)."""
    where = f"runs file {str(path)!r}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{where} cannot be read: {exc.strerror or exc}") from None
    if b"\x00" in data:
        raise DataError(f"{where} is not a text CSV file (it contains NUL bytes: binary, or UTF-16 text)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where} is not UTF-8 text (byte 0x{data[exc.start]:02x} at position {exc.start}); "
                        f"save it as UTF-8") from None
    try:
        rows = [(line, row) for line, row in enumerate(csv.reader(io.StringIO(text, newline="")), 1) if row]
    except csv.Error as exc:
        raise DataError(f"{where} is not a readable CSV: {exc}") from None
    if not rows:
        raise DataError(f"{where} is empty; expected a header line (e.g. N,D,loss) and one row per run")
    header = rows[0][1]
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        sep = next(s for s in ";\t|" if s in header[0])
        raise DataError(f"{where} looks {sep!r}-separated (header {header[0]!r}); bayescale reads "
                        f"comma-separated CSV with '.' as the decimal point: convert the file")
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise DataError(f"{where}: column names {dup} appear more than once in the header; each column "
                        f"needs its own name")
    ragged = [(i, line, len(row)) for i, (line, row) in enumerate(rows[1:]) if len(row) != len(header)]
    if ragged:
        rows_at = format_rows([i for i, _, _ in ragged])
        counts = sorted({n for _, _, n in ragged})
        trailing = all(n == len(header) + 1 and rows[i + 1][1][-1] == "" for i, _, n in ragged)
        if trailing:
            why = "every such row ends with a comma the header does not have (a trailing comma)"
        elif max(counts) > len(header):
            why = ("extra fields are what decimal commas look like (2,416 for 2.416): bayescale needs '.' as the "
                   "decimal point")
        else:
            why = "fields are missing"
        fields = " or ".join(map(str, counts)) + (" field" if counts == [1] else " fields")
        raise DataError(f"{where}: {rows_at} (first at line {ragged[0][1]}) {'has' if len(ragged) == 1 else 'have'} "
                        f"{fields} but the header has {len(header)}; {why}")
    try:
        return pd.read_csv(io.StringIO(text), index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"{where} is not a readable CSV: {exc}") from None


def _numeric(frame: pd.DataFrame, col: str) -> np.ndarray:
    """Column as float, with clear errors for missing, non-numeric or non-finite cells."""
    raw = frame[col]
    if raw.dtype == bool:
        raise DataError(f"column {col!r} is boolean; expected numbers")
    missing = np.flatnonzero(raw.isna().to_numpy())
    if len(missing):
        raise DataError(f"column {col!r} has {plural(len(missing), 'missing value')} at {format_rows(missing)}")
    values = pd.to_numeric(raw, errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy())
    if len(bad):
        example = raw.iloc[bad[0]]
        raise DataError(f"column {col!r} has {plural(len(bad), 'non-numeric value')} at {format_rows(bad)} "
                        f"(e.g. {example!r}); expected numbers")
    arr = values.to_numpy(float)
    nonfinite = np.flatnonzero(~np.isfinite(arr))
    if len(nonfinite):
        raise DataError(f"column {col!r} has {plural(len(nonfinite), 'non-finite value')} (inf) at "
                        f"{format_rows(nonfinite)}; expected finite numbers")
    return arr


def _float32(col: str, arr: np.ndarray) -> None:
    """Refuse values the sampler's float32 cannot hold (they would become inf or 0)."""
    size = np.abs(arr)
    bad = np.flatnonzero((size > FLOAT32_MAX) | ((size < FLOAT32_TINY) & (size > 0)))
    if len(bad):
        raise DataError(f"column {col!r} has {plural(len(bad), 'value')} outside float32's range "
                        f"({FLOAT32_TINY:.3g} to {FLOAT32_MAX:.3g} in magnitude) at {format_rows(bad)} "
                        f"(e.g. {arr[bad[0]]:g}); the sampler computes in float32: rescale the column's units")


def _positive(col: str, arr: np.ndarray, why: str) -> None:
    bad = np.flatnonzero(arr <= 0)
    if len(bad):
        raise DataError(f"column {col!r} has {plural(len(bad), 'non-positive value')} at {format_rows(bad)}; "
                        f"{col} must be > 0 ({why})")


def rename_columns(frame: pd.DataFrame, mapping) -> pd.DataFrame:
    """Apply ``--map name=column`` renaming, checking the columns exist and stay unique."""
    mapping = parse_mapping(mapping)
    if frame.columns.duplicated().any():
        dup = sorted(map(str, set(frame.columns[frame.columns.duplicated()])))
        raise DataError(f"columns {dup} appear more than once in the table; each column needs its own name")
    for name, col in mapping.items():
        if col not in frame.columns:
            raise DataError(f"--map {name}={col}: the table has no column {col!r}; "
                            f"columns are {list(map(str, frame.columns))}")
    frame = frame.rename(columns={col: name for name, col in mapping.items()})
    if frame.columns.duplicated().any():
        dup = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise DataError(f"columns {dup} appear more than once (after --map renaming)")
    return frame


def _frame(data, mapping) -> tuple[pd.DataFrame, str]:
    frame, source = read_table(data)
    frame = rename_columns(frame, mapping)
    if len(frame) == 0:
        raise DataError(f"the table {source!r} has no rows")
    return frame, source


def _inputs(frame: pd.DataFrame, law: Law, extra=()) -> tuple[dict, list]:
    """Validated input columns (derived where the card says how) plus ``extra`` columns."""
    needed, derived = set(extra), []
    for spec in law.inputs:
        if spec.name in frame.columns:
            continue
        if spec.derive is None:
            raise DataError(f"column {spec.name!r} ({spec.meaning}) is missing; columns are "
                            f"{list(map(str, frame.columns))}; rename one with --map {spec.name}=<column>")
        lacking = sorted(n for n in spec.derive.names if n not in frame.columns)
        if lacking:
            raise DataError(f"column {spec.name!r} ({spec.meaning}) is missing and cannot be derived as "
                            f"{spec.derive} because columns {lacking} are missing too")
        derived.append(spec.name)
        needed |= set(spec.derive.names)
    needed |= set(law.input_names) - set(derived)
    columns = {}
    for col in sorted(needed):
        columns[col] = _numeric(frame, col)
        if col not in extra:
            _positive(col, columns[col], "inputs enter the law through logs and powers")
        _float32(col, columns[col])
    for spec in law.inputs:
        if spec.name in derived:
            with np.errstate(all="ignore"):
                columns[spec.name] = np.asarray(evaluate(spec.derive.tree, Scope(columns, xp="numpy")), float)
            _numeric(pd.DataFrame({spec.name: columns[spec.name]}), spec.name)
            _positive(spec.name, columns[spec.name], f"derived as {spec.derive}")
            _float32(spec.name, columns[spec.name])
    return columns, derived


def prepare_grid(data, law: Law, mapping=None) -> pd.DataFrame:
    """Validated inputs (no response) at which to predict: a DataFrame or dict of columns."""
    if isinstance(data, dict):
        try:
            data = pd.DataFrame({k: np.atleast_1d(v) for k, v in data.items()})
        except ValueError as exc:
            raise DataError(f"grid columns must have equal lengths: {exc}") from None
    frame, _ = _frame(data, mapping)
    columns, _ = _inputs(frame, law)
    return pd.DataFrame({k: columns[k] for k in law.input_names})


def prepare_runs(data, law: Law, mapping=None, noise: str | None = None) -> Runs:
    """Validate ``data`` (DataFrame or CSV path) for ``law``; see the module docstring."""
    frame, source = _frame(data, mapping)
    response = law.response.name
    if response not in frame.columns:
        raise DataError(f"column {response!r} ({law.response.meaning}) is missing; columns are "
                        f"{list(map(str, frame.columns))}; rename one with --map {response}=<column>")
    columns, derived = _inputs(frame, law, extra=(response,))
    noise = noise or law.noise
    if link(noise) == "log" or law.response.scale:
        _positive(response, columns[response], f"the {noise} noise model works on log {response}")
    if link(noise) == "logit":
        y = columns[response]
        bad = np.flatnonzero((y <= 0) | (y >= 1))
        if len(bad):
            raise DataError(f"column {response!r} has {plural(len(bad), 'value')} outside (0, 1) at "
                            f"{format_rows(bad)}; the normal_logit noise model is for rates and accuracies "
                            f"strictly between 0 and 1")
    table = pd.DataFrame({k: columns[k] for k in list(law.input_names) + [response]})
    _check_shape(table, law)
    _warn_suspicious(table, law)
    return Runs(table=table, inputs=law.input_names, response=response, source=source,
                derived=tuple(derived))


def _check_shape(table: pd.DataFrame, law: Law) -> None:
    n_free = len(law.params) + 1
    if len(table) < n_free + 1:
        raise DataError(f"{len(table)} runs are too few for law {law.name!r}: it has {len(law.params)} "
                        f"parameters plus a noise scale, so at least {n_free + 1} runs are needed")
    direct = law.formula.names
    for spec in law.inputs:
        values = table[spec.name].to_numpy()
        if np.all(values == values[0]) and (spec.name in direct or len(law.inputs) == 1):
            raise DataError(f"column {spec.name!r} is constant (every row is {values[0]:g}); the law "
                            f"needs it to vary to learn how the {law.response.name} depends on it")


def _warn_suspicious(table: pd.DataFrame, law: Law) -> None:
    dup = table.duplicated(keep="first").to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        warnings.warn(f"{plural(len(rows), 'duplicated run')} (identical inputs and {law.response.name}) at "
                      f"{format_rows(rows)}; each counts as a separate observation", DataWarning,
                      stacklevel=3)
    for spec in law.inputs:
        floor = _UNIT_FLOOR.get(spec.kind)
        values = table[spec.name].to_numpy()
        if floor and values.min() < floor[0]:
            small = np.flatnonzero(values < floor[0])
            warnings.warn(f"column {spec.name!r} has {plural(len(small), 'value')} below {floor[0]:g} at "
                          f"{format_rows(small)} (smallest {values.min():g}); the card expects "
                          f"{floor[1]}: check the units", DataWarning, stacklevel=3)
