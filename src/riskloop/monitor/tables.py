"""Tabular data for monitoring: read CSV / Parquet / NPZ files and turn arrays into frames.

Every monitor component takes a :class:`pandas.DataFrame`, a 2-D array (columns ``x0``,
``x1``, ...), a higher-dimensional array (flattened per row, columns ``X[0]``, ``X[1]``, ...)
or a mapping of column name to 1-D array. NPZ archives are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import MSG_PATH_MISSING, InputError

TableLike = pd.DataFrame | np.ndarray | Mapping[str, Any]


def array_columns(name: str, arr: np.ndarray) -> dict[str, np.ndarray]:
    """Columns of one array: 1-D keeps its name, N-D is flattened per row to ``name[i]``."""
    if arr.ndim == 0:
        raise InputError(f"array '{name}' is a scalar: monitoring needs one row per sample")
    if arr.ndim == 1:
        return {name: arr}
    flat = arr.reshape(arr.shape[0], -1)
    return {f"{name}[{i}]": flat[:, i] for i in range(flat.shape[1])}


def as_frame(data: TableLike, *, columns: list[str] | None = None) -> pd.DataFrame:
    """A DataFrame view of ``data`` (no copy for a DataFrame)."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, np.ndarray):
        if data.ndim == 1:
            return pd.DataFrame({(columns or ["value"])[0]: data})
        if data.ndim == 2:
            names = columns or [f"x{i}" for i in range(data.shape[1])]
            if len(names) != data.shape[1]:
                raise InputError(
                    f"{len(names)} column names given for an array with {data.shape[1]} columns"
                )
            return pd.DataFrame(data, columns=names, copy=False)
        return pd.DataFrame(array_columns("X", data))
    if isinstance(data, Mapping):
        cols: dict[str, Any] = {}
        for key, value in data.items():
            cols.update(array_columns(str(key), np.asarray(value)))
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise InputError(f"columns have different lengths {sorted(lengths)}: one row per sample")
        return pd.DataFrame(cols)
    raise InputError(f"cannot read {type(data).__name__} as a table: use a DataFrame or an array")


def _npz_frame(path: Path) -> pd.DataFrame:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(
                f"'{path}' holds object arrays that need pickle to load: refused "
                "(store numeric arrays only)"
            ) from None
        raise InputError(f"'{path}' is not a readable NPZ archive ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"'{path}' is not a readable NPZ archive ({exc})") from None
    if not arrays:
        raise InputError(f"'{path}' holds no arrays")
    rows = {a.shape[0] for a in arrays.values() if a.ndim > 0}
    if len(rows) != 1:
        raise InputError(
            f"'{path}' holds arrays with different row counts {sorted(rows)}: "
            "monitoring needs one row per sample"
        )
    return as_frame(arrays)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, Parquet or NPZ file (by suffix) into a DataFrame; bad files raise InputError."""
    p = Path(path)
    if not p.exists():
        raise InputError(MSG_PATH_MISSING.format(path=p))
    if p.is_dir():
        raise InputError(f"'{p}' is a folder: give one CSV, Parquet or NPZ file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(p)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(p)
        elif suffix == ".npz":
            frame = _npz_frame(p)
        else:
            raise InputError(
                f"'{p}' has an unsupported format '{suffix or '(none)'}': use CSV, Parquet or NPZ"
            )
    except InputError:
        raise
    except UnicodeDecodeError:
        raise InputError(f"'{p}' is not a readable CSV file (not UTF-8 text)") from None
    except Exception as exc:  # pandas / pyarrow raise many types for broken files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"'{p}' is not a readable {suffix[1:].upper()} file ({first})") from None
    if frame.shape[1] == 0:
        raise InputError(f"'{p}' has no columns")
    if len(frame) == 0:
        raise InputError(f"'{p}' has no rows: nothing to score")
    frame.columns = [str(c) for c in frame.columns]
    return frame
