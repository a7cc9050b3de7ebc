"""The model under test: the :class:`Target` protocol and the :class:`InputSpec` it declares.

Every assessment talks to a model through a target. A target answers ``predict_proba(X)``
with an ``(n, k)`` array of class probabilities, names its ``classes`` and declares its
``input_spec``: the shape and dtype of one input, the valid range of every feature and which
features an attacker may not change (categorical or immutable columns).

White-box targets (:class:`WhiteBoxTarget`) also give differentiable ``logits(x)`` on torch
tensors and ``input_gradient(X, y)``; attacks that need gradients check for them with
:func:`is_white_box`.

Labels passed to attacks are class *indices* ``0..k-1`` into ``classes``;
:func:`encode_labels` turns dataset labels into indices with a clear error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InputError, UserError

ACCESS_WHITE = "white-box"
ACCESS_BLACK = "black-box"
ACCESS_LABEL = "label-only"
RANGE_TOLERANCE = 1e-5


class QueryBudgetExceeded(UserError):
    """A black-box target refused a query because its query budget is spent."""


@dataclass(frozen=True)
class InputSpec:
    """Shape, dtype, valid range and frozen features of one input.

    ``lower``/``upper`` broadcast to ``shape`` (a scalar for images in [0, 1], one value per
    column for tabular data; ``-inf``/``inf`` when unknown). ``frozen`` is a boolean mask of
    ``shape`` marking features that may not change, or None. ``shape`` is None when the
    model file does not say (pickled modules): :meth:`complete` fills it from data.
    ``kind`` is "image" or "tabular" and picks the default attack budget.
    """

    shape: tuple[int, ...] | None
    dtype: str = "float32"
    lower: Any = -np.inf
    upper: Any = np.inf
    frozen: Any = None
    kind: str = "tabular"
    feature_names: tuple[str, ...] | None = None
    bounds_from_data: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("image", "tabular"):
            raise InputError(f"input kind must be 'image' or 'tabular', got {self.kind!r}")
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
            lo, hi = self.lower_array(), self.upper_array()
            if np.any(lo > hi):
                raise InputError("input spec: a lower bound is above its upper bound")
            if self.frozen is not None:
                np.broadcast_to(np.asarray(self.frozen, dtype=bool), self.shape)

    # -- arrays ---------------------------------------------------------------------------
    def lower_array(self) -> np.ndarray:
        return self._full(self.lower)

    def upper_array(self) -> np.ndarray:
        return self._full(self.upper)

    def frozen_mask(self) -> np.ndarray:
        if self.frozen is None:
            return np.zeros(self._shape(), dtype=bool)
        return np.broadcast_to(np.asarray(self.frozen, dtype=bool), self._shape()).copy()

    def mutable_mask(self) -> np.ndarray:
        return ~self.frozen_mask()

    @property
    def n_features(self) -> int:
        return int(np.prod(self._shape()))

    @property
    def bounded(self) -> bool:
        return bool(np.all(np.isfinite(self.lower_array())) and np.all(np.isfinite(self.upper_array())))

    @property
    def range_width(self) -> float:
        """The largest ``upper - lower`` over features (inf when unbounded)."""
        width = self.upper_array() - self.lower_array()
        return float(np.max(width)) if width.size else 0.0

    def _shape(self) -> tuple[int, ...]:
        if self.shape is None:
            raise InputError("input spec has no shape yet: pass data to complete it")
        return self.shape

    def _full(self, value: Any) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float64)
        try:
            return np.broadcast_to(arr, self._shape()).astype(np.float64)
        except ValueError:
            raise InputError(
                f"input spec: bounds of shape {arr.shape} do not fit input shape {self.shape}"
            ) from None

    # -- data -----------------------------------------------------------------------------
    def complete(self, X: np.ndarray) -> InputSpec:
        """Fill an unknown shape and infinite bounds from data (recorded in the run's input
        spec): tabular features get their observed min/max, images one range for all pixels."""
        spec = self
        if spec.shape is None:
            shape = tuple(X.shape[1:])
            spec = replace(spec, shape=shape, kind="image" if len(shape) >= 2 else "tabular")
        row_size = int(np.prod(X.shape[1:])) if np.ndim(X) > 1 else 1
        if spec.shape is not None and row_size != int(np.prod(spec._shape())):
            return spec  # rows of another size: check() names the mismatch in one line
        if not spec.bounded and len(X):
            lo, hi = spec.lower_array(), spec.upper_array()
            data = np.asarray(X, dtype=np.float64).reshape((len(X), *spec._shape()))
            if spec.kind == "image":  # one range for every pixel, not a per-pixel one
                lo = np.where(np.isfinite(lo), lo, data.min())
                hi = np.where(np.isfinite(hi), hi, data.max())
            else:
                lo = np.where(np.isfinite(lo), lo, data.min(axis=0))
                hi = np.where(np.isfinite(hi), hi, data.max(axis=0))
            spec = replace(spec, lower=lo, upper=hi, bounds_from_data=True)
        return spec

    def check(self, X: Any, *, where: str = "input") -> np.ndarray:
        """Validate ``X`` against the spec; returns a C-contiguous float32 array."""
        arr = np.asarray(X)
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
        ):
            raise InputError(
                f"{where} has dtype {arr.dtype}, not numbers: encode categorical columns first"
            )
        if arr.ndim < 1:
            raise InputError(f"{where} must be an array of rows, got a scalar")
        if self.shape is not None and tuple(arr.shape[1:]) != self.shape:
            size = int(np.prod(arr.shape[1:])) if arr.ndim > 1 else 1
            if arr.ndim >= 2 and size == self.n_features:
                arr = arr.reshape((len(arr), *self.shape))
            else:
                raise InputError(
                    f"{where} has inputs of shape {tuple(arr.shape[1:])} but the model expects "
                    f"{self.shape}: pass data made for this model"
                )
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{where} holds NaN or infinite values: clean the data first")
        if self.shape is not None and len(arr):
            lo, hi = self.lower_array(), self.upper_array()
            bad = (arr < lo - RANGE_TOLERANCE) | (arr > hi + RANGE_TOLERANCE)
            if bad.any():
                row, *feat = np.argwhere(bad)[0]
                flat = int(np.ravel_multi_index(tuple(feat), self.shape)) if feat else 0
                raise InputError(
                    f"{where} row {int(row)} feature {flat} = {float(arr[(row, *feat)]):g} is "
                    f"outside the model's valid range [{lo[tuple(feat)]:g}, {hi[tuple(feat)]:g}]: "
                    "scale the data the way the model expects"
                )
            arr = np.clip(arr, lo.astype(np.float32), hi.astype(np.float32))
        return arr

    def as_dict(self) -> dict[str, Any]:
        def short(a: Any) -> Any:
            v = np.asarray(a, dtype=np.float64)
            if v.ndim == 0 or np.all(v == v.flat[0]):
                x = float(v.flat[0])
                return x if np.isfinite(x) else str(x)
            return [float(t) if np.isfinite(t) else str(t) for t in v.ravel()]

        return {
            "shape": list(self.shape) if self.shape is not None else None, "dtype": self.dtype,
            "lower": short(self.lower), "upper": short(self.upper), "kind": self.kind,
            "frozen": int(self.frozen_mask().sum()) if self.shape is not None else 0,
            "bounds_from_data": self.bounds_from_data,
        }


def guess_kind(shape: tuple[int, ...] | None, lower: Any, upper: Any) -> str:
    """Images are inputs with two or more dimensions in a fixed range such as [0, 1]."""
    if shape is not None and len(shape) >= 2 and np.all(np.isfinite(lower)) and np.all(np.isfinite(upper)):
        return "image"
    return "tabular"


@runtime_checkable
class Target(Protocol):
    """What every model under test offers (black-box access)."""

    classes: tuple[str, ...]
    input_spec: InputSpec
    access: str
    queries: int

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class WhiteBoxTarget(Target, Protocol):
    """A target with differentiable logits and gradients with respect to its inputs."""

    def logits(self, x: Any) -> Any: ...

    def input_gradient(self, X: np.ndarray, y: np.ndarray) -> np.ndarray: ...

    def attack_mode(self) -> Any: ...


def is_white_box(target: Any) -> bool:
    return getattr(target, "access", None) == ACCESS_WHITE and isinstance(target, WhiteBoxTarget)


def predict(target: Target, X: np.ndarray) -> np.ndarray:
    """Class indices predicted by ``target``."""
    return np.asarray(target.predict_proba(X)).argmax(axis=1)


def encode_labels(y: Any, classes: tuple[str, ...], *, where: str = "labels") -> np.ndarray:
    """Dataset labels to class indices: by label name first, else as indices ``0..k-1``."""
    arr = np.asarray(y).ravel()
    k = len(classes)
    names = [str(v) for v in arr.tolist()]
    lookup = {c: i for i, c in enumerate(classes)}
    if all(n in lookup for n in names):
        return np.array([lookup[n] for n in names], dtype=np.int64)
    if np.issubdtype(arr.dtype, np.integer) or (
        np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0)
    ):
        idx = arr.astype(np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= k):
            bad = int(idx[(idx < 0) | (idx >= k)][0])
            raise InputError(
                f"{where}: label {bad} is outside the model's class range 0..{k - 1} "
                f"(classes {', '.join(classes[:10])}{', ...' if k > 10 else ''})"
            )
        return idx
    bad_name = next(n for n in names if n not in lookup)
    raise InputError(
        f"{where}: label {bad_name!r} is not one of the model's classes "
        f"({', '.join(classes[:10])}{', ...' if k > 10 else ''})"
    )


def check_data(target: Target, X: Any, y: Any, *, where: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """Validated inputs (float32, model shape, in range) and label indices."""
    Xc = target.input_spec.check(X, where=f"{where} inputs")
    yc = encode_labels(y, target.classes, where=f"{where} labels")
    if len(Xc) != len(yc):
        raise InputError(f"{where}: {len(Xc)} inputs but {len(yc)} labels")
    if len(Xc) == 0:
        raise InputError(f"{where} is empty: nothing to assess")
    return Xc, yc


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def as_probabilities(out: np.ndarray, *, where: str) -> np.ndarray:
    """Probabilities as they are, or softmax of logits (rows that do not sum to one)."""
    out = np.asarray(out, dtype=np.float64)
    if out.ndim == 1:  # a single score per row: binary, probability of class 1
        out = np.stack([1.0 - out, out], axis=1)
    if out.ndim != 2:
        raise InputError(f"{where} returned outputs of shape {out.shape}: expected (rows, classes)")
    if np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-4):
        return out
    return softmax(out)


@contextmanager
def nothing() -> Iterator[None]:
    yield
