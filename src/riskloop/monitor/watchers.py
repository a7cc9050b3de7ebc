"""The watchdogs of :mod:`riskloop.monitor.watchdogs` as live watchers of the gateway.

Each adapter feeds one calibrated watchdog from the request stream, keeps its running state
per client (so alerts say who is asking) and exports that state as JSON keyed by client, so
it can be checkpointed in the store's ``watch_states`` table and shared between replicas:

- :class:`OutlierWatcher`: per-client windows of ``window`` rows for the input-outlier
  watchdog (alert ``input-outliers``).
- :class:`ConfidenceWatcher`: the low-confidence CUSUM per client, and a second one over all
  traffic (client ``""``); alert ``low-confidence-spike``.
- :class:`QueryWatcher`: the per-client query-pattern watchdog for extraction and probing
  (alerts ``near-duplicate-queries``, ``boundary-probing``, ``input-space-sweep``,
  ``query-volume``, ``extraction-budget``).
- :class:`DefenceSanitizer` and :class:`AdversarialWatcher`: a per-input adversarial detector
  (feature squeezing) flags rows before routing (alert ``adversarial-input``).
"""

from __future__ import annotations

import base64
import time
from collections import OrderedDict, deque
from typing import Any

import numpy as np

from .guard import AlertDraft, Observation
from .query_watch import QueryPatternWatchdog
from .query_watch import _Client as QueryClient
from .watchdogs import (
    AdversarialDetectorWatchdog,
    Alert,
    ConfidenceSpikeWatchdog,
    InputOutlierWatchdog,
)

MAX_CLIENTS = 10_000


def draft(alert: Alert, *, client: str | None, extra: dict[str, Any] | None = None) -> AlertDraft:
    """A watchdog's alert as the gateway stores it."""
    return AlertDraft(
        kind=alert.kind, severity=str(alert.severity), threat_id=alert.threats[0] if alert.threats else None,
        client=client,
        details={"watchdog": alert.watchdog, "score": _num(alert.score),
                 "threshold": _num(alert.threshold), "detail": alert.detail,
                 "threats": list(alert.threats), "evidence": alert.evidence, **(extra or {})},
    )


def _num(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 6)


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype=np.float32).tobytes()).decode()


def _unb64(text: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.float32).astype(np.float64).reshape(shape)


class _Lru(OrderedDict[str, Any]):
    def touch(self, key: str, default: Any) -> Any:
        if key not in self:
            self[key] = default()
            while len(self) > MAX_CLIENTS:
                self.popitem(last=False)
        self.move_to_end(key)
        return self[key]


class OutlierWatcher:
    """Per-client windows for :class:`InputOutlierWatchdog` (share of outlying rows)."""

    name = "input-outlier"
    per_client = True

    def __init__(self, dog: InputOutlierWatchdog, *, window: int) -> None:
        self.dog = dog
        self.window = int(window)
        self._pending: _Lru = _Lru()
        self._dirty: set[str] = set()

    def observe(self, obs: Observation) -> list[AlertDraft]:
        rows = self._pending.touch(obs.client, list)
        rows.extend(obs.flat)
        self._dirty.add(obs.client)
        alerts = []
        while len(rows) >= self.window:
            chunk = np.asarray(rows[: self.window], dtype=np.float64)
            del rows[: self.window]
            alerts += [draft(a, client=obs.client) for a in self.dog.update(chunk)]
        return alerts

    def export_state(self) -> dict[str, dict[str, Any]]:
        out = {}
        for client in self._dirty:
            rows = self._pending.get(client, [])
            d = self.dog.location_.size
            out[client] = {"rows": len(rows), "pending": _b64(np.asarray(rows).reshape(-1, d)) if rows else ""}
        self._dirty.clear()
        return out

    def import_state(self, states: dict[str, dict[str, Any]]) -> None:
        d = self.dog.location_.size
        for client, st in states.items():
            n = int(st.get("rows", 0))
            self._pending[client] = list(_unb64(st["pending"], (n, d))) if n else []


class ConfidenceWatcher:
    """:class:`ConfidenceSpikeWatchdog` per client (``scope="client"``) or over all traffic
    (``scope="deployment"``, state under client ``""``)."""

    def __init__(self, dog: ConfidenceSpikeWatchdog, *, scope: str = "client") -> None:
        if scope not in ("client", "deployment"):
            raise ValueError(f"scope must be client or deployment, got {scope!r}")
        self.dog = dog
        self.scope = scope
        self.per_client = scope == "client"
        self.name = "confidence-spike" if self.per_client else "confidence-spike-all"
        self._state: _Lru = _Lru()
        self._dirty: set[str] = set()

    def observe(self, obs: Observation) -> list[AlertDraft]:
        if obs.confidence is None:
            return []
        conf = np.asarray(obs.confidence, dtype=np.float64)
        conf = conf[np.isfinite(conf)]
        if not conf.size:
            return []
        key = obs.client if self.per_client else ""
        st = self._state.touch(key, lambda: [0.0, 0])
        self.dog.statistic_, self.dog.seen_ = st
        found = self.dog.update(conf)
        st[0], st[1] = float(self.dog.statistic_), int(self.dog.seen_)
        self._dirty.add(key)
        return [draft(a, client=key or None) for a in found[:1]]

    def export_state(self) -> dict[str, dict[str, Any]]:
        out = {k: {"statistic": self._state[k][0], "seen": self._state[k][1]}
               for k in self._dirty if k in self._state}
        self._dirty.clear()
        return out

    def import_state(self, states: dict[str, dict[str, Any]]) -> None:
        for client, st in states.items():
            self._state[client] = [float(st.get("statistic", 0.0)), int(st.get("seen", 0))]


class QueryWatcher:
    """:class:`QueryPatternWatchdog` on every client's queries (needs the model's answers)."""

    name = "query-pattern"
    per_client = True

    def __init__(self, dog: QueryPatternWatchdog) -> None:
        self.dog = dog
        self._dirty: set[str] = set()

    def observe(self, obs: Observation) -> list[AlertDraft]:
        if obs.proba is None:
            return []
        found = self.dog.update(obs.client, obs.flat, obs.proba, now=time.time())
        self._dirty.add(obs.client)
        return [draft(a, client=obs.client) for a in found]

    def export_state(self) -> dict[str, dict[str, Any]]:
        out = {}
        clients = self.dog._clients  # noqa: SLF001 - the watchdog keeps one history per client
        for client in self._dirty:
            c = clients.get(client)
            if c is None:
                continue
            out[client] = {
                "X": _b64(c.X[: c.filled]), "filled": c.filled, "pos": c.pos, "total": c.total,
                "near": [int(v) for v in c.near], "boundary": [int(v) for v in c.boundary],
                "cells": list(c.cells), "times": list(c.times), "active": sorted(c.active),
            }
        self._dirty.clear()
        return out

    def import_state(self, states: dict[str, dict[str, Any]]) -> None:
        dog = self.dog
        for client, st in states.items():
            c = QueryClient(history=dog.history, dim=dog.location_.size, n_cells=len(dog.centroids_))
            filled = int(st["filled"])
            if filled:
                c.X[:filled] = _unb64(st["X"], (filled, dog.location_.size))
            c.filled, c.pos, c.total = filled, int(st["pos"]), int(st["total"])
            c.near.extend(bool(v) for v in st["near"])
            c.boundary.extend(bool(v) for v in st["boundary"])
            c.cells.extend(int(v) for v in st["cells"])
            for cell in c.cells:
                c.cell_counts[cell] += 1
            c.times = deque(float(t) for t in st["times"])
            c.active = set(st["active"])
            dog._clients[client] = c  # noqa: SLF001


class DefenceSanitizer:
    """Scores every input with the model's adversarial detector before routing."""

    def __init__(self, dog: AdversarialDetectorWatchdog) -> None:
        self.dog = dog
        self.name = dog.detector_name

    def scores(self, X: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.dog.score(X)
        return s, s > self.dog.threshold_


class AdversarialWatcher:
    """``adversarial-input`` when a client's recent inputs hold too many flagged ones.

    Each flagged row already goes to the review queue (:class:`DefenceSanitizer`); at the
    detector's per-input false-positive rate ``p`` some clean rows are flagged too, so the
    alert waits until the last ``window`` rows of one client hold more flagged rows than
    ``Binomial(window, p)`` gives with probability ``alert_fpr``.
    """

    name = "adversarial-detector"
    per_client = True

    def __init__(self, dog: AdversarialDetectorWatchdog, *, window: int = 50,
                 alert_fpr: float = 0.01) -> None:
        from scipy import stats

        self.dog = dog
        self.window = int(window)
        p = min(max(float(getattr(dog, "fpr_", 0.0) or 0.0), float(dog.target_fpr_)), 0.5)
        # smallest k with P(Binomial(window, p) >= k) <= alert_fpr
        self.k_alert = int(stats.binom.isf(alert_fpr, self.window, p)) + 1
        self._recent: _Lru = _Lru()
        self._dirty: set[str] = set()

    def observe(self, obs: Observation) -> list[AlertDraft]:
        if obs.adversarial is None:
            return []
        flags = np.asarray(obs.adversarial) > self.dog.threshold_
        recent = self._recent.touch(obs.client, lambda: deque(maxlen=self.window))
        was_alerting = sum(recent) >= self.k_alert
        recent.extend(bool(f) for f in flags)
        self._dirty.add(obs.client)
        count = sum(recent)
        if count < self.k_alert or was_alerting:
            return []
        hits = np.flatnonzero(flags)
        return [AlertDraft(
            kind="adversarial-input", severity="high", threat_id="evasion", client=obs.client,
            details={"watchdog": self.dog.name, "detector": self.dog.detector_name,
                     "flagged_recent": count, "recent": len(recent), "alert_at": self.k_alert,
                     "row_fpr": round(float(self.dog.fpr_), 6),
                     "threshold": round(float(self.dog.threshold_), 6),
                     "score": round(float(np.max(np.asarray(obs.adversarial))), 6),
                     "rows": hits.tolist()[:20]},
        )]

    def export_state(self) -> dict[str, dict[str, Any]]:
        out = {k: {"recent": [int(v) for v in self._recent[k]]} for k in self._dirty if k in self._recent}
        self._dirty.clear()
        return out

    def import_state(self, states: dict[str, dict[str, Any]]) -> None:
        for client, st in states.items():
            self._recent[client] = deque((bool(v) for v in st.get("recent", [])), maxlen=self.window)
