"""Per-client query patterns: the watchdog for model extraction and black-box probing.

Paper 3.2.2 (model extraction: "querying the API extensively to train a replica") and 5.2.1
(watchdog models). No drift tool watches *who* is asking; this one keeps, per client, its
last ``history`` queries and four signals:

- ``volume``: queries in the last ``period`` seconds (extraction needs many queries);
- ``near_duplicates``: share of queries within ``radius`` of an earlier query of the same
  client (synthetic augmentation around seeds, PRADA's observation, Juuti et al. 2019;
  decision-based evasion such as HopSkipJump also walks in tiny steps);
- ``boundary``: share of queries whose top-2 probability margin is below ``margin``
  (boundary-hugging: decision-based attacks and active-learning extraction live there);
- ``coverage``: share of the reference's input cells (k-means cells of the reference)
  the client has visited (a sweep of the input space).

Thresholds are calibrated per signal on clean client sessions (Bonferroni: each signal at
``target_fpr / 4``); ``fpr_`` is the measured share of held-out clean sessions with any
alert. With the extraction assessment's number of queries for a good replica,
``calibrate(..., extraction_queries=N)`` adds an alert once a client has made
``budget_share * N`` queries.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError
from ..findings import Severity
from .watchdogs import Alert, Watchdog, _check_fpr, _robust_scale, as_rows, conformal_threshold

log = logging.getLogger(__name__)

FEATURES = ("volume", "near_duplicates", "boundary", "coverage")
_KIND = {"volume": "query-volume", "near_duplicates": "near-duplicate-queries",
         "boundary": "boundary-probing", "coverage": "input-space-sweep"}
_THREATS = {"volume": ("model-extraction",),
            "near_duplicates": ("model-extraction", "evasion"),
            "boundary": ("evasion", "model-extraction"),
            "coverage": ("model-extraction",)}


@dataclass
class _Client:
    history: int
    dim: int
    n_cells: int
    X: np.ndarray = field(init=False)
    filled: int = 0
    pos: int = 0
    total: int = 0
    near: deque[bool] = field(init=False)
    boundary: deque[bool] = field(init=False)
    cells: deque[int] = field(init=False)
    times: deque[float] = field(default_factory=deque)
    active: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.X = np.zeros((self.history, self.dim))
        self.near = deque(maxlen=self.history)
        self.boundary = deque(maxlen=self.history)
        self.cells = deque(maxlen=self.history)
        self.cell_counts = np.zeros(self.n_cells, dtype=np.int64)


def margins(proba: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability of each row."""
    part = np.partition(proba, -2, axis=1)
    return part[:, -1] - part[:, -2]


class QueryPatternWatchdog(Watchdog):
    """Extraction- and probing-style query patterns per client (see the module docstring)."""

    name: ClassVar[str] = "query-pattern"
    threats: ClassVar[tuple[str, ...]] = ("model-extraction", "evasion")
    unit: ClassVar[str] = "session"

    def __init__(self, *, history: int = 200, period: float = 60.0, min_queries: int = 20,
                 radius: float | None = None, margin: float | None = None,
                 n_cells: int = 32, dup_quantile: float = 0.05, boundary_quantile: float = 0.05,
                 standardize: bool = True, max_clients: int = 10_000,
                 random_state: int = 0) -> None:
        if history < min_queries or min_queries < 2:
            raise InputError("need 2 <= min_queries <= history")
        self.history, self.period, self.min_queries = history, period, min_queries
        self.radius, self.margin, self.n_cells = radius, margin, n_cells
        self.dup_quantile, self.boundary_quantile = dup_quantile, boundary_quantile
        self.standardize = standardize
        self.max_clients, self.random_state = max_clients, random_state
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    # -- fit / calibrate ----------------------------------------------------------------
    def fit(self, X: Any, proba: Any) -> QueryPatternWatchdog:
        """Learn scale, near-duplicate radius, boundary margin and cells from reference data."""
        from sklearn.cluster import KMeans

        A = as_rows(X, what="reference inputs")
        P = as_rows(proba, what="reference probabilities")
        if P.shape[0] != A.shape[0] or P.shape[1] < 2:
            raise InputError("reference probabilities need one row per input and >= 2 classes")
        rng = np.random.default_rng(self.random_state)
        self.location_ = A.mean(axis=0)
        self.scale_ = _robust_scale(A) if self.standardize else np.ones(A.shape[1])
        Z = (A - self.location_) / self.scale_
        sub = Z[rng.permutation(len(Z))[:2000]]
        d2 = (sub**2).sum(1)[:, None] + (sub**2).sum(1)[None, :] - 2 * sub @ sub.T
        np.fill_diagonal(d2, np.inf)
        d2[d2 <= 1e-12] = np.inf  # exact duplicates in the reference say nothing of spacing
        nn = np.sqrt(np.maximum(d2.min(axis=1), 0))
        nn = nn[np.isfinite(nn)]
        self.radius_ = float(self.radius if self.radius is not None
                             else np.quantile(nn, self.dup_quantile))
        self.margin_ = float(self.margin if self.margin is not None
                             else np.quantile(margins(P), self.boundary_quantile))
        k = min(self.n_cells, len(sub))
        km = KMeans(n_clusters=k, n_init=3, random_state=self.random_state).fit(sub)
        self.centroids_ = km.cluster_centers_
        self._clients.clear()
        return self

    def session_statistics(self, session: Sequence[Any]) -> np.ndarray:
        """Per-signal maxima over one client session ``(X, proba[, times])``."""
        self._require("centroids_")
        X, proba, times = self._unpack(session)
        state = self._new_client()
        peak = np.zeros(len(FEATURES))
        for i in range(len(X)):
            vals = self._step(state, X[i], proba[i], float(times[i]) if times is not None else 0.0)
            if times is None:
                vals[0] = 0.0
            peak = np.maximum(peak, vals)
        return peak

    def calibrate(self, clean_windows: Sequence[Any], *, target_fpr: float = 0.05,
                  extraction_queries: int | None = None,
                  budget_share: float = 0.5) -> QueryPatternWatchdog:
        """Calibrate each signal on clean sessions (tuples ``(X, proba[, times])``)."""
        _check_fpr(target_fpr)
        if len(clean_windows) < 4:
            raise InputError("calibration needs clean sessions: give at least 4")
        stats = np.array([self.session_statistics(s) for s in clean_windows])
        fit, held = stats[0::2], stats[1::2]
        per = target_fpr / len(FEATURES)
        thresholds = [conformal_threshold(fit[:, j], per, what="sessions")
                      for j in range(len(FEATURES))]
        self.thresholds_ = dict(zip(FEATURES, thresholds, strict=True))
        if all(self._unpack(s)[2] is None for s in clean_windows):
            self.thresholds_["volume"] = float("inf")  # no timestamps: volume not calibrated
        self.threshold_ = max(v for v in self.thresholds_.values())
        hit = (held > np.array([self.thresholds_[f] for f in FEATURES])).any(axis=1)
        self.fpr_ = float(hit.mean())
        self.target_fpr_ = target_fpr
        self.budget_ = (float(budget_share * extraction_queries)
                        if extraction_queries else None)
        log.info("query watchdog calibrated: %s, measured FPR %.3f", self.thresholds_, self.fpr_)
        return self

    # -- streaming ----------------------------------------------------------------------
    def update(self, client: str, X: Any, proba: Any, *, now: float | None = None) -> list[Alert]:
        """Record a batch of queries of ``client`` and return the alerts they raise."""
        self._require("thresholds_", step="calibrate")
        A = as_rows(X)
        P = as_rows(proba, what="probabilities")
        if P.shape[0] != A.shape[0]:
            raise InputError(f"{A.shape[0]} inputs but {P.shape[0]} probability rows")
        t = time.monotonic() if now is None else float(now)
        state = self._clients.get(client)
        if state is None:
            state = self._new_client()
            self._clients[client] = state
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
        self._clients.move_to_end(client)
        alerts: list[Alert] = []
        for i in range(len(A)):
            vals = self._step(state, A[i], P[i], t)
            for j, feat in enumerate(FEATURES):
                above = vals[j] > self.thresholds_[feat]
                if above and feat not in state.active:
                    state.active.add(feat)
                    alerts.append(self._alert(client, feat, float(vals[j]), state))
                elif not above:
                    state.active.discard(feat)
            if self.budget_ and state.total >= self.budget_ and "budget" not in state.active:
                state.active.add("budget")
                alerts.append(Alert(
                    watchdog=self.name, kind="extraction-budget", threats=("model-extraction",),
                    severity=Severity.HIGH, score=float(state.total), threshold=self.budget_,
                    client=client,
                    detail=(f"client made {state.total} queries, {self.budget_:.0f} is half of "
                            "what the extraction assessment needed for a good replica"),
                    evidence={"queries": state.total}))
        return alerts

    def client_features(self, client: str) -> dict[str, float]:
        """The current value of every signal for one client."""
        state = self._clients.get(client)
        if state is None:
            raise InputError(f"no queries recorded for client '{client}'")
        return dict(zip(FEATURES, self._values(state, state.times[-1] if state.times else 0.0),
                        strict=True))

    # -- internals ----------------------------------------------------------------------
    def _unpack(self, session: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if len(session) not in (2, 3):
            raise InputError("a client session is (inputs, probabilities) or (..., times)")
        X = as_rows(session[0])
        P = as_rows(session[1], what="probabilities")
        times = np.asarray(session[2], dtype=np.float64) if len(session) == 3 else None
        if P.shape[0] != X.shape[0] or (times is not None and times.shape != (X.shape[0],)):
            raise InputError("session inputs, probabilities and times must have one row each")
        return X, P, times

    def _new_client(self) -> _Client:
        return _Client(history=self.history, dim=self.location_.size,
                       n_cells=len(self.centroids_))

    def _step(self, c: _Client, x: np.ndarray, p: np.ndarray, t: float) -> np.ndarray:
        z = (x - self.location_) / self.scale_
        if c.filled:
            d2 = ((c.X[: c.filled] - z) ** 2).sum(axis=1)
            near = bool(d2.min() <= self.radius_**2)
        else:
            near = False
        top2 = np.sort(p)[-2:] if p.size < 64 else np.partition(p, -2)[-2:]
        cell = int(((self.centroids_ - z) ** 2).sum(axis=1).argmin())
        if len(c.cells) == c.cells.maxlen:
            c.cell_counts[c.cells[0]] -= 1
        c.cells.append(cell)
        c.cell_counts[cell] += 1
        c.near.append(near)
        c.boundary.append(bool(top2[1] - top2[0] < self.margin_))
        c.X[c.pos] = z
        c.pos = (c.pos + 1) % self.history
        c.filled = min(c.filled + 1, self.history)
        c.total += 1
        c.times.append(t)
        while c.times and c.times[0] <= t - self.period:
            c.times.popleft()
        return self._values(c, t)

    def _values(self, c: _Client, t: float) -> np.ndarray:
        vol = float(len(c.times))  # _step keeps only the times of the last period
        n = len(c.near)
        if n < self.min_queries:
            return np.array([vol, 0.0, 0.0, 0.0])
        return np.array([vol, sum(c.near) / n, sum(c.boundary) / n,
                         float(np.count_nonzero(c.cell_counts)) / len(self.centroids_)])

    def _alert(self, client: str, feat: str, value: float, c: _Client) -> Alert:
        thr = self.thresholds_[feat]
        detail = {
            "volume": f"{value:.0f} queries in {self.period:.0f} s (clean clients: <= {thr:.0f})",
            "near_duplicates": f"{value:.0%} of recent queries are near-duplicates (clean: <= {thr:.0%})",
            "boundary": f"{value:.0%} of recent queries sit on the decision boundary (clean: <= {thr:.0%})",
            "coverage": f"recent queries cover {value:.0%} of the input space (clean: <= {thr:.0%})",
        }[feat]
        sev = Severity.HIGH if feat in ("near_duplicates", "boundary") else Severity.MEDIUM
        return Alert(watchdog=self.name, kind=_KIND[feat], threats=_THREATS[feat], severity=sev,
                     score=value, threshold=thr, client=client, detail=detail,
                     evidence={"queries": c.total, "history": len(c.near)})

    def to_dict(self) -> dict[str, Any]:
        """Fitted and calibrated state (client histories are not included)."""
        self._require("centroids_")
        return {
            "name": self.name, "history": self.history, "period": self.period,
            "min_queries": self.min_queries, "n_cells": self.n_cells,
            "standardize": self.standardize,
            "max_clients": self.max_clients, "random_state": self.random_state,
            "location": self.location_.tolist(), "scale": self.scale_.tolist(),
            "radius": self.radius_, "margin": self.margin_, "centroids": self.centroids_.tolist(),
            "thresholds": {k: (None if v == float("inf") else v)
                           for k, v in getattr(self, "thresholds_", {}).items()},
            "fpr": getattr(self, "fpr_", None), "target_fpr": getattr(self, "target_fpr_", None),
            "budget": getattr(self, "budget_", None),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QueryPatternWatchdog:
        obj = cls(history=d["history"], period=d["period"], min_queries=d["min_queries"],
                  n_cells=d["n_cells"], standardize=d["standardize"], max_clients=d["max_clients"],
                  random_state=d["random_state"])
        obj.location_, obj.scale_ = np.asarray(d["location"]), np.asarray(d["scale"])
        obj.radius_, obj.margin_ = float(d["radius"]), float(d["margin"])
        obj.centroids_ = np.asarray(d["centroids"])
        if d.get("thresholds"):
            obj.thresholds_ = {k: float("inf") if v is None else float(v)
                               for k, v in d["thresholds"].items()}
            obj.threshold_ = max(obj.thresholds_.values())
            obj.fpr_, obj.target_fpr_ = d["fpr"], d["target_fpr"]
            obj.budget_ = d.get("budget")
        return obj
