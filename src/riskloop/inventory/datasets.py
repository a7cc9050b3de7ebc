"""Reading dataset files: format by content, row count and schema.

Supported: CSV, Parquet, NumPy ``.npz`` (never with pickled object arrays) and folders of
those (or of any files, counted as one row each, e.g. an image folder).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import MSG_PATH_MISSING, InputError
from .digest import list_files

TABULAR_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npz": "npz"}


@dataclass
class DatasetInfo:
    format: str
    rows: int
    schema: list[dict[str, Any]] = field(default_factory=list)


def _sniff(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    return "text"


def _bad_format(path: Path, claimed: str, found: str) -> InputError:
    return InputError(
        f"'{path}' is named like a {claimed} file but its content is {found}: "
        "check the file or rename it to match its content"
    )


def _read_csv(path: Path) -> DatasetInfo:
    kind = _sniff(path)
    if kind != "text":
        raise _bad_format(path, "CSV", "binary (" + kind + ")")
    try:
        raw = path.read_bytes()
        raw.decode("utf-8")
        frame = pd.read_csv(io.BytesIO(raw))
    except UnicodeDecodeError:
        raise _bad_format(path, "CSV", "not UTF-8 text") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InputError(f"'{path}' is not a readable CSV file ({str(exc).splitlines()[0]})") from None
    if frame.shape[1] == 0:
        raise InputError(f"'{path}' has no columns: a CSV dataset needs a header row")
    return DatasetInfo("csv", len(frame), _frame_schema(frame))


def _frame_schema(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"name": str(c), "dtype": str(t)} for c, t in frame.dtypes.items()]


def _read_parquet(path: Path) -> DatasetInfo:
    if _sniff(path) != "parquet":
        raise _bad_format(path, "Parquet", "not Parquet (no PAR1 magic)")
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a broken footer
        raise InputError(f"'{path}' is not a readable Parquet file ({exc})") from None
    schema = [{"name": f.name, "dtype": str(f.type)} for f in meta.schema_arrow]
    return DatasetInfo("parquet", meta.metadata.num_rows, schema)


def _read_npz(path: Path) -> DatasetInfo:
    if _sniff(path) != "zip":
        raise _bad_format(path, "NPZ", "not a NumPy archive (no zip magic)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            schema = []
            rows = None
            for key in npz.files:
                arr = npz[key]
                schema.append({"name": key, "dtype": str(arr.dtype), "shape": list(arr.shape)})
                if rows is None and arr.ndim > 0:
                    rows = int(arr.shape[0])
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(
                f"'{path}' holds object arrays that need pickle to load: refused "
                "(store numeric arrays only, or scan it with 'riskloop scan')"
            ) from None
        raise InputError(f"'{path}' is not a readable NPZ archive ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"'{path}' is not a readable NPZ archive ({exc})") from None
    if not schema:
        raise InputError(f"'{path}' holds no arrays")
    return DatasetInfo("npz", rows or 0, schema)


_READERS = {"csv": _read_csv, "parquet": _read_parquet, "npz": _read_npz}


def inspect_dataset(path: str | Path) -> DatasetInfo:
    """Format, row count and schema of a dataset file or folder."""
    p = Path(path)
    if not p.exists():
        raise InputError(MSG_PATH_MISSING.format(path=p))
    if p.is_file():
        fmt = TABULAR_SUFFIXES.get(p.suffix.lower())
        if fmt is None:
            raise InputError(
                f"'{p}' has an unsupported dataset format '{p.suffix or '(none)'}': "
                "use CSV, Parquet, NPZ or a folder"
            )
        return _READERS[fmt](p)
    files = list_files(p)
    if not files:
        raise InputError(f"folder '{p}' holds no files: nothing to register")
    tabular = [f for f in files if f.suffix.lower() in TABULAR_SUFFIXES]
    if tabular and len(tabular) == len(files):
        infos = [_READERS[TABULAR_SUFFIXES[f.suffix.lower()]](f) for f in tabular]
        schema = infos[0].schema
        return DatasetInfo(f"folder[{infos[0].format}]", sum(i.rows for i in infos), schema)
    exts = sorted({f.suffix.lower() or "(none)" for f in files})
    return DatasetInfo(
        "folder", len(files), [{"name": "file", "dtype": "bytes", "extensions": exts}]
    )


def column_names(info: DatasetInfo) -> list[str]:
    return [str(c["name"]) for c in info.schema]
