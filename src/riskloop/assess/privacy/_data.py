"""Extra data a confidentiality or integrity suite needs besides ``--data``.

Membership inference needs the records the model was trained on (its lineage, or
``-o members=DATASET@VER``); integrity can use trusted held-out data; extraction can use a
separate query pool. Each is a registered dataset version, loaded through the same digest
check as every other dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...config import Settings
from ...errors import InputError
from ...inventory.refs import resolve_dataset
from ...store.db import transaction
from ...store.models import DatasetVersion, ModelVersion
from ...targets.loader import load_arrays


def dataset_arrays(settings: Settings, ref: str) -> tuple[DatasetVersion, np.ndarray, np.ndarray]:
    """Resolve ``ref`` and load its inputs and labels (digest-checked)."""
    with transaction(settings) as s:
        ds = resolve_dataset(s, ref)
        X, y = load_arrays(ds)
        s.expunge(ds)
    return ds, X, y


def training_sets(settings: Settings, model: ModelVersion) -> list[tuple[DatasetVersion, np.ndarray, np.ndarray]]:
    """The datasets the model's lineage says it was trained on, loaded."""
    with transaction(settings) as s:
        mv = s.get(ModelVersion, model.id)
        if mv is None:
            raise InputError(f"model '{model.ref}' is no longer in the store")
        out = []
        for edge in mv.trained_on:
            X, y = load_arrays(edge.dataset)
            out.append((edge.dataset, X, y))
        s.expunge_all()
    return out


def option(options: dict[str, Any], key: str, default: Any, cast: type, *, suite: str) -> Any:
    """Pop ``key`` from the suite options and convert it; one clear error if it does not fit."""
    if key not in options:
        return default
    raw = options.pop(key)
    if cast is bool:
        if isinstance(raw, bool):
            return raw
        low = str(raw).lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise InputError(f"bad {suite} option {key}={raw!r}: use true or false")
    try:
        return cast(raw)
    except (TypeError, ValueError):
        raise InputError(f"bad {suite} option {key}={raw!r}: expected {cast.__name__}") from None


def tri_state(options: dict[str, Any], key: str, *, suite: str) -> bool | None:
    """``auto`` (None, the default), ``true`` or ``false``."""
    if str(options.get(key, "auto")).lower() == "auto":
        options.pop(key, None)
        return None
    return option(options, key, None, bool, suite=suite)


def reject_unknown(options: dict[str, Any], *, suite: str, known: list[str]) -> None:
    if options:
        key = sorted(options)[0]
        raise InputError(f"unknown {suite} option '{key}': use {', '.join(known)}")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [path]


def read_columns(ds: DatasetVersion, names: list[str]) -> pd.DataFrame:
    """Named columns of a CSV/Parquet dataset, or named arrays of an NPZ dataset, in row order."""
    parts = []
    for f in _files(Path(ds.path)):
        suffix = f.suffix.lower()
        if suffix == ".npz":
            with np.load(f, allow_pickle=False) as npz:
                missing = [n for n in names if n not in npz.files]
                if missing:
                    raise InputError(f"dataset '{ds.ref}': no array '{missing[0]}' in '{f.name}'")
                parts.append(pd.DataFrame({n: np.asarray(npz[n]).ravel() for n in names}))
        elif suffix in (".csv", ".parquet", ".pq"):
            frame = pd.read_csv(f) if suffix == ".csv" else pd.read_parquet(f)
            missing = [n for n in names if n not in frame.columns]
            if missing:
                raise InputError(f"dataset '{ds.ref}': no column '{missing[0]}' in '{f.name}'")
            parts.append(frame[names].reset_index(drop=True))
        else:
            raise InputError(f"dataset '{ds.ref}': '{f.name}' is not NPZ, CSV or Parquet")
    return pd.concat(parts, ignore_index=True)


def feature_names(ds: DatasetVersion) -> list[str] | None:
    """Input column names of a tabular dataset as ``load_arrays`` orders them (None for NPZ)."""
    files = _files(Path(ds.path))
    first = files[0] if files else None
    if first is None or first.suffix.lower() not in (".csv", ".parquet", ".pq"):
        return None
    if first.suffix.lower() == ".csv":
        cols = list(pd.read_csv(first, nrows=0).columns)
    else:
        import pyarrow.parquet as pq

        cols = list(pq.ParquetFile(first).schema_arrow.names)
    return [str(c) for c in cols if c != ds.target]


def seeded_split(n: int, first: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded permutation of ``range(n)`` cut into two parts (``first`` share first)."""
    order = np.random.default_rng(random_state).permutation(n)
    cut = int(round(first * n))
    return order[:cut], order[cut:]
