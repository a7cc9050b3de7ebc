"""Bias: does the model treat groups defined by a sensitive attribute differently?

A thin layer over Fairlearn (Weerts et al. 2023, "Fairlearn: Assessing and Improving Fairness
of AI Systems", JMLR 24): :class:`~fairlearn.metrics.MetricFrame` gives accuracy, selection
rate, false positive rate (false acceptance: a negative case accepted) and false negative rate
(false rejection) per group; ``demographic_parity_difference``/``_ratio`` and
``equalized_odds_difference`` give the gaps. Nothing here recomputes what Fairlearn provides;
this module picks the outcome, names groups, finds the worst group and turns the gaps into a
finding (paper 3.1.3, Table 2 "bias injection": e.g. a higher false acceptance rate for one
group).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..findings import AssessmentResult, Finding, Severity
from ..targets.base import Target, encode_labels

log = logging.getLogger(__name__)

THREAT = "bias-injection"
MSG_NO_SENSITIVE = (
    "fairness needs sensitive attributes, and dataset '{ref}' records none: register it again "
    "with --sensitive COLUMN (e.g. --sensitive sex)"
)
MSG_NOT_BINARY = (
    "fairness metrics need a yes/no outcome but the model has {k} classes ({classes}): pass "
    "-o pos_label=CLASS to name the favourable one"
)
SMALL_GROUP = 30


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def group_labels(sensitive: pd.DataFrame, *, n_bins: int = 4) -> tuple[pd.Series, list[str]]:
    """One readable group label per row ("sex=f" or "sex=f, race=b"); numeric columns with
    many values are cut into ``n_bins`` quantile bins first."""
    notes: list[str] = []
    parts = []
    for col in sensitive.columns:
        s = sensitive[col]
        if pd.api.types.is_numeric_dtype(s) and s.nunique() > 2 * n_bins:
            s = pd.qcut(s, q=n_bins, duplicates="drop").astype(str)
            notes.append(f"numeric attribute '{col}' was cut into {n_bins} quantile bins")
        parts.append(f"{col}=" + s.astype(str))
    label = parts[0]
    for p in parts[1:]:
        label = label + ", " + p
    return label.rename("group"), notes


class FairnessAudit:
    """Group fairness of a classifier's decisions with Fairlearn's MetricFrame.

    ``pos_label`` names the favourable outcome (a class name or index); binary models default
    to their second class. The finding's severity follows the larger of the demographic
    parity and equalized odds differences (>= ``max_gap`` is medium, twice that high) and the
    four-fifths rule on the demographic parity ratio (< ``min_ratio`` is at least medium).

    Examples::

        audit = FairnessAudit(pos_label="1")
        result = audit.run(target, X, y, sensitive=frame[["sex"]])
        audit.by_group_                 # per-group table (pandas)
    """

    name = "group-fairness"
    threats = (THREAT,)
    access = "black-box"
    requires = ("fairlearn",)

    def __init__(
        self,
        *,
        pos_label: str | int | None = None,
        max_gap: float = 0.10,
        min_ratio: float = 0.80,
        n_bins: int = 4,
    ) -> None:
        if not 0.0 < max_gap < 1.0:
            raise InputError(f"bad max_gap {max_gap}: a difference in (0, 1)")
        self.pos_label = pos_label
        self.max_gap = float(max_gap)
        self.min_ratio = float(min_ratio)
        self.n_bins = int(n_bins)

    def get_params(self) -> dict[str, Any]:
        return {"pos_label": self.pos_label, "max_gap": self.max_gap,
                "min_ratio": self.min_ratio, "n_bins": self.n_bins}

    def _positive(self, classes: tuple[str, ...]) -> int:
        if self.pos_label is None:
            if len(classes) != 2:
                raise InputError(MSG_NOT_BINARY.format(k=len(classes), classes=", ".join(classes[:10])))
            return 1
        return int(encode_labels([self.pos_label], classes, where="pos_label")[0])

    def run(self, target: Target, X: Any, y: Any, *, sensitive: Any) -> AssessmentResult:
        """Predict with ``target`` and audit the decisions against ``y`` by group."""
        Xc = target.input_spec.check(X, where="fairness data inputs")
        yc = encode_labels(y, target.classes, where="fairness data labels")
        pos = self._positive(target.classes)
        pred = np.asarray(target.predict_proba(Xc)).argmax(axis=1)
        return self.evaluate((yc == pos).astype(int), (pred == pos).astype(int), sensitive,
                             positive=target.classes[pos])

    def evaluate(self, y_true: Any, y_pred: Any, sensitive: Any, *, positive: str = "1") -> AssessmentResult:
        """Audit binary decisions (1 = favourable) against binary truth, by group."""
        from fairlearn.metrics import (
            MetricFrame,
            count,
            demographic_parity_difference,
            demographic_parity_ratio,
            equalized_odds_difference,
            false_negative_rate,
            false_positive_rate,
            selection_rate,
        )
        from sklearn.metrics import accuracy_score

        yt, yp = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
        frame = sensitive if isinstance(sensitive, pd.DataFrame) else pd.DataFrame(
            {"group": np.asarray(sensitive).ravel()} if np.asarray(sensitive).ndim == 1 else np.asarray(sensitive))
        if not (len(yt) == len(yp) == len(frame)):
            raise InputError(f"fairness: {len(yt)} labels, {len(yp)} predictions and {len(frame)} sensitive rows")
        if frame.isna().any().any():
            raise InputError("fairness: sensitive attributes have missing values: fill or drop those rows")
        groups, notes = group_labels(frame.reset_index(drop=True), n_bins=self.n_bins)
        if groups.nunique() < 2:
            raise InputError(f"fairness needs at least two groups, found only '{groups.iloc[0]}'")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined rates (a group without negatives) become None
            mf = MetricFrame(
                metrics={"accuracy": accuracy_score, "selection_rate": selection_rate,
                         "false_positive_rate": false_positive_rate,
                         "false_negative_rate": false_negative_rate, "count": count},
                y_true=yt, y_pred=yp, sensitive_features=groups,
            )
            dpd = float(demographic_parity_difference(yt, yp, sensitive_features=groups))
            dpr = float(demographic_parity_ratio(yt, yp, sensitive_features=groups))
            eod = float(equalized_odds_difference(yt, yp, sensitive_features=groups))
            gaps = mf.difference()
        self.metric_frame_ = mf
        self.by_group_ = mf.by_group
        table = [{"group": str(g), **{k: _nan_to_none(v) for k, v in row.items()}}
                 for g, row in mf.by_group.iterrows()]
        for row in table:
            row["count"] = int(row["count"])
        worst = {
            "accuracy": str(mf.by_group["accuracy"].idxmin()),
            "false_positive_rate": str(mf.by_group["false_positive_rate"].idxmax()),
            "false_negative_rate": str(mf.by_group["false_negative_rate"].idxmax()),
            "selection_rate": str(mf.by_group["selection_rate"].idxmin()),
        }
        small = [r["group"] for r in table if r["count"] < SMALL_GROUP]
        self.metrics_ = {
            # Undefined (None) when no group has any selection or any case of a kind.
            "demographic_parity_difference": _nan_to_none(dpd),
            "demographic_parity_ratio": _nan_to_none(dpr),
            "equalized_odds_difference": _nan_to_none(eod),
            "fpr_gap": _nan_to_none(float(gaps["false_positive_rate"])),
            "fnr_gap": _nan_to_none(float(gaps["false_negative_rate"])),
            "accuracy_gap": _nan_to_none(float(gaps["accuracy"])),
            "worst_group": worst["accuracy"], "worst_groups": worst,
            "by_group": table, "overall": {k: _nan_to_none(float(v)) for k, v in mf.overall.items()},
            "positive_label": positive, "sensitive": list(frame.columns.astype(str)),
        }
        warn = list(notes)
        if small:
            warn.append(f"groups with fewer than {SMALL_GROUP} rows give noisy rates: {', '.join(small)}")
        return AssessmentResult(suite="fairness", metrics=dict(self.metrics_),
                                findings=[self._finding()], warnings=warn,
                                params={"audit": self.name, **self.get_params()})

    def _finding(self) -> Finding:
        m = self.metrics_
        gap = max(m["demographic_parity_difference"] or 0.0, m["equalized_odds_difference"] or 0.0)
        ratio = m["demographic_parity_ratio"] if m["demographic_parity_ratio"] is not None else 1.0
        if gap >= 2 * self.max_gap:
            sev = Severity.HIGH
        elif gap >= self.max_gap or ratio < self.min_ratio:
            sev = Severity.MEDIUM
        elif gap >= self.max_gap / 2:
            sev = Severity.LOW
        else:
            sev = Severity.INFO
        worst = m["worst_groups"]
        fpr_gap = m["fpr_gap"]
        return Finding(
            threat_id=THREAT, severity=sev,
            title=(f"largest group gap {gap:.3f} (demographic parity {_fmt(m['demographic_parity_difference'])}, "
                   f"equalized odds {_fmt(m['equalized_odds_difference'])}); worst group {m['worst_group']}"),
            detail=(f"Selection-rate ratio {ratio:.3f} (four-fifths rule: {self.min_ratio:g}). "
                    f"Highest false acceptance rate: {worst['false_positive_rate']}"
                    + (f" (gap {fpr_gap:.3f})" if fpr_gap is not None else "")
                    + f"; highest false rejection rate: {worst['false_negative_rate']}."),
            metric="equalized_odds_difference", value=m["equalized_odds_difference"],
            evidence={k: m[k] for k in ("demographic_parity_difference", "demographic_parity_ratio",
                                        "equalized_odds_difference", "fpr_gap", "fnr_gap",
                                        "worst_groups", "by_group")},
        )


SUITE_OPTIONS = ["pos_label", "sensitive", "max_gap", "min_ratio", "bins"]


def run_fairness_suite(request: Any) -> AssessmentResult:
    """Suite runner for :mod:`riskloop.assess.suites` (``--suite fairness``).

    The sensitive attributes are the ones recorded on the ``--data`` dataset
    (``riskloop register dataset ... --sensitive COLUMN``), or a subset named with
    ``-o sensitive=a,b``. When the model takes fewer inputs than the dataset's non-target
    columns, the sensitive columns are left out of its inputs (a model trained without them).
    """
    from .privacy._data import feature_names, option, read_columns, reject_unknown

    opts = dict(request.options)
    pos_label = option(opts, "pos_label", None, str, suite="fairness")
    wanted = option(opts, "sensitive", None, str, suite="fairness")
    max_gap = option(opts, "max_gap", 0.10, float, suite="fairness")
    min_ratio = option(opts, "min_ratio", 0.80, float, suite="fairness")
    bins = option(opts, "bins", 4, int, suite="fairness")
    reject_unknown(opts, suite="fairness", known=SUITE_OPTIONS)
    ds, target = request.dataset, request.target
    recorded = list(ds.sensitive or []) if ds is not None else []
    if not recorded:
        raise InputError(MSG_NO_SENSITIVE.format(ref=ds.ref if ds is not None else "(none)"))
    columns = [c.strip() for c in wanted.split(",") if c.strip()] if wanted else recorded
    unknown = [c for c in columns if c not in recorded]
    if unknown:
        raise InputError(
            f"'{unknown[0]}' is not a sensitive attribute of dataset '{ds.ref}' "
            f"(recorded: {', '.join(recorded)})"
        )
    sensitive = read_columns(ds, columns)
    X = np.asarray(request.X)
    if len(sensitive) != len(X):
        raise InputError("fairness reads every row of the dataset: run it without --limit")
    names = feature_names(ds)
    shape = target.input_spec.shape
    dropped: list[str] = []
    if names is not None and shape is not None and X.ndim == 2:
        expected = int(np.prod(shape))
        keep = [i for i, n in enumerate(names) if n not in recorded]
        if X.shape[1] != expected and len(keep) == expected:
            X = X[:, keep]
            dropped = [n for n in names if n in recorded]
    audit = FairnessAudit(pos_label=pos_label, max_gap=max_gap, min_ratio=min_ratio, n_bins=bins)
    result = audit.run(target, X, request.y, sensitive=sensitive)
    result.params.update({"sensitive": columns, "dropped_from_inputs": dropped})
    return result
