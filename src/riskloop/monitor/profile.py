"""Frozen reference profiles: what a drift test needs to know about the reference data.

A profile is computed once (at deployment or on demand) and stored as JSON; live windows are
then scored against it without touching the reference data again. Per numeric column it
keeps summary statistics, bin edges from reference quantiles (frozen, so the binning never
moves with the window), the reference counts in those bins, and a sorted sample for the
order statistics (KS, Wasserstein): every value when the column has at most ``sample_size``
finite values (exact), otherwise ``sample_size`` mid-quantiles ``Q((k + 0.5) / M)`` (a sketch
whose CDF is within ``1/M`` of the reference's). Per categorical column it keeps the category
counts. Missing values (NaN, None, +-inf) are counted, never binned.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..errors import InputError
from .tables import TableLike, as_frame

FORMAT_VERSION = 1
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass
class NumericProfile:
    """Reference facts about one numeric column."""

    kind: ClassVar[str] = "numeric"

    name: str
    count: int
    missing: int
    mean: float
    std: float
    min: float
    max: float
    n_unique: int
    quantiles: dict[str, float]
    edges: np.ndarray
    counts: np.ndarray
    sample: np.ndarray
    exact: bool

    @cached_property
    def unique_cum(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct sample values and how many sample values are <= each (for KS/W)."""
        values, counts = np.unique(self.sample, return_counts=True)
        return values, np.cumsum(counts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "name": self.name, "count": self.count, "missing": self.missing,
            "mean": self.mean, "std": self.std, "min": self.min, "max": self.max,
            "n_unique": self.n_unique, "quantiles": self.quantiles,
            "edges": self.edges.tolist(), "counts": self.counts.tolist(),
            "sample": self.sample.tolist(), "exact": self.exact,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumericProfile:
        return cls(
            name=d["name"], count=int(d["count"]), missing=int(d["missing"]),
            mean=float(d["mean"]), std=float(d["std"]), min=float(d["min"]),
            max=float(d["max"]), n_unique=int(d["n_unique"]),
            quantiles={k: float(v) for k, v in d["quantiles"].items()},
            edges=np.asarray(d["edges"], dtype=np.float64),
            counts=np.asarray(d["counts"], dtype=np.int64),
            sample=np.asarray(d["sample"], dtype=np.float64), exact=bool(d["exact"]),
        )


@dataclass
class CategoricalProfile:
    """Reference facts about one categorical column (values compared as strings)."""

    kind: ClassVar[str] = "categorical"

    name: str
    count: int
    missing: int
    categories: list[str]
    counts: np.ndarray

    @cached_property
    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.categories)}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "count": self.count,
                "missing": self.missing, "categories": list(self.categories),
                "counts": self.counts.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CategoricalProfile:
        return cls(name=d["name"], count=int(d["count"]), missing=int(d["missing"]),
                   categories=[str(c) for c in d["categories"]],
                   counts=np.asarray(d["counts"], dtype=np.int64))


ColumnProfile = NumericProfile | CategoricalProfile


def is_numeric_dtype(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series.dtype)) and not pd.api.types.is_bool_dtype(
        series.dtype
    )


def category_strings(series: pd.Series) -> pd.Series:
    """Non-missing values of a column as strings (how categories are compared)."""
    s = series.dropna()
    if pd.api.types.is_float_dtype(s.dtype) and s.size and bool((s == np.round(s)).all()):
        s = s.astype(np.int64)  # 3.0 and 3 are one category (a CSV column with gaps is float)
    return s.astype(str) if not pd.api.types.is_string_dtype(s.dtype) else s


def quantile_edges(sorted_values: np.ndarray, n_bins: int) -> np.ndarray:
    """Interior edges at the reference quantiles k/n_bins, duplicates removed."""
    qs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    return np.unique(np.quantile(sorted_values, qs))


def _numeric(name: str, values: np.ndarray, n_bins: int, sample_size: int | None) -> NumericProfile:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise InputError(f"column '{name}' has no finite values in the reference: drop it or fix it")
    srt = np.sort(finite)
    n = int(srt.size)
    edges = quantile_edges(srt, n_bins)
    below = np.searchsorted(srt, edges, side="left")
    counts = np.diff(np.concatenate([[0], below, [n]])).astype(np.int64)
    if sample_size is None or n <= sample_size:
        sample, exact = srt.copy(), True
    else:
        pos = ((np.arange(sample_size) + 0.5) * n / sample_size).astype(np.int64)
        sample, exact = srt[np.minimum(pos, n - 1)], False
    return NumericProfile(
        name=name, count=n, missing=int(values.size - n), mean=float(srt.mean()),
        std=float(srt.std()), min=float(srt[0]), max=float(srt[-1]),
        n_unique=int(np.count_nonzero(np.diff(srt)) + 1),
        quantiles={f"p{round(q * 100)}": float(np.quantile(srt, q)) for q in QUANTILES},
        edges=edges, counts=counts, sample=sample, exact=exact,
    )


def _categorical(name: str, series: pd.Series) -> CategoricalProfile:
    values = category_strings(series)
    if values.size == 0:
        raise InputError(f"column '{name}' has no values in the reference: drop it or fix it")
    vc = values.value_counts(sort=True)
    return CategoricalProfile(
        name=name, count=int(values.size), missing=int(series.size - values.size),
        categories=[str(c) for c in vc.index], counts=vc.to_numpy(dtype=np.int64),
    )


@dataclass
class ReferenceProfile:
    """The frozen reference of a drift test; build it with :meth:`fit`, store it as JSON."""

    columns: dict[str, ColumnProfile]
    rows: int
    n_bins: int
    sample_size: int | None
    source: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        data: TableLike,
        *,
        categorical: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        n_bins: int = 10,
        sample_size: int | None = 10_000,
        source: dict[str, Any] | None = None,
    ) -> ReferenceProfile:
        """Profile ``data``. Numeric dtypes are numeric unless named in ``categorical``;
        everything else (strings, booleans, categories) is categorical."""
        if n_bins < 2:
            raise InputError(f"n_bins must be at least 2, got {n_bins}")
        if sample_size is not None and sample_size < 100:
            raise InputError(f"sample_size must be at least 100 (or None for all), got {sample_size}")
        frame = as_frame(data)
        if len(frame) == 0:
            raise InputError("the reference has no rows: nothing to profile")
        cats = set(categorical or [])
        unknown = cats - set(map(str, frame.columns))
        if unknown:
            raise InputError(f"categorical column(s) {sorted(unknown)} not in the reference")
        skip = set(exclude or [])
        cols: dict[str, ColumnProfile] = {}
        for col in frame.columns:
            name = str(col)
            if name in skip:
                continue
            series = frame[col]
            if name not in cats and is_numeric_dtype(series):
                values = series.to_numpy(dtype=np.float64, na_value=np.nan)
                cols[name] = _numeric(name, values, n_bins, sample_size)
            else:
                cols[name] = _categorical(name, series)
        if not cols:
            raise InputError("no columns left to profile")
        return cls(columns=cols, rows=len(frame), n_bins=n_bins, sample_size=sample_size,
                   source=dict(source or {}))

    @property
    def numeric(self) -> list[str]:
        return [n for n, c in self.columns.items() if c.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [n for n, c in self.columns.items() if c.kind == "categorical"]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "rows": self.rows, "n_bins": self.n_bins,
                "sample_size": self.sample_size, "source": self.source,
                "columns": [c.to_dict() for c in self.columns.values()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReferenceProfile:
        if d.get("format") != FORMAT_VERSION:
            raise InputError(
                f"reference profile format {d.get('format')!r} is not supported "
                f"(expected {FORMAT_VERSION}): rebuild the profile"
            )
        cols: dict[str, ColumnProfile] = {}
        for c in d["columns"]:
            cols[c["name"]] = (NumericProfile if c["kind"] == "numeric" else CategoricalProfile
                               ).from_dict(c)
        return cls(columns=cols, rows=int(d["rows"]), n_bins=int(d["n_bins"]),
                   sample_size=d.get("sample_size"), source=dict(d.get("source") or {}))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"reference profile is not valid JSON ({exc})") from None
        return cls.from_dict(data)
