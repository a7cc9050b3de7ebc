"""What a deployment freezes at deploy time, and the guard built from it at serve time.

:func:`build_config` runs once, when a deployment is created:

- the drift reference profile of the training (reference) data, its features named
  ``x0..x{d-1}`` over the flattened inputs;
- the model's predictions and accuracy on clean held-out data (prediction and performance
  drift references);
- every watchdog fitted on the reference and calibrated on clean held-out traffic to a target
  false-alarm rate, with the measured rate stored (paper Table 4, False Positive Rate). The
  policy's ``monitoring.max_defence_fpr`` is shared evenly between the watchdogs. Calibration
  windows are resampled from the held-out rows (seeded), because a conformal threshold at
  rate ``a`` needs about ``2 / a`` clean windows;
- the query-pattern watchdog's extraction budget from the newest extraction assessment of
  the model, when there is one (the queries a surrogate needed to reach the policy's
  ``rules.extraction.max_fidelity``);
- the model's adversarial detector (feature squeezing) when the version carries one.

:func:`build_guard` turns the stored config back into a running :class:`Guard`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .fallback import FallbackRules
from .guard import Guard
from .outcomes import PerformanceDrift, prediction_profile
from .profile import ReferenceProfile
from .query_watch import FEATURES as QUERY_SIGNALS
from .query_watch import QueryPatternWatchdog
from .watchdogs import AdversarialDetectorWatchdog, ConfidenceSpikeWatchdog, InputOutlierWatchdog
from .watchers import (
    AdversarialWatcher,
    ConfidenceWatcher,
    DefenceSanitizer,
    OutlierWatcher,
    QueryWatcher,
)
from .windows import InputDriftWindow, PerformanceWindow, PredictionDriftWindow

log = logging.getLogger(__name__)

DEFAULT_REVIEW_BELOW = 0.6
DEFAULTS: dict[str, int] = {
    "drift_window": 500,  # rows per input / prediction drift window
    "performance_window": 100,  # labelled rows per performance window
    "outlier_window": 50,  # rows per client window of the outlier watchdog
    "confidence_window": 500,  # rows per calibration stream of the confidence CUSUM
    "query_history": 100,  # queries per client the query-pattern watchdog remembers
    "calibration_windows": 200,  # resampled clean windows per watchdog
}
MIN_HOLDOUT = 40


def split_holdout(X: np.ndarray, y: np.ndarray, *, random_state: int, fraction: float = 0.25
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reference and held-out parts of one dataset (stratified when every class can be)."""
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(np.asarray(y).astype(str), return_counts=True)
    strat = y if counts.min() >= 2 else None
    X_ref, X_hold, y_ref, y_hold = train_test_split(X, y, test_size=fraction,
                                                    random_state=random_state, stratify=strat)
    return X_ref, X_hold, y_ref, y_hold


def policy_thresholds(resolved: Any) -> dict[str, Any]:
    """The monitoring thresholds of the policy as it applies to this model."""
    def get(key: str, default: Any) -> Any:
        try:
            return resolved.get(key)
        except KeyError:
            return default

    return {
        "name": resolved.policy.name, "digest": resolved.policy.digest,
        "review_below": float(get("monitoring.review_confidence", DEFAULT_REVIEW_BELOW)),
        "drift_alert_psi": float(get("monitoring.drift_alert_psi", 0.1)),
        "drift_block_psi": float(get("monitoring.drift_block_psi", 0.25)),
        "max_defence_fpr": float(get("monitoring.max_defence_fpr", 0.05)),
        "max_extraction_fidelity": float(get("rules.extraction.max_fidelity", 0.9)),
        "auto_contain": bool(get("monitoring.auto_contain", True)),
        "contain_mode": str(get("monitoring.contain_mode", "fallback")),
    }


def _windows(X: np.ndarray, size: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [X[rng.choice(len(X), size=size, replace=size > len(X))] for _ in range(count)]


def build_config(
    *, target: Any, X_ref: np.ndarray, X_hold: np.ndarray, y_hold: np.ndarray, policy: Any,
    model_path: Path, random_state: int = 0, drift_window: int | None = None,
    extraction_queries: int | None = None,
) -> dict[str, Any]:
    """Profile, reference outcomes and calibrated watchdogs of a new deployment (JSON)."""
    from ..targets.base import encode_labels

    if len(X_hold) < MIN_HOLDOUT:
        raise InputError(
            f"{len(X_hold)} held-out rows cannot calibrate the watchdogs: give at least "
            f"{MIN_HOLDOUT} clean rows the model was not trained on (--holdout)"
        )
    rng = np.random.default_rng(random_state)
    spec = target.input_spec
    classes = [str(c) for c in target.classes]
    pol = policy_thresholds(policy)
    sizes = dict(DEFAULTS)
    if drift_window is not None:
        if drift_window < 50:
            raise InputError(f"--window {drift_window} is too small for drift: use at least 50 rows")
        sizes["drift_window"] = int(drift_window)
    flat_ref = X_ref.reshape(len(X_ref), -1).astype(np.float64)
    flat_hold = X_hold.reshape(len(X_hold), -1).astype(np.float64)
    d = flat_ref.shape[1]
    profile = ReferenceProfile.fit(flat_ref, n_bins=10, sample_size=2000,
                                   source={"rows": len(flat_ref)})
    proba_hold = np.asarray(target.predict_proba(X_hold), dtype=np.float64)
    pred_hold = proba_hold.argmax(axis=1)
    conf_hold = proba_hold.max(axis=1)
    y_idx = encode_labels(y_hold, tuple(classes), where="held-out labels")
    perf = PerformanceDrift().fit(np.asarray(classes)[y_idx], np.asarray(classes)[pred_hold])
    pred_profile = prediction_profile(np.asarray(classes, dtype=object)[pred_hold].astype(str))
    n_dogs = 4
    per_fpr = pol["max_defence_fpr"] / n_dogs
    n_win = sizes["calibration_windows"]
    watchdogs: dict[str, Any] = {}

    outlier = InputOutlierWatchdog().fit(flat_ref)
    outlier.calibrate(_windows(flat_hold, sizes["outlier_window"], n_win, rng), target_fpr=per_fpr)
    watchdogs["input-outlier"] = {"state": outlier.to_dict(), "unit": "window",
                                  "window": sizes["outlier_window"]}

    conf = ConfidenceSpikeWatchdog().fit(conf_hold)
    conf.calibrate(_windows(conf_hold, sizes["confidence_window"], n_win, rng), target_fpr=per_fpr)
    conf.reset()
    watchdogs["confidence-spike"] = {"state": conf.to_dict(), "unit": "window",
                                     "window": sizes["confidence_window"]}

    proba_ref = np.asarray(target.predict_proba(X_ref), dtype=np.float64)
    history = sizes["query_history"]
    # images: pixels share one scale, and standardising near-constant pixels magnifies noise
    query = QueryPatternWatchdog(history=history, standardize=spec.kind != "image",
                                 random_state=random_state).fit(flat_ref, proba_ref)
    # a clean session as long as the watchdog's memory, so coverage and shares reach their
    # steady state; enough sessions for a conformal threshold per signal (Bonferroni)
    sessions = []
    n_sessions = max(n_win, int(np.ceil(2 * len(QUERY_SIGNALS) / per_fpr)) + 2)
    for _ in range(n_sessions):
        idx = rng.choice(len(flat_hold), size=history, replace=history > len(flat_hold))
        sessions.append((flat_hold[idx], proba_hold[idx]))
    query.calibrate(sessions, target_fpr=per_fpr, extraction_queries=extraction_queries)
    watchdogs["query-pattern"] = {"state": query.to_dict(), "unit": "session", "window": history}

    defence = load_defence(model_path, target)
    if defence is not None:
        adv = AdversarialDetectorWatchdog(detector=defence["score"], detector_name=defence["name"])
        chunks = np.array_split(np.arange(len(X_hold)), 8)
        adv.calibrate([X_hold[c] for c in chunks], target_fpr=per_fpr)
        watchdogs["adversarial-detector"] = {
            "state": adv.to_dict(), "unit": "input", "defence": defence["source"],
            "defence_threshold": getattr(defence["detector"], "threshold", None)}
    return {
        "classes": classes,
        "input": {**spec.as_dict(), "n_features": d,
                  "feature_names": list(spec.feature_names) if spec.feature_names else None},
        "policy": pol,
        "sizes": sizes,
        "reference": {"rows": len(flat_ref), "profile": profile.to_dict()},
        "outcomes": {"rows": len(X_hold), "accuracy": float(np.mean(pred_hold == y_idx)),
                     "prediction_profile": pred_profile.to_dict(), "performance": perf.to_dict(),
                     "low_confidence_share": float(np.mean(conf_hold < pol["review_below"]))},
        "watchdogs": watchdogs,
        "extraction_queries": extraction_queries,
        "warnings": [],
    }



def calibration_summary(config: dict[str, Any]) -> dict[str, Any]:
    """Per watchdog: threshold, target and measured false-positive rate, and its unit."""
    out = {}
    for name, w in (config.get("watchdogs") or {}).items():
        st = w.get("state", {})
        out[name] = {"threshold": st.get("threshold"), "target_fpr": st.get("target_fpr"),
                     "fpr": st.get("fpr"), "unit": w.get("unit")}
    return out


def load_defence(model_path: Path, target: Any) -> dict[str, Any] | None:
    """The model version's adversarial detector (``defence.json`` of feature squeezing)."""
    path = Path(model_path) / "defence.json"
    if not Path(model_path).is_dir() or not path.exists():
        return None
    try:
        from ..mitigate.feature_squeezing import FeatureSqueezingDetector
    except ImportError:  # the mitigation is not installed in this build
        log.warning("%s exists but feature squeezing is not available: no adversarial detector", path)
        return None
    detector = FeatureSqueezingDetector.from_json(path.read_text(), target=target)
    return {"score": detector.score, "name": getattr(detector, "name", "feature-squeezing"),
            "source": str(path), "detector": detector}


def build_guard(
    *, name: str, deployment_id: int, mode: str, config: dict[str, Any],
    rules: dict[str, Any] | None, target: Any, model_path: Path, cooldown_s: float = 60.0,
) -> Guard:
    """A running guard from a stored deployment."""
    classes = config["classes"]
    sizes = config["sizes"]
    pol = config["policy"]
    profile = ReferenceProfile.from_dict(config["reference"]["profile"])
    outcomes = config["outcomes"]
    watchers: list[Any] = [
        InputDriftWindow(profile=profile, window=sizes["drift_window"],
                         alert_psi=pol["drift_alert_psi"], block_psi=pol["drift_block_psi"]),
        PredictionDriftWindow(profile=ReferenceProfile.from_dict(outcomes["prediction_profile"]),
                              classes=classes, window=sizes["drift_window"],
                              alert_psi=pol["drift_alert_psi"]),
        PerformanceWindow(classes=classes, detector=PerformanceDrift.from_dict(outcomes["performance"]),
                          window=sizes["performance_window"]),
    ]
    dogs = config["watchdogs"]
    if "input-outlier" in dogs:
        watchers.append(OutlierWatcher(InputOutlierWatchdog.from_dict(dogs["input-outlier"]["state"]),
                                       window=dogs["input-outlier"]["window"]))
    if "confidence-spike" in dogs:
        for scope in ("client", "deployment"):
            dog = ConfidenceSpikeWatchdog.from_dict(dogs["confidence-spike"]["state"])
            watchers.append(ConfidenceWatcher(dog, scope=scope))
    if "query-pattern" in dogs:
        watchers.append(QueryWatcher(QueryPatternWatchdog.from_dict(dogs["query-pattern"]["state"])))
    sanitizer = None
    if "adversarial-detector" in dogs:
        defence = load_defence(model_path, target)
        if defence is not None:
            st = dogs["adversarial-detector"]["state"]
            adv = AdversarialDetectorWatchdog(detector=defence["score"], detector_name=st["detector"])
            adv.threshold_, adv.fpr_ = float(st["threshold"]), float(st["fpr"])
            adv.target_fpr_ = float(st["target_fpr"])
            sanitizer = DefenceSanitizer(adv)
            watchers.append(AdversarialWatcher(adv))
    bound = None
    if rules:
        inp = config["input"]
        bound = FallbackRules.from_dict(rules, where=rules.get("source", "<stored rules>")).bind(
            n_features=inp["n_features"], feature_names=inp.get("feature_names"))
    return Guard(name=name, deployment_id=deployment_id, mode=mode, target=target,
                 classes=classes, input_spec=target.input_spec, rules=bound,
                 review_below=pol["review_below"], watchers=watchers, sanitizer=sanitizer,
                 cooldown_s=cooldown_s)


def extraction_budget(session: Any, mv: Any, *, max_fidelity: float) -> int | None:
    """Queries the newest extraction assessment needed to reach ``max_fidelity`` (or None)."""
    from sqlalchemy import select

    from ..store.models import AssessmentRun

    run = session.execute(
        select(AssessmentRun).where(AssessmentRun.model_id == mv.id,
                                    AssessmentRun.suite == "extraction",
                                    AssessmentRun.model_digest == mv.digest)
        .order_by(AssessmentRun.id.desc()).limit(1)
    ).scalar_one_or_none()
    if run is None:
        return None
    curve = (run.metrics or {}).get("fidelity_curve") or []
    hits = [int(p["budget"]) for p in curve
            if p.get("fidelity") is not None and float(p["fidelity"]) >= max_fidelity]
    return min(hits) if hits else None
