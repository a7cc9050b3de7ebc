"""Watchdogs: small detectors that run beside the model and raise alerts (paper 5.2.1, 2.3.3).

Each watchdog is fitted on reference data, then calibrated on clean held-out traffic to a
target false-alarm rate: ``calibrate(clean_windows, target_fpr=...)`` sets ``threshold_`` from
every other clean window (a conformal quantile, so the rate holds for exchangeable clean
traffic) and measures the false-positive rate on the remaining windows, stored in ``fpr_``
(the paper's Table 4 "False Positive Rate"). ``update(...)`` returns a list of
:class:`Alert`. State is plain JSON through ``to_dict`` / ``from_dict``.

- :class:`InputOutlierWatchdog`: squared Mahalanobis distance with Ledoit-Wolf shrinkage;
  a window alarms when its share of outlying rows is abnormal.
- :class:`ConfidenceSpikeWatchdog`: Bernoulli CUSUM on "top-class probability below tau".
- :class:`AdversarialDetectorWatchdog`: the hook for a per-input adversarial detector
  (feature squeezing, Xu et al. 2018), calibrated per row.
- :class:`~riskloop.monitor.query_watch.QueryPatternWatchdog`: per-client query patterns.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy import linalg

from ..errors import InputError
from ..findings import Severity

log = logging.getLogger(__name__)


@dataclass
class Alert:
    """One alarm of a watchdog."""

    watchdog: str
    kind: str
    threats: tuple[str, ...]
    severity: Severity
    score: float
    threshold: float
    client: str | None = None
    detail: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = str(self.severity)
        d["threats"] = list(self.threats)
        return d


def conformal_threshold(values: np.ndarray, target_fpr: float, *, what: str) -> float:
    """The ``ceil((n + 1)(1 - fpr))``-th smallest value: a new clean value exceeds it with
    probability at most ``fpr`` when clean values are exchangeable."""
    n = values.size
    k = math.ceil((n + 1) * (1.0 - target_fpr))
    if k > n:
        need = math.ceil(1.0 / target_fpr) - 1
        raise InputError(
            f"{n} clean {what} cannot calibrate a false-alarm rate of {target_fpr}: "
            f"give at least {2 * need} (half set the threshold, half measure the rate)"
        )
    return float(np.sort(values)[k - 1])


def _check_fpr(target_fpr: float) -> None:
    if not 0 < target_fpr < 0.5:
        raise InputError(f"target_fpr must be in (0, 0.5), got {target_fpr}")


def as_rows(X: Any, *, what: str = "inputs") -> np.ndarray:
    """Inputs as a float64 matrix, one row per sample (images are flattened)."""
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise InputError(f"{what} must hold at least one row, got shape {arr.shape}")
    arr = arr.reshape(arr.shape[0], -1)
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contain NaN or infinity: reject them before the watchdog")
    return arr


class Watchdog:
    """Base class: window statistic, calibration and the stored false-positive rate."""

    name: ClassVar[str] = "watchdog"
    threats: ClassVar[tuple[str, ...]] = ()
    access: ClassVar[str] = "black-box"
    unit: ClassVar[str] = "window"

    threshold_: float
    fpr_: float

    def window_statistic(self, window: Any) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def calibrate(self, clean_windows: Sequence[Any], *, target_fpr: float = 0.01) -> Watchdog:
        """Set ``threshold_`` on the even-numbered clean windows, measure ``fpr_`` on the odd."""
        _check_fpr(target_fpr)
        if len(clean_windows) < 4:
            raise InputError("calibration needs clean windows: give at least 4")
        stats = np.array([self.window_statistic(w) for w in clean_windows], dtype=np.float64)
        fit, held = stats[0::2], stats[1::2]
        self.threshold_ = conformal_threshold(fit, target_fpr, what=f"{self.unit}s")
        self.fpr_ = float(np.mean(held > self.threshold_))
        self.target_fpr_ = target_fpr
        self.calibration_windows_ = int(stats.size)
        log.info("%s calibrated: threshold %.4g, measured FPR %.4f on %d held-out %ss",
                 self.name, self.threshold_, self.fpr_, held.size, self.unit)
        return self

    def _require(self, *attrs: str, step: str = "fit") -> None:
        for a in attrs:
            if not hasattr(self, a):
                raise InputError(f"{self.name} watchdog is not ready: call {step}() first")


class InputOutlierWatchdog(Watchdog):
    """Out-of-distribution inputs by squared Mahalanobis distance to the reference.

    The covariance is shrunk towards ``mu * I`` with the Ledoit-Wolf (2004) optimal
    coefficient, so it stays invertible with more features than informative directions
    (constant pixels, collinear columns). Features are standardised by the reference
    standard deviation first (``standardize=True``). A row is an outlier above
    ``row_threshold_``, the ``row_quantile`` of clean scores; a window alarms when its
    share of outliers exceeds ``threshold_`` (paper 2.3.3: "a subtle shift in input
    statistics" as a possible attack).
    """

    name: ClassVar[str] = "input-outlier"
    threats: ClassVar[tuple[str, ...]] = ("evasion", "data-poisoning")

    def __init__(self, *, row_quantile: float = 0.99, standardize: bool = True) -> None:
        if not 0.5 <= row_quantile < 1:
            raise InputError(f"row_quantile must be in [0.5, 1), got {row_quantile}")
        self.row_quantile = row_quantile
        self.standardize = standardize

    def fit(self, X: Any) -> InputOutlierWatchdog:
        A = as_rows(X, what="reference inputs")
        if A.shape[0] < 2:
            raise InputError("the outlier watchdog needs at least 2 reference rows")
        self.location_ = A.mean(axis=0)
        self.scale_ = _robust_scale(A) if self.standardize else np.ones(A.shape[1])
        Z = (A - self.location_) / self.scale_
        cov, self.shrinkage_ = ledoit_wolf(Z)
        self.precision_ = linalg.pinvh(cov)
        return self

    def score(self, X: Any) -> np.ndarray:
        """Squared Mahalanobis distance of each row."""
        self._require("precision_")
        A = as_rows(X)
        if A.shape[1] != self.location_.size:
            raise InputError(
                f"inputs have {A.shape[1]} features, the watchdog was fitted on "
                f"{self.location_.size}"
            )
        Z = (A - self.location_) / self.scale_
        return np.einsum("ij,jk,ik->i", Z, self.precision_, Z)

    def calibrate(self, clean_windows: Sequence[Any], *, target_fpr: float = 0.01) -> InputOutlierWatchdog:
        scores = [self.score(w) for w in clean_windows]
        fit_rows = np.concatenate(scores[0::2])
        held_rows = np.concatenate(scores[1::2]) if len(scores) > 1 else fit_rows
        self.row_threshold_ = float(np.quantile(fit_rows, self.row_quantile))
        self.row_fpr_ = float(np.mean(held_rows > self.row_threshold_))
        super().calibrate(clean_windows, target_fpr=target_fpr)
        return self

    def flags(self, X: Any) -> np.ndarray:
        """Per-row outlier flags (for a gateway's per-request decision)."""
        self._require("row_threshold_", step="calibrate")
        return self.score(X) > self.row_threshold_

    def window_statistic(self, window: Any) -> float:
        """Mean of ``log(1 + d^2)`` over the window: moves with a shift of every row and,
        damped by the log, with a few far outliers."""
        return float(np.mean(np.log1p(self.score(window))))

    def update(self, window: Any) -> list[Alert]:
        self._require("threshold_", step="calibrate")
        scores = self.score(window)
        stat = float(np.mean(np.log1p(scores)))
        if stat <= self.threshold_:
            return []
        flagged = scores > self.row_threshold_
        share = float(flagged.mean())
        top = np.argsort(-scores)[:5]
        return [Alert(
            watchdog=self.name, kind="input-outliers", threats=self.threats,
            severity=Severity.HIGH if share >= 0.5 else Severity.MEDIUM,
            score=stat, threshold=self.threshold_,
            detail=(f"inputs sit far from the reference (mean log distance {stat:.2f} > "
                    f"{self.threshold_:.2f}); {share:.0%} of {len(scores)} are outliers, clean "
                    f"traffic {1 - self.row_quantile:.0%}: out-of-distribution or adversarial"),
            evidence={"rows": int(len(scores)), "outliers": int(flagged.sum()),
                      "outlier_share": share, "top_rows": top.tolist(),
                      "top_scores": scores[top].round(3).tolist()},
        )]

    def to_dict(self) -> dict[str, Any]:
        self._require("precision_")
        return {
            "name": self.name, "row_quantile": self.row_quantile, "standardize": self.standardize,
            "location": self.location_.tolist(), "scale": self.scale_.tolist(),
            "precision": self.precision_.tolist(), "shrinkage": self.shrinkage_,
            **{k: getattr(self, k + "_", None) for k in
               ("row_threshold", "row_fpr", "threshold", "fpr", "target_fpr")},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputOutlierWatchdog:
        obj = cls(row_quantile=d["row_quantile"], standardize=d["standardize"])
        obj.location_ = np.asarray(d["location"])
        obj.scale_ = np.asarray(d["scale"])
        obj.precision_ = np.asarray(d["precision"])
        obj.shrinkage_ = float(d["shrinkage"])
        for k in ("row_threshold", "row_fpr", "threshold", "fpr", "target_fpr"):
            if d.get(k) is not None:
                setattr(obj, k + "_", float(d[k]))
        return obj


def _robust_scale(A: np.ndarray) -> np.ndarray:
    """Per-feature std, floored at 5% of the median std so constant features (always-dark
    pixels) do not turn any small change into an infinite distance."""
    sd = A.std(axis=0)
    floor = max(0.05 * float(np.median(sd)), 1e-12)
    return np.maximum(sd, floor)


def ledoit_wolf(Z: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance of centred-or-not rows ``Z`` and its shrinkage.

    Ledoit & Wolf (2004), "A well-conditioned estimator for large-dimensional covariance
    matrices": ``(1 - s) S + s mu I`` with ``mu = tr(S) / p`` and
    ``s = min(beta, delta) / delta``, ``delta = ||S - mu I||_F^2 / p`` and
    ``beta = (sum_k ||x_k x_k^T - S||_F^2 / n) / (n p)``.
    """
    X = Z - Z.mean(axis=0)
    n, p = X.shape
    S = X.T @ X / n
    mu = float(np.trace(S)) / p
    X2 = X**2
    delta_raw = float(np.sum(S**2))
    beta_raw = float(np.sum(X2.T @ X2)) / n**2
    beta = (beta_raw - delta_raw / n) / p
    delta = (delta_raw - 2.0 * mu * np.trace(S) + p * mu**2) / p
    beta = min(beta, delta)
    s = 0.0 if beta == 0 else beta / delta
    cov = (1.0 - s) * S
    cov.flat[:: p + 1] += s * mu
    return cov, float(s)


def top_probability(scores: Any) -> np.ndarray:
    """Top-class probabilities from rows of class probabilities (or pass 1-D through)."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr.max(axis=1)
    if arr.ndim != 1 or not np.isfinite(arr).all():
        raise InputError("confidences must be finite: 1-D top-class probabilities or 2-D rows")
    return arr


class ConfidenceSpikeWatchdog(Watchdog):
    """A spike of low-confidence predictions, by a Bernoulli CUSUM (paper 2.3.3, 5.1(4)).

    ``x_t = 1`` when the top-class probability is below ``tau`` (``low_confidence``, or the
    ``baseline_rate`` quantile of reference confidences). With the clean rate ``p0`` and
    the rate to detect ``p1 = rate_ratio * p0``, the statistic
    ``S_t = max(0, S_{t-1} + x_t ln(p1/p0) + (1 - x_t) ln((1-p1)/(1-p0)))`` (Page 1954;
    Reynolds & Stoumbos 1999) alarms at ``S_t > threshold_`` and restarts at 0. ``fpr_`` is
    the share of clean windows (streams as long as the calibration windows) with an alarm.
    """

    name: ClassVar[str] = "confidence-spike"
    threats: ClassVar[tuple[str, ...]] = ("evasion", "data-poisoning")

    def __init__(self, *, low_confidence: float | None = None, baseline_rate: float = 0.1,
                 rate_ratio: float = 3.0) -> None:
        if rate_ratio <= 1:
            raise InputError(f"rate_ratio must be > 1, got {rate_ratio}")
        self.low_confidence = low_confidence
        self.baseline_rate = baseline_rate
        self.rate_ratio = rate_ratio

    def fit(self, confidences: Any) -> ConfidenceSpikeWatchdog:
        conf = top_probability(confidences)
        tau = (self.low_confidence if self.low_confidence is not None
               else float(np.quantile(conf, self.baseline_rate)))
        p0 = float(np.clip(np.mean(conf < tau), 1e-3, 0.5))
        p1 = min(0.99, self.rate_ratio * p0)
        self.tau_, self.p0_, self.p1_ = tau, p0, p1
        self.w_low_ = math.log(p1 / p0)
        self.w_high_ = math.log((1 - p1) / (1 - p0))
        self.reset()
        return self

    def reset(self) -> None:
        self.statistic_ = 0.0
        self.seen_ = 0

    def _path(self, conf: np.ndarray, start: float) -> np.ndarray:
        w = np.where(conf < self.tau_, self.w_low_, self.w_high_)
        s = np.empty(w.size)
        acc = start
        for i, wi in enumerate(w):
            acc = max(0.0, acc + wi)
            s[i] = acc
        return s

    def window_statistic(self, window: Any) -> float:
        self._require("tau_")
        return float(self._path(top_probability(window), 0.0).max(initial=0.0))

    def update(self, confidences: Any) -> list[Alert]:
        self._require("threshold_", step="calibrate")
        conf = top_probability(confidences)
        alerts: list[Alert] = []
        acc = self.statistic_
        w = np.where(conf < self.tau_, self.w_low_, self.w_high_)
        for i, wi in enumerate(w):
            acc = max(0.0, acc + wi)
            if acc > self.threshold_:
                lo = max(0, i - 49)
                rate = float(np.mean(conf[lo : i + 1] < self.tau_))
                alerts.append(Alert(
                    watchdog=self.name, kind="low-confidence-spike", threats=self.threats,
                    severity=Severity.MEDIUM, score=acc, threshold=self.threshold_,
                    detail=(f"low-confidence predictions (p_top < {self.tau_:.3f}) at "
                            f"{rate:.0%} of recent traffic, clean rate {self.p0_:.0%}"),
                    evidence={"position": self.seen_ + i, "recent_low_rate": rate,
                              "tau": self.tau_, "p0": self.p0_},
                ))
                acc = 0.0
        self.statistic_ = acc
        self.seen_ += int(conf.size)
        return alerts

    def to_dict(self) -> dict[str, Any]:
        self._require("tau_")
        return {"name": self.name, "low_confidence": self.low_confidence,
                "baseline_rate": self.baseline_rate, "rate_ratio": self.rate_ratio,
                **{k: getattr(self, k + "_", None) for k in
                   ("tau", "p0", "p1", "threshold", "fpr", "target_fpr", "statistic", "seen")}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConfidenceSpikeWatchdog:
        obj = cls(low_confidence=d["low_confidence"], baseline_rate=d["baseline_rate"],
                  rate_ratio=d["rate_ratio"])
        obj.tau_, obj.p0_, obj.p1_ = float(d["tau"]), float(d["p0"]), float(d["p1"])
        obj.w_low_ = math.log(obj.p1_ / obj.p0_)
        obj.w_high_ = math.log((1 - obj.p1_) / (1 - obj.p0_))
        for k in ("threshold", "fpr", "target_fpr", "statistic"):
            if d.get(k) is not None:
                setattr(obj, k + "_", float(d[k]))
        obj.seen_ = int(d.get("seen") or 0)
        obj.statistic_ = float(d.get("statistic") or 0.0)
        return obj


class AdversarialDetectorWatchdog(Watchdog):
    """The hook for a per-input adversarial detector supplied by a mitigation.

    ``detector`` is a callable (or an object with ``score``) mapping a batch of inputs to one
    score per input, larger meaning more suspicious: e.g. feature squeezing's L1 distance
    between the model's outputs on ``x`` and on its squeezed copy (Xu, Evans & Qi, NDSS
    2018). Calibration is per input: ``threshold_`` is set on the rows of every other clean
    window and ``fpr_`` is the share of the other clean rows above it.
    """

    name: ClassVar[str] = "adversarial-detector"
    threats: ClassVar[tuple[str, ...]] = ("evasion",)
    unit: ClassVar[str] = "input"

    def __init__(self, *, detector: Callable[[np.ndarray], np.ndarray] | Any,
                 detector_name: str = "custom") -> None:
        fn = detector if callable(detector) else getattr(detector, "score", None)
        if fn is None:
            raise InputError("detector must be callable or have a score(X) method")
        self._fn: Callable[[np.ndarray], np.ndarray] = fn
        self.detector_name = detector_name

    def score(self, X: Any) -> np.ndarray:
        s = np.asarray(self._fn(X), dtype=np.float64).reshape(-1)
        n = len(X)
        if s.size != n or not np.isfinite(s).all():
            raise InputError(f"detector '{self.detector_name}' must return one finite score per input")
        return s

    def calibrate(self, clean_windows: Sequence[Any], *,
                  target_fpr: float = 0.05) -> AdversarialDetectorWatchdog:
        _check_fpr(target_fpr)
        scores = [self.score(w) for w in clean_windows]
        if len(scores) < 2:
            raise InputError("calibration needs at least 2 clean windows")
        fit, held = np.concatenate(scores[0::2]), np.concatenate(scores[1::2])
        self.threshold_ = conformal_threshold(fit, target_fpr, what="inputs")
        self.fpr_ = float(np.mean(held > self.threshold_))
        self.target_fpr_ = target_fpr
        return self

    def update(self, X: Any) -> list[Alert]:
        self._require("threshold_", step="calibrate")
        s = self.score(X)
        hits = np.flatnonzero(s > self.threshold_)
        return [Alert(
            watchdog=self.name, kind="adversarial-input", threats=self.threats,
            severity=Severity.HIGH, score=float(s[i]), threshold=self.threshold_,
            detail=f"detector '{self.detector_name}' flags input {int(i)} as adversarial",
            evidence={"row": int(i), "detector": self.detector_name},
        ) for i in hits]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "detector": self.detector_name,
                **{k: getattr(self, k + "_", None) for k in ("threshold", "fpr", "target_fpr")}}
