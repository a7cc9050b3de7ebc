"""Drift windows on live traffic: inputs, predictions and (when labels arrive) performance.

The gateway feeds every observed row into fixed-size windows and scores each full window
against the deployment's frozen references with :class:`~riskloop.monitor.drift.DataDrift`
(paper 5.1(4): "detect data drift and concept drift"; 2.3.3: a subtle shift in input
statistics may be an attack). Three windows, three alert kinds:

- ``drift``: input features against the training-data profile; alert when the share of
  drifted features reaches the drift engine's ``drift_share`` (PSI >= the policy's
  ``monitoring.drift_alert_psi`` per feature); severity high when the mean PSI reaches
  ``monitoring.drift_block_psi``.
- ``prediction-drift``: the distribution of predicted classes against the model's
  predictions on clean held-out data (PSI on categories).
- ``performance-drift`` (concept drift): accuracy on labelled rows (events that arrive with a
  label) against the held-out accuracy measured at deployment, by
  :class:`~riskloop.monitor.outcomes.PerformanceDrift` (one-sided Fisher exact test).

Windows are counted in rows, not hours, so a burst is scored as soon as it is complete. The
rows of a window that is not yet full live in memory only (a restart starts it afresh);
each window's last result is kept and exported as watcher state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from .drift import DataDrift
from .guard import AlertDraft, Observation
from .outcomes import PREDICTED_CLASS, PerformanceDrift, prediction_frame
from .profile import ReferenceProfile


class _Window:
    """Rows collected until ``size`` are there; ``take`` returns full windows."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self._parts: list[np.ndarray] = []
        self._n = 0
        self.started: datetime | None = None

    def add(self, rows: np.ndarray, at: datetime) -> list[tuple[np.ndarray, datetime | None]]:
        if self._n == 0:
            self.started = at
        self._parts.append(rows)
        self._n += len(rows)
        out = []
        while self._n >= self.size:
            allrows = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
            out.append((allrows[: self.size], self.started))
            rest = allrows[self.size:]
            self._parts = [rest] if len(rest) else []
            self._n = len(rest)
            self.started = at
        return out

    @property
    def pending(self) -> int:
        return self._n


class InputDriftWindow:
    """Input drift of every feature, one window at a time (alert kind ``drift``)."""

    name = "input-drift"
    per_client = False

    def __init__(self, *, profile: ReferenceProfile, window: int, alert_psi: float,
                 block_psi: float) -> None:
        self.profile = profile
        self.columns = list(profile.numeric)
        self.window = _Window(window)
        self.engine = DataDrift(stat="psi", threshold=alert_psi, stats=("psi",))
        self.alert_psi = float(alert_psi)
        self.block_psi = float(block_psi)
        self.last_psi_: dict[str, float] = {}
        self.last_: dict[str, Any] = {}
        self.windows_ = 0

    def observe(self, obs: Observation) -> list[AlertDraft]:
        alerts = []
        for rows, started in self.window.add(obs.flat, obs.at):
            report = self.engine.run(self.profile, np.asarray(rows, dtype=np.float64))
            self.windows_ += 1
            self.last_psi_ = {f.name: float(f.psi or 0.0) for f in report.features}
            mean_psi = float(np.mean(list(self.last_psi_.values()))) if self.last_psi_ else 0.0
            top = sorted(self.last_psi_.items(), key=lambda kv: -kv[1])[:5]
            self.last_ = {"rows": len(rows), "mean_psi": mean_psi,
                          "share_drifted": report.share_drifted, "at": obs.at.isoformat()}
            if report.dataset_drift:
                alerts.append(AlertDraft(
                    kind="drift", severity="high" if mean_psi >= self.block_psi else "medium",
                    threat_id="evasion", client=None,
                    details={"rows": len(rows), "mean_psi": round(mean_psi, 6),
                             "share_drifted": round(report.share_drifted, 4),
                             "alert_psi": self.alert_psi, "block_psi": self.block_psi,
                             "top_features": [{"feature": k, "psi": round(v, 6)} for k, v in top]},
                    window_start=started, window_end=obs.at,
                ))
        return alerts

    def export_state(self) -> dict[str, dict[str, Any]]:
        return {"": {"windows": self.windows_, "last": self.last_, "psi": self.last_psi_}}

    def import_state(self, states: dict[str, dict[str, Any]]) -> None:
        st = states.get("", {})
        self.windows_ = int(st.get("windows", 0))
        self.last_ = dict(st.get("last", {}))
        self.last_psi_ = {str(k): float(v) for k, v in (st.get("psi") or {}).items()}


class PredictionDriftWindow:
    """Drift of the predicted-class distribution (alert kind ``prediction-drift``)."""

    name = "prediction-drift"
    per_client = False

    def __init__(self, *, profile: ReferenceProfile, classes: list[str], window: int,
                 alert_psi: float) -> None:
        self.profile = profile
        self.classes = np.asarray([str(c) for c in classes], dtype=object)
        self.window = _Window(window)
        self.engine = DataDrift(stat="psi", threshold=alert_psi, stats=("psi",))
        self.alert_psi = float(alert_psi)
        self.last_psi_: float | None = None
        self.windows_ = 0

    def observe(self, obs: Observation) -> list[AlertDraft]:
        if obs.predicted is None:
            return []
        alerts = []
        for idx, started in self.window.add(np.asarray(obs.predicted, dtype=np.int64), obs.at):
            labels = self.classes[idx]
            report = self.engine.run(self.profile, prediction_frame(labels))
            f = report.feature(PREDICTED_CLASS)
            self.windows_ += 1
            self.last_psi_ = float(f.psi or 0.0)
            if f.drifted:
                values, counts = np.unique(labels.astype(str), return_counts=True)
                alerts.append(AlertDraft(
                    kind="prediction-drift", severity="medium", threat_id="evasion", client=None,
                    details={"rows": len(labels), "psi": round(self.last_psi_, 6),
                             "alert_psi": self.alert_psi, "unseen": f.unseen,
                             "window_counts": {str(v): int(c) for v, c in zip(values, counts, strict=True)}},
                    window_start=started, window_end=obs.at,
                ))
        return alerts

    def export_state(self) -> dict[str, dict[str, Any]]:
        return {"": {"windows": self.windows_, "psi": self.last_psi_}}

    def import_state(self, states: dict[str, dict[str, Any]]) -> None:
        st = states.get("", {})
        self.windows_ = int(st.get("windows", 0))
        self.last_psi_ = st.get("psi")


class PerformanceWindow:
    """Accuracy on labelled rows against the held-out accuracy (alert ``performance-drift``),
    tested with :class:`~riskloop.monitor.outcomes.PerformanceDrift`."""

    name = "performance-drift"
    per_client = False

    def __init__(self, *, classes: list[str], detector: PerformanceDrift, window: int) -> None:
        self.classes = np.asarray([str(c) for c in classes], dtype=object)
        self.detector = detector
        self.window = _Window(window)
        self.last_: dict[str, Any] = {}

    def observe(self, obs: Observation) -> list[AlertDraft]:
        if obs.labels is None or obs.predicted is None:
            return []
        have = np.flatnonzero([lab is not None for lab in obs.labels])
        if not have.size:
            return []
        pairs = np.stack([self.classes[np.asarray(obs.predicted)[have]],
                          np.asarray([obs.labels[i] for i in have], dtype=object)], axis=1)
        alerts = []
        for window, started in self.window.add(pairs, obs.at):
            res = self.detector.run(window[:, 1].astype(str), window[:, 0].astype(str))
            self.last_ = {**res.as_dict(), "at": obs.at.isoformat()}
            if res.drifted:
                alerts.append(AlertDraft(
                    kind="performance-drift", severity="high", threat_id="data-poisoning",
                    client=None,
                    details={k: (round(v, 6) if isinstance(v, float) else v)
                             for k, v in res.as_dict().items()},
                    window_start=started, window_end=obs.at,
                ))
        return alerts

    def export_state(self) -> dict[str, dict[str, Any]]:
        return {"": {"last": self.last_}}

    def import_state(self, states: dict[str, dict[str, Any]]) -> None:
        self.last_ = dict(states.get("", {}).get("last", {}))
