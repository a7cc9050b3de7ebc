"""Label-issue detection: training rows whose label disagrees with what the data says.

Confident learning (Northcutt, Jiang and Chuang 2021, "Confident Learning: Estimating
Uncertainty in Dataset Labels", JAIR 70) through cleanlab's ``find_label_issues``, on
out-of-fold predicted probabilities: every row is scored by a model that did not train on
it, so a flipped label cannot be memorised away. Flipped labels from a poisoning attack
(label flipping, paper 3.1.1) and honest annotation errors both show up; the row ids go to
the sanitisation mitigation.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...errors import InputError
from ...findings import AssessmentResult, Finding, Severity

log = logging.getLogger(__name__)

FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")


def default_estimator(random_state: int = 0) -> Any:
    """Standardised multinomial logistic regression: fast, calibrated enough, no tuning."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=random_state))


class LabelIssueDetector:
    """Confident learning on cross-validated probabilities (cleanlab).

    ``estimator`` is any scikit-learn classifier with ``predict_proba`` (default:
    :func:`default_estimator`); it sees the inputs flattened to rows.

    Examples::

        det = LabelIssueDetector(cv=5, random_state=0)
        result = det.run(X_train, y_train)
        det.flagged_                  # row ids, most likely wrong first
    """

    name = "confident-learning"
    threats = ("data-poisoning",)
    access = "data"
    requires = ("cleanlab",)

    def __init__(
        self,
        *,
        estimator: Any | None = None,
        cv: int = 5,
        filter_by: str = "prune_by_noise_rate",
        random_state: int = 0,
    ) -> None:
        if cv < 2:
            raise InputError(f"bad cv {cv}: cross-validation needs at least 2 folds")
        if filter_by not in FILTERS:
            raise InputError(f"unknown filter_by '{filter_by}': choose one of {', '.join(FILTERS)}")
        self.estimator = estimator
        self.cv = int(cv)
        self.filter_by = filter_by
        self.random_state = int(random_state)

    def get_params(self) -> dict[str, Any]:
        est = self.estimator
        return {"estimator": type(est).__name__ if est is not None else "StandardScaler+LogisticRegression",
                "cv": self.cv, "filter_by": self.filter_by, "random_state": self.random_state}

    def out_of_fold_proba(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        counts = np.bincount(y)
        folds = min(self.cv, int(counts[counts > 0].min()))
        if folds < 2:
            raise InputError(
                "label-issue detection needs at least 2 rows of every class for cross-validation"
            )
        est = self.estimator if self.estimator is not None else default_estimator(self.random_state)
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.random_state)
        return cross_val_predict(est, X, y, cv=splitter, method="predict_proba")

    def run(self, X: Any, y: Any) -> AssessmentResult:
        from cleanlab.filter import find_label_issues

        Xf = np.asarray(X, dtype=np.float64)
        Xf = Xf.reshape(len(Xf), -1)
        raw = np.asarray(y).ravel()
        if len(Xf) != len(raw):
            raise InputError(f"label-issue detection: {len(Xf)} inputs but {len(raw)} labels")
        if len(Xf) < 10:
            raise InputError("label-issue detection needs at least 10 labelled rows")
        names, yc = np.unique(raw, return_inverse=True)
        if len(names) < 2:
            raise InputError("label-issue detection needs at least two classes in the labels")
        self.pred_probs_ = self.out_of_fold_proba(Xf, yc)
        ranked = find_label_issues(labels=yc, pred_probs=self.pred_probs_, filter_by=self.filter_by,
                                   return_indices_ranked_by="self_confidence")
        self.flagged_ = np.asarray(ranked, dtype=np.int64)
        frac = len(self.flagged_) / len(yc)
        self.suggested_ = self.pred_probs_[self.flagged_].argmax(axis=1)
        sev = Severity.HIGH if frac >= 0.05 else Severity.MEDIUM if frac >= 0.02 else (
            Severity.LOW if frac > 0 else Severity.INFO)
        finding = Finding(
            threat_id="data-poisoning", severity=sev,
            title=f"{len(self.flagged_)} of {len(yc)} training labels ({frac:.1%}) look wrong",
            detail=("Confident learning on out-of-fold probabilities; rows are listed most "
                    "suspicious first with the label the data suggests. Flipped labels from a "
                    "poisoning attack and annotation errors both land here."),
            metric="label_issue_fraction", value=frac,
            evidence={"rows": [int(i) for i in self.flagged_],
                      "given": [str(names[yc[i]]) for i in self.flagged_],
                      "suggested": [str(names[s]) for s in self.suggested_]},
        )
        return AssessmentResult(suite="integrity", metrics={"label_issue_fraction": frac},
                                findings=[finding], params={"label_issues": self.get_params()})
