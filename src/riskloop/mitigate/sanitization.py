"""Data sanitization: drop suspect training rows, keep the cleaned data as a new dataset
version, retrain (paper 4.1 and Table 3 data sanitization; 5.2.2 recovery: "sanitize the
training dataset, retrain the model, and validate it against the attack vector before
re-deploying").

The rows to drop are either given (``rows=[...]``, zero-based positions in the dataset) or
flagged by the integrity assessment's label-issue detector (confident learning, Northcutt,
Jiang & Chuang 2021, "Confident Learning: Estimating Uncertainty in Dataset Labels"). The
cleaned arrays become a dataset version ``derived_from`` the original, with the dropped
positions in its derivation, and the model is retrained from fresh weights on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from torch import nn

from ..errors import InputError
from .base import (
    DatasetChange,
    Mitigation,
    MitigationResult,
    Progress,
    accuracy,
    check_positive,
    start_module,
    train,
)

log = logging.getLogger(__name__)

Flagger = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, dict[str, Any]]]
MAX_DROP_FRACTION = 0.5


class DataSanitization(Mitigation):
    """Drop flagged rows, register the cleaned data, retrain from scratch."""

    name: ClassVar[str] = "sanitize"
    threats: ClassVar[tuple[str, ...]] = ("data-poisoning", "backdoor")
    reassess: ClassVar[tuple[str, ...]] = ("integrity",)
    summary: ClassVar[str] = "drop flagged training rows and retrain"

    dropped_: np.ndarray

    def __init__(
        self,
        *,
        rows: list[int] | None = None,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-3,
        max_drop_fraction: float = MAX_DROP_FRACTION,
        random_state: int = 0,
        flagger: Flagger | None = None,
    ) -> None:
        self.rows = rows
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_drop_fraction = max_drop_fraction
        self.random_state = random_state
        self.flagger = flagger

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        params.pop("flagger", None)
        params["rows"] = None if self.rows is None else len(self.rows)
        params["flagged_by"] = "rows" if self.rows is not None else "label-issues"
        return params

    def flag(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Positions to drop and how they were found."""
        n = len(X)
        if self.rows is not None:
            rows = np.unique(np.asarray(self.rows, dtype=np.int64))
            if len(rows) and (rows.min() < 0 or rows.max() >= n):
                bad = int(rows[(rows < 0) | (rows >= n)][0])
                raise InputError(f"row {bad} is outside the dataset (rows 0..{n - 1})")
            return rows, {"flagged_by": "rows"}
        flagger = self.flagger or label_issue_flagger(random_state=self.random_state)
        rows, info = flagger(X, y)
        return np.unique(np.asarray(rows, dtype=np.int64)), info

    def _run(
        self, module: nn.Module, spec: dict[str, Any], X: np.ndarray, y: np.ndarray,
        progress: Progress,
    ) -> MitigationResult:
        check_positive("epochs", self.epochs, integer=True)
        check_positive("batch_size", self.batch_size, integer=True)
        check_positive("lr", self.lr)
        progress("flag", 0, 1)
        rows, info = self.flag(X, y)
        progress("flag", 1, 1)
        n = len(X)
        if len(rows) > self.max_drop_fraction * n:
            raise InputError(
                f"{len(rows)} of {n} rows flagged, more than {self.max_drop_fraction:.0%}: "
                "sanitizing would discard most of the data; review the flags or raise "
                "max_drop_fraction"
            )
        keep = np.ones(n, dtype=bool)
        keep[rows] = False
        Xc, yc = X[keep], y[keep]
        model = start_module(module, spec, "scratch", self.random_state)
        train(model, Xc, yc, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
              random_state=self.random_state, progress=progress, phase="retrain")
        self.dropped_ = rows
        derivation = {"method": "sanitize", **info, "dropped_rows": rows.tolist(),
                      "rows_before": n, "rows_after": int(keep.sum())}
        log.info("sanitization dropped %d of %d rows", len(rows), n)
        return MitigationResult(
            method=self.name, module=model, spec=dict(spec), params=self.get_params(),
            metrics={"dropped": len(rows), "rows_before": n, "rows_after": int(keep.sum()),
                     "dropped_fraction": len(rows) / n, **{k: v for k, v in info.items()
                                                            if isinstance(v, int | float | str)},
                     "train_accuracy": accuracy(model, Xc, yc)},
            dataset=DatasetChange(X=Xc, y=yc, derivation=derivation),
        )


def label_issue_flagger(*, random_state: int = 0, cv: int = 5) -> Flagger:
    """Rows the integrity assessment's label-issue detector flags (confident learning)."""

    def flag(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        from ..assess.integrity.label_issues import LabelIssueDetector

        det = LabelIssueDetector(cv=cv, random_state=random_state)
        det.run(X, y)
        return det.flagged_, {"flagged_by": "label-issues", "detector": det.name,
                              "detector_params": det.get_params()}

    return flag
