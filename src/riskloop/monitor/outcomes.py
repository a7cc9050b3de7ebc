"""Prediction drift (the model's output distribution) and performance drift (concept drift).

Paper 5.1(4): monitoring covers "data drift and concept drift". Prediction drift needs no
labels: the predicted-class shares and the top-class confidence of a window are scored
against a reference window with :class:`~riskloop.monitor.drift.DataDrift`. Performance
drift needs labels (from reviewers or delayed ground truth): the window's error rate is
compared with the reference's by a one-sided Fisher exact test.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import InputError
from .drift import DataDrift, DriftReport
from .profile import ReferenceProfile

log = logging.getLogger(__name__)

PREDICTED_CLASS = "predicted_class"
CONFIDENCE = "confidence"


def prediction_frame(predictions: np.ndarray | list[Any]) -> pd.DataFrame:
    """Columns describing model outputs.

    2-D scores (rows of class probabilities): ``predicted_class`` (argmax, categorical) and
    ``confidence`` (top-class probability). 1-D integers or strings: ``predicted_class``.
    1-D floats (a regressor): ``prediction``.
    """
    arr = np.asarray(predictions)
    if arr.ndim == 2:
        if arr.shape[1] < 2 or not np.issubdtype(arr.dtype, np.number):
            raise InputError("prediction scores must be numeric rows with one column per class")
        return pd.DataFrame({PREDICTED_CLASS: arr.argmax(axis=1).astype(str),
                             CONFIDENCE: arr.max(axis=1).astype(np.float64)})
    if arr.ndim == 1:
        if np.issubdtype(arr.dtype, np.floating):
            return pd.DataFrame({"prediction": arr.astype(np.float64)})
        return pd.DataFrame({PREDICTED_CLASS: arr.astype(str)})
    raise InputError(f"predictions must be 1-D labels or 2-D class scores, got shape {arr.shape}")


def prediction_profile(predictions: np.ndarray | list[Any], **fit_kwargs: Any) -> ReferenceProfile:
    """The frozen reference of a model's outputs (store it beside the input profile)."""
    frame = prediction_frame(predictions)
    cats = [PREDICTED_CLASS] if PREDICTED_CLASS in frame else []
    return ReferenceProfile.fit(frame, categorical=cats, **fit_kwargs)


def prediction_drift(
    reference: np.ndarray | list[Any] | ReferenceProfile,
    current: np.ndarray | list[Any],
    **drift_kwargs: Any,
) -> DriftReport:
    """Drift of the model's outputs: ``reference`` is a profile or reference predictions."""
    profile = reference if isinstance(reference, ReferenceProfile) else prediction_profile(reference)
    return DataDrift(**drift_kwargs).run(profile, prediction_frame(current))


@dataclass
class PerformanceDriftResult:
    accuracy_ref: float
    accuracy_cur: float
    drop: float
    p_value: float
    n_ref: int
    n_cur: int
    drifted: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _labels(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if p.ndim == 2:
        p = p.argmax(axis=1)
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
        raise InputError(
            f"labels {t.shape} and predictions {p.shape} must be 1-D and of the same length"
        )
    if t.size == 0:
        raise InputError("no labelled predictions: performance drift needs labels")
    return t, p


class PerformanceDrift:
    """Concept drift from labelled outcomes: has accuracy dropped since the reference?

    The test is Fisher's exact test, one-sided, on the 2 x 2 table of (errors, correct) in
    the window and in the reference; drift needs both ``p < alpha`` and an accuracy drop of
    at least ``min_drop`` (so a huge window cannot flag a negligible drop). A sudden drop
    on labelled traffic is also what poisoned feedback or a successful evasion campaign
    looks like (paper 2.3.3, 5.1(4)).
    """

    name: ClassVar[str] = "performance-drift"
    threats: ClassVar[tuple[str, ...]] = ("data-poisoning", "evasion")
    access: ClassVar[str] = "black-box"

    def __init__(self, *, alpha: float = 0.01, min_drop: float = 0.02) -> None:
        if not 0 < alpha < 1:
            raise InputError(f"alpha must be in (0, 1), got {alpha}")
        self.alpha = alpha
        self.min_drop = min_drop

    def fit(self, y_true: Any, y_pred: Any) -> PerformanceDrift:
        t, p = _labels(y_true, y_pred)
        self.n_ref_ = int(t.size)
        self.correct_ref_ = int(np.sum(t == p))
        return self

    def run(self, y_true: Any, y_pred: Any) -> PerformanceDriftResult:
        if not hasattr(self, "n_ref_"):
            raise InputError("PerformanceDrift is not fitted: call fit() on reference outcomes")
        t, p = _labels(y_true, y_pred)
        n, correct = int(t.size), int(np.sum(t == p))
        table = [[n - correct, correct], [self.n_ref_ - self.correct_ref_, self.correct_ref_]]
        p_value = float(stats.fisher_exact(table, alternative="greater").pvalue)
        acc_ref = self.correct_ref_ / self.n_ref_
        acc_cur = correct / n
        drop = acc_ref - acc_cur
        result = PerformanceDriftResult(
            accuracy_ref=acc_ref, accuracy_cur=acc_cur, drop=drop, p_value=p_value,
            n_ref=self.n_ref_, n_cur=n, drifted=bool(p_value < self.alpha and drop >= self.min_drop),
        )
        self.result_ = result
        log.info("performance drift: accuracy %.4f -> %.4f (p=%.3g)", acc_ref, acc_cur, p_value)
        return result

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "min_drop": self.min_drop,
                "n_ref": getattr(self, "n_ref_", None), "correct_ref": getattr(self, "correct_ref_", None)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PerformanceDrift:
        obj = cls(alpha=float(d["alpha"]), min_drop=float(d["min_drop"]))
        if d.get("n_ref") is not None:
            obj.n_ref_, obj.correct_ref_ = int(d["n_ref"]), int(d["correct_ref"])
        return obj
