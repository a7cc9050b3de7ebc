"""Traffic simulator: bounded, seeded traffic against a running gateway on loopback.

For tests, demos and benchmarks of the Monitor step (paper 5.2: continuous monitoring and
5.2.2 incident response). Each scenario is a traffic pattern the watchers are meant to tell
apart:

- ``clean``: rows of a clean dataset in small batches (no alert expected);
- ``drift``: the same rows shifted and rescaled inside the valid range, sent by several
  clients in turn (the population changed: input drift, a benign incident). ``drift`` sets
  the strength (0.5: rows scaled by 0.85, shifted by 10% of the range, 2.5% noise); at full
  strength (1.0) the model's confidence collapses so fast that the confidence CUSUM fires
  before the drift window is scored, and the incident is (rightly, on that evidence alone)
  opened as a suspected attack;
- ``evasion``: adversarial examples made with the project's own PGD (Madry et al. 2018) on the
  deployed model, white-box through :func:`~riskloop.targets.loader.load_target`;
- ``extraction``: one client querying the way Knockoff Nets (Orekondy et al., CVPR 2019) and
  active-learning extraction do: random inputs across the valid range, near-duplicates of
  one input, and straight walks between two inputs of different classes that cross the
  decision boundary in small steps;
- ``poisoned-feed``: ``POST /events`` with the model's own predictions and flipped labels,
  so performance drifts while the inputs do not (poisoned feedback).

Traffic is bounded three ways: ``rate`` (requests per second), ``duration`` (seconds) and
``max_requests`` (a hard cap). The simulator creates its own client keys in the store
(audited, like ``riskloop client-key create``), which the gateway's refresher picks up, and
returns a :class:`SimulationSummary` with the alerts and incidents the store recorded for the
deployment while it ran.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlparse

import httpx
import numpy as np
from sqlalchemy import func, select

from ..config import Settings
from ..errors import InputError
from ..inventory.refs import resolve_dataset
from ..store.db import transaction
from ..store.models import Alert, Incident, IncidentSignal
from . import deployments as deps

log = logging.getLogger(__name__)

SCENARIOS = ("clean", "drift", "evasion", "extraction", "poisoned-feed")
MAX_REQUESTS = 5000
KEY_WAIT_S = 10.0  # the gateway re-reads keys every second by default
LOOPBACK = ("127.0.0.1", "localhost", "::1")
Progress = Callable[[int, int], None]  # (requests sent, request budget)


@dataclass
class SimulationSummary:
    """What one simulator run sent and what the store recorded while it ran."""

    scenario: str
    deployment: str
    url: str
    client: str
    requests: int
    rows: int
    seconds: float
    stopped_by: str  # "duration", "max_requests" or "exhausted"
    status: dict[str, int] = field(default_factory=dict)
    served_by: dict[str, int] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_url(url: str) -> str:
    """Only loopback gateways: the simulator never sends traffic off this machine."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or parsed.hostname not in LOOPBACK:
        raise InputError(
            f"--url {url!r} is not a loopback gateway: the simulator only sends traffic to "
            "http://127.0.0.1:PORT (start one with 'riskloop serve')"
        )
    return url.rstrip("/")


class TrafficSimulator:
    """Seeded traffic of one scenario against one deployment of a running gateway."""

    name: ClassVar[str] = "traffic-simulator"
    threats: ClassVar[tuple[str, ...]] = ("evasion", "model-extraction", "data-poisoning")
    access: ClassVar[str] = "black-box"

    summary_: SimulationSummary

    def __init__(
        self,
        *,
        scenario: str,
        rate: float = 20.0,
        duration: float = 10.0,
        max_requests: int = 1000,
        batch: int = 5,
        eps: float | None = None,
        flip_fraction: float = 0.6,
        drift: float = 0.5,
        data: str | None = None,
        random_state: int = 0,
    ) -> None:
        if scenario not in SCENARIOS:
            raise InputError(f"unknown scenario '{scenario}': choose one of {', '.join(SCENARIOS)}")
        if not (rate > 0 and duration > 0):
            raise InputError(f"--rate and --duration must be positive (got {rate}, {duration})")
        if not 1 <= max_requests <= MAX_REQUESTS:
            raise InputError(f"max_requests must be between 1 and {MAX_REQUESTS}, got {max_requests}")
        if not 1 <= batch <= 64:
            raise InputError(f"batch must be between 1 and 64 rows, got {batch}")
        if not 0.0 < flip_fraction <= 1.0:
            raise InputError(f"flip_fraction must be in (0, 1], got {flip_fraction}")
        self.scenario = scenario
        self.rate = float(rate)
        self.duration = float(duration)
        self.max_requests = int(max_requests)
        self.batch = int(batch)
        self.eps = eps
        self.flip_fraction = float(flip_fraction)
        self.drift = float(drift)
        self.data = data
        self.random_state = random_state

    # -- setup ------------------------------------------------------------------------------
    def _prepare(self, settings: Settings, deployment: str, actor: str) -> dict[str, Any]:
        from ..targets.loader import load_arrays, load_target

        with transaction(settings) as session:
            dep = deps.get(session, deployment)
            mv = dep.model
            ref = self.data or _default_data(dep)
            X, y = load_arrays(resolve_dataset(session, ref))
            target = None
            if self.scenario in ("evasion", "poisoned-feed"):
                target = load_target(session, settings, mv, trust=bool((dep.config or {}).get("trust")))
            client = f"sim-{self.scenario}"
            sizes = (dep.config or {}).get("sizes") or {}
            n_clients = _drift_clients(sizes) if self.scenario == "drift" else 1
            names = [client] if n_clients == 1 else [f"{client}-{i}" for i in range(n_clients)]
            keys = [deps.create_key(session, name=deployment, client=c, actor=actor)[1]
                    for c in names]
            last_alert = session.execute(
                select(func.max(Alert.id)).where(Alert.deployment_id == dep.id)).scalar_one() or 0
            inp = dict((dep.config or {}).get("input") or {})
            classes = list((dep.config or {}).get("classes") or [])
        spec_shape = inp.get("shape")
        X = np.asarray(X, dtype=np.float32)
        if spec_shape:
            X = X.reshape((len(X), *spec_shape))
        lo = np.broadcast_to(np.asarray(inp.get("lower", -np.inf), dtype=np.float64), X.shape[1:])
        hi = np.broadcast_to(np.asarray(inp.get("upper", np.inf), dtype=np.float64), X.shape[1:])
        flat = X.reshape(len(X), -1)
        lo = np.where(np.isfinite(lo), lo, flat.min(axis=0).reshape(X.shape[1:]))
        hi = np.where(np.isfinite(hi), hi, flat.max(axis=0).reshape(X.shape[1:]))
        return {"X": X, "y": np.asarray(y), "target": target, "client": client, "keys": keys,
                "last_alert": int(last_alert), "lo": lo.astype(np.float32),
                "hi": hi.astype(np.float32), "classes": classes, "dataset": ref}

    # -- traffic ----------------------------------------------------------------------------
    def requests(self, ctx: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(endpoint, body)`` of every request, in order (endless; the run bounds it)."""
        rng = np.random.default_rng(self.random_state)
        X, lo, hi = ctx["X"], ctx["lo"], ctx["hi"]
        if self.scenario == "clean":
            for rows in _passes(X, rng, self.batch):
                yield "predict", {"inputs": rows.tolist()}
        elif self.scenario == "drift":
            span = hi - lo
            for rows in _passes(X, rng, self.batch):
                a = self.drift
                shifted = (lo + (rows - lo) * (1 - 0.3 * a) + 0.2 * a * span
                           + rng.normal(0, 0.05 * a, rows.shape) * span)
                yield "predict", {"inputs": np.clip(shifted, lo, hi).astype(np.float32).tolist()}
        elif self.scenario == "evasion":
            X_adv = self._adversarial(ctx, rng)
            while True:
                yield "predict", {"inputs": _sample(X_adv, rng, self.batch).tolist()}
        elif self.scenario == "extraction":
            yield from self._extraction(ctx, rng)
        else:
            yield from self._poisoned(ctx, rng)

    def _adversarial(self, ctx: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        from ..assess.evasion.gradient import PGD
        from ..targets.base import encode_labels

        target, X, y = ctx["target"], ctx["X"], ctx["y"]
        idx = rng.choice(len(X), size=min(len(X), 200), replace=False)
        span = float(np.mean(ctx["hi"] - ctx["lo"]))
        eps = float(self.eps) if self.eps is not None else 0.1 * span
        labels = encode_labels(y[idx], tuple(target.classes), where="simulator labels")
        out = PGD(eps=eps, steps=10, random_state=self.random_state).attack(target, X[idx], labels)
        log.info("evasion traffic: PGD eps %.4g fooled %d of %d rows", eps,
                 int(out.success.sum()), len(idx))
        return np.clip(out.x_adv, ctx["lo"], ctx["hi"]).astype(np.float32)

    def _extraction(self, ctx: dict[str, Any], rng: np.random.Generator) -> Iterator[tuple[str, dict[str, Any]]]:
        X, y, lo, hi = ctx["X"], ctx["y"], ctx["lo"], ctx["hi"]
        steps = 40
        t = np.linspace(0, 1, steps, dtype=np.float32).reshape((steps,) + (1,) * (X.ndim - 1))
        k = 0
        while True:
            kind = k % 3
            k += 1
            if kind == 0:  # a straight walk across the decision boundary
                i = int(rng.integers(len(X)))
                others = np.flatnonzero(y != y[i])
                j = int(rng.choice(others)) if len(others) else int(rng.integers(len(X)))
                rows = (1 - t) * X[i] + t * X[j]
            elif kind == 1:  # near-duplicates of one input
                base = X[int(rng.integers(len(X)))]
                rows = base + rng.normal(0, 0.01, (steps // 2, *X.shape[1:])) * (hi - lo)
            else:  # random inputs across the valid range (Knockoff's random strategy)
                rows = lo + rng.random((steps // 2, *X.shape[1:])) * (hi - lo)
            yield "predict", {"inputs": np.clip(rows, lo, hi).astype(np.float32).tolist()}

    def _poisoned(self, ctx: dict[str, Any], rng: np.random.Generator) -> Iterator[tuple[str, dict[str, Any]]]:
        target, X = ctx["target"], ctx["X"]
        classes = [str(c) for c in target.classes]
        size = max(self.batch, 20)
        while True:
            rows = _sample(X, rng, size)
            proba = np.asarray(target.predict_proba(rows), dtype=np.float64)
            pred = proba.argmax(axis=1)
            flip = rng.random(len(rows)) < self.flip_fraction
            shift = rng.integers(1, len(classes), size=len(rows))
            label = np.where(flip, (pred + shift) % len(classes), pred)
            yield "events", {"events": [
                {"inputs": rows[i].reshape(-1).tolist(), "prediction": classes[pred[i]],
                 "confidence": float(proba[i, pred[i]]), "label": classes[label[i]]}
                for i in range(len(rows))]}

    # -- running ----------------------------------------------------------------------------
    def run(
        self, settings: Settings, *, deployment: str, url: str, actor: str | None = None,
        client: httpx.Client | None = None, progress: Progress | None = None,
    ) -> SimulationSummary:
        """Send the scenario's traffic to ``url`` and summarise what the store recorded."""
        url = check_url(url)
        ctx = self._prepare(settings, deployment, actor or settings.actor)
        status: Counter[str] = Counter()
        served: Counter[str] = Counter()
        modes: Counter[str] = Counter()
        sent = rows = 0
        stopped_by = "duration"
        own = client is None
        http = client or httpx.Client(base_url=url, timeout=60)
        keys = ctx["keys"]
        interval = 1.0 / self.rate
        started = time.monotonic()
        try:
            for endpoint, body in self.requests(ctx):
                now = time.monotonic()
                if now - started >= self.duration:
                    break
                if sent >= self.max_requests:
                    stopped_by = "max_requests"
                    break
                due = started + sent * interval
                if due > now:
                    time.sleep(due - now)
                r = _post(http, f"{url}/v1/deployments/{deployment}/{endpoint}", body,
                          {"X-API-Key": keys[sent % len(keys)]},
                          wait_for_key=KEY_WAIT_S if sent < len(keys) else 0.0)
                sent += 1
                status[str(r.status_code)] += 1
                if r.status_code == 200:
                    data = r.json()
                    modes[str(data.get("mode", "external"))] += 1
                    preds = data.get("predictions")
                    if preds is None:
                        rows += int(data.get("logged", 0))
                        served["external"] += int(data.get("logged", 0))
                    else:
                        rows += len(preds)
                        served.update(p.get("served_by", "?") for p in preds)
                elif r.status_code in (401, 404):
                    raise InputError(f"the gateway refused the simulator ({r.status_code}): "
                                     f"{r.text[:200]}")
                if progress is not None:
                    progress(sent, self.max_requests)
        finally:
            if own:
                http.close()
        seconds = time.monotonic() - started
        alerts, incs = observed(settings, deployment=deployment, after_alert=ctx["last_alert"])
        self.summary_ = SimulationSummary(
            scenario=self.scenario, deployment=deployment, url=url, client=ctx["client"],
            requests=sent, rows=rows, seconds=round(seconds, 3), stopped_by=stopped_by,
            status=dict(status), served_by=dict(served), modes=dict(modes), alerts=alerts,
            incidents=incs)
        log.info("simulated %s: %d requests, %d alerts", self.scenario, sent, len(alerts))
        return self.summary_


def _post(http: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str],
          *, wait_for_key: float) -> httpx.Response:
    """POST once; at the start, wait for the gateway's refresher to pick up the new key."""
    deadline = time.monotonic() + wait_for_key
    while True:
        try:
            r = http.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise InputError(f"the gateway at {url} did not answer ({type(exc).__name__}): "
                             "is 'riskloop serve' running there?") from None
        if r.status_code != 401 or time.monotonic() >= deadline:
            return r
        time.sleep(0.2)


def observed(settings: Settings, *, deployment: str, after_alert: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Alerts of ``deployment`` newer than ``after_alert``, and the incidents they opened or joined."""
    from . import incidents

    with transaction(settings) as session:
        dep = deps.get(session, deployment)
        rows = list(session.execute(select(Alert).where(
            Alert.deployment_id == dep.id, Alert.id > after_alert).order_by(Alert.id)).scalars())
        alerts = [{"id": a.id, "kind": a.kind, "threat_id": a.threat_id, "client": a.client,
                   "severity": a.severity} for a in rows]
        ids = [a.id for a in rows]
        incs: list[dict[str, Any]] = []
        if ids:
            inc_ids = sorted(set(session.execute(select(IncidentSignal.incident_id).where(
                IncidentSignal.alert_id.in_(ids))).scalars()))
            for iid in inc_ids:
                inc = session.get(Incident, iid)
                if inc is not None:
                    d = incidents.incident_dict(inc)
                    incs.append({k: d[k] for k in ("id", "state", "classification", "severity",
                                                   "summary", "mode", "detected_at")})
    return alerts, incs


def _default_data(dep: Any) -> str:
    """The clean data to draw from: the held-out set of the deployment, else its reference."""
    cfg = dep.config or {}
    hold = (cfg.get("holdout") or {}).get("dataset") or ""
    if "@" in hold and " " not in hold:
        return hold
    ref = (cfg.get("reference") or {}).get("dataset")
    if ref:
        return str(ref)
    raise InputError(f"deployment '{dep.name}' names no dataset to draw traffic from: pass --data DATASET@VER")


def _drift_clients(sizes: dict[str, Any]) -> int:
    """Clients a drift is spread over: the world changes for every user at once, so no one
    client fills its outlier window before the population's drift window is scored."""
    drift = int(sizes.get("drift_window", 500))
    per_client = int(sizes.get("outlier_window", 50))
    return int(min(20, max(2, np.ceil(drift / (0.8 * per_client)) + 1)))


def _passes(X: np.ndarray, rng: np.random.Generator, n: int) -> Iterator[np.ndarray]:
    """Batches of 1..n rows walking through shuffled passes over ``X`` (a clean client does
    not send the same row twice in a short time, so no duplicates within a pass)."""
    while True:
        order = rng.permutation(len(X))
        i = 0
        while i < len(order):
            k = int(rng.integers(1, n + 1))
            yield X[order[i:i + k]]
            i += k


def _sample(X: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    k = int(rng.integers(1, n + 1))
    return X[rng.choice(len(X), size=k, replace=k > len(X))]
