"""The guarded inference pipeline of one deployment: validate → sanitize → predict → watch → route.

Paper 5.1(4) and 5.2.1: inputs are validated before the model sees them; a defence may
sanitise them (feature squeezing, when the model version carries one); the model predicts;
watchdogs look at the inputs, the outputs and who is asking; and the result is routed: the
model's answer, the fallback rules' answer (shadow and fallback modes), and the human review
queue for decisions below the policy's confidence threshold.

:class:`Guard` is pure library code with no web framework in it: it turns validated rows into
log records, response items and alert drafts, and the caller (the gateway in
``riskloop.service``) writes them in one transaction. Watchers keep running state per
client, exported and imported as JSON keyed by (watchdog, client), so a restarted gateway
resumes and replicas can share it through the store.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from ..errors import InputError
from ..targets.base import RANGE_TOLERANCE
from .fallback import BoundRules

log = logging.getLogger(__name__)

MAX_ROWS = 256
LOG_INPUTS = ("review", "all", "none")  # whose inputs the log keeps (a digest is always kept)
GATEWAY, EVENTS = "gateway", "events"
SEVERITIES = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class AlertDraft:
    """An alarm a watcher raised, before it is stored."""

    kind: str
    severity: str
    threat_id: str | None
    client: str | None
    details: dict[str, Any]
    window_start: datetime | None = None
    window_end: datetime | None = None


@dataclass
class Observation:
    """What the watchers see of one request (or one batch of ingested events)."""

    flat: np.ndarray  # (n, d) float inputs, flattened per row
    client: str
    at: datetime
    source: str
    proba: np.ndarray | None = None  # (n, k) model probabilities, when the model ran
    predicted: np.ndarray | None = None  # (n,) class indices, when known
    confidence: np.ndarray | None = None  # (n,) top-class probability, when known
    adversarial: np.ndarray | None = None  # (n,) defence scores, when a defence ran
    labels: Sequence[str | None] | None = None  # true labels, when they arrived with events


class Watcher(Protocol):
    """A running detector. ``observe`` may be called from several threads; the guard
    serialises calls per deployment."""

    name: str

    def observe(self, obs: Observation) -> list[AlertDraft]: ...

    def export_state(self) -> dict[str, dict[str, Any]]: ...

    def import_state(self, states: dict[str, dict[str, Any]]) -> None: ...


class Sanitizer(Protocol):
    """A defence run before (and beside) the model, e.g. feature squeezing."""

    name: str

    def scores(self, X: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row adversarial scores and a boolean "flagged" mask."""
        ...


@dataclass(frozen=True)
class Request:
    """Validated rows of one request and who sent them."""

    X: np.ndarray
    client: str
    request_id: str
    started: float | None = None


@dataclass
class Outcome:
    """What one request produced: log rows, response items, alerts, review reasons."""

    rows: list[dict[str, Any]]
    items: list[dict[str, Any]]
    review: list[str | None]
    alerts: list[AlertDraft]
    timings: dict[str, float] = field(default_factory=dict)


def row_digest(row: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(row, dtype=np.float32).tobytes()).hexdigest()


class Guard:
    """The pipeline of one deployment; see the module docstring.

    ``mode`` may be changed at any time (the gateway refreshes it from the store).
    """

    def __init__(
        self,
        *,
        name: str,
        deployment_id: int,
        mode: str,
        target: Any,
        classes: Sequence[str],
        input_spec: Any,
        rules: BoundRules | None,
        review_below: float,
        watchers: Sequence[Watcher] = (),
        sanitizer: Sanitizer | None = None,
        log_inputs: str = "review",
        log_inputs_max: int = 256,
        cooldown_s: float = 60.0,
        max_rows: int = MAX_ROWS,
    ) -> None:
        self.name = name
        self.deployment_id = deployment_id
        self.mode = mode
        self.target = target
        self.classes = [str(c) for c in classes]
        self.input_spec = input_spec
        self.rules = rules
        self.review_below = float(review_below)
        self.watchers = list(watchers)
        self.sanitizer = sanitizer
        if log_inputs not in LOG_INPUTS:
            raise InputError(f"log_inputs must be one of {', '.join(LOG_INPUTS)}, got {log_inputs!r}")
        self.log_inputs = log_inputs
        self.log_inputs_max = int(log_inputs_max)
        self.cooldown_s = float(cooldown_s)
        self.max_rows = int(max_rows)
        self.n_features = int(np.prod(input_spec.shape))
        self._shape = tuple(input_spec.shape)
        self._lo = input_spec.lower_array().astype(np.float32)
        self._hi = input_spec.upper_array().astype(np.float32)
        self._lock = threading.Lock()
        self._last_alert: dict[tuple[str, str], float] = {}

    # -- validate -------------------------------------------------------------------------
    def validate(self, inputs: Any) -> np.ndarray:
        """Rows as the model expects them (float32, model shape, finite, in range)."""
        if not isinstance(inputs, list) or not inputs:
            raise InputError("'inputs' must be a non-empty list of rows")
        if len(inputs) > self.max_rows:
            raise InputError(f"{len(inputs)} rows in one request: send at most {self.max_rows}")
        try:
            arr = np.asarray(inputs)
        except ValueError:
            raise InputError(
                "rows of 'inputs' have different lengths or shapes: every row must be "
                f"{list(self.input_spec.shape)} numbers"
            ) from None
        if arr.dtype == object or arr.dtype.kind not in "iuf":
            what = "text" if arr.dtype.kind in "US" else ("true/false" if arr.dtype.kind == "b" else "mixed values")
            raise InputError(f"'inputs' must hold numbers only, got {what}")
        if arr.ndim == 1:
            raise InputError(
                f"'inputs' must be a list of rows (one list per input of shape "
                f"{list(self.input_spec.shape)}), got a flat list of numbers"
            )
        fast = self._fast_check(arr)
        return fast if fast is not None else self.input_spec.check(arr, where="'inputs'")

    def _fast_check(self, arr: np.ndarray) -> np.ndarray | None:
        """The common case of :meth:`InputSpec.check` with bounds computed once; None sends
        anything unusual to the spec's own check (and its error messages)."""
        if arr.shape[1:] != self._shape:
            if arr.ndim < 2 or int(np.prod(arr.shape[1:])) != self.n_features:
                return None
            arr = arr.reshape((len(arr), *self._shape))
        x = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(x).all():
            return None
        if (x < self._lo - RANGE_TOLERANCE).any() or (x > self._hi + RANGE_TOLERANCE).any():
            return None
        return np.clip(x, self._lo, self._hi)

    def rows_from_records(self, records: Any) -> list[Any]:
        """Named rows (``{"feature": value}``) to positional rows, by the model's feature names."""
        names = getattr(self.input_spec, "feature_names", None)
        if not names:
            raise InputError(
                "this model has no feature names: send 'inputs' as lists of numbers instead of 'rows'"
            )
        if not isinstance(records, list) or not records:
            raise InputError("'rows' must be a non-empty list of objects")
        out = []
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise InputError(f"'rows'[{i}] must be an object of feature: value")
            missing = [n for n in names if n not in rec]
            extra = [k for k in rec if k not in names]
            if missing or extra:
                raise InputError(
                    f"'rows'[{i}]: missing {missing[:5]} / unknown {extra[:5]} features: send "
                    f"exactly {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}"
                )
            out.append([rec[n] for n in names])
        return out

    # -- run ------------------------------------------------------------------------------
    def run(self, X: np.ndarray, *, client: str, request_id: str, started: float | None = None) -> Outcome:
        """Sanitize → predict → watch → route for the validated rows ``X`` of one request."""
        return self.run_batch([Request(X, client, request_id, started)])[0]

    def run_batch(self, requests: Sequence[Request]) -> list[Outcome]:
        """The pipeline for several requests at once (one model call, one watch per client).

        Concurrent requests are batched by the gateway: the model, the defence and the rules
        run once on all rows, each watcher sees each client's rows once, and every request
        gets its own outcome. Alerts are attached to the first outcome.
        """
        mode = self.mode
        timings: dict[str, float] = {}
        sizes = [len(r.X) for r in requests]
        X = requests[0].X if len(requests) == 1 else np.concatenate([r.X for r in requests])
        n = len(X)
        flat = X.reshape(n, -1)
        proba = conf = pred = adv = None
        flagged = np.zeros(n, dtype=bool)
        if mode in ("active", "shadow"):
            t = time.perf_counter()
            proba = np.asarray(self.target.predict_proba(X), dtype=np.float64)
            pred = proba.argmax(axis=1)
            conf = proba[np.arange(n), pred]
            timings["predict"] = time.perf_counter() - t
            if self.sanitizer is not None:
                t = time.perf_counter()
                adv, flagged = self.sanitizer.scores(X, proba)
                timings["sanitize"] = time.perf_counter() - t
        rule_answers: list[str] | None = None
        rule_names: list[str | None] | None = None
        if mode in ("shadow", "fallback"):
            if self.rules is None:  # set_mode refuses this; a stale row could still say so
                raise InputError(f"deployment '{self.name}' is in mode {mode} but has no fallback rules")
            rule_answers, rule_names = self.rules.answer(flat)
        now = datetime.now(UTC)
        bounds = np.cumsum([0, *sizes])
        t = time.perf_counter()
        by_client: dict[str, list[int]] = {}
        for k, r in enumerate(requests):
            by_client.setdefault(r.client, []).append(k)

        def obs(client: str, idx: Any) -> Observation:
            return Observation(
                flat=flat[idx], client=client, at=now, source=GATEWAY,
                proba=None if proba is None else proba[idx],
                predicted=None if pred is None else pred[idx],
                confidence=None if conf is None else conf[idx],
                adversarial=None if adv is None else adv[idx])

        # per-client watchers see each client's rows, the others the whole batch once
        parts = [obs(client, slice(bounds[ks[0]], bounds[ks[0] + 1]) if len(ks) == 1 else
                     np.concatenate([np.arange(bounds[k], bounds[k + 1]) for k in ks]))
                 for client, ks in by_client.items()]
        everyone = obs(requests[0].client if len(by_client) == 1 else "", slice(None))
        alerts = self.watch_parts(parts, everyone)
        timings["watch"] = time.perf_counter() - t
        done = time.perf_counter()
        labels = None if pred is None else [self.classes[int(i)] for i in pred]
        confs = None if conf is None else conf.tolist()
        advs = None if adv is None else adv.tolist()
        outcomes = []
        for k, req in enumerate(requests):
            latency_ms = (done - (req.started if req.started is not None else done)) * 1000.0
            rows, items, review = [], [], []
            for j in range(int(bounds[k]), int(bounds[k + 1])):
                output: dict[str, Any] = {}
                reason = None
                if labels is not None:
                    output = {"label": labels[j], "confidence": confs[j]}  # type: ignore[index]
                    if advs is not None:
                        output["adversarial_score"] = advs[j]
                if mode == "active":
                    answer, served_by = labels[j], "model"  # type: ignore[index]
                    if flagged[j]:
                        reason = f"flagged by {self.sanitizer.name} (score {advs[j]:.3g})"  # type: ignore[union-attr,index]
                    elif confs[j] < self.review_below:  # type: ignore[index]
                        reason = f"confidence {confs[j]:.3f} below {self.review_below:g}"  # type: ignore[index]
                else:
                    answer, served_by = rule_answers[j], "fallback"  # type: ignore[index]
                    output["rule"] = rule_names[j]  # type: ignore[index]
                    if labels is not None:
                        output["agrees"] = labels[j] == answer
                keep = self.log_inputs == "all" or (self.log_inputs == "review" and reason is not None)
                rows.append({
                    "deployment_id": self.deployment_id, "client": req.client,
                    "request_id": req.request_id, "row": j - int(bounds[k]), "source": GATEWAY,
                    "inputs_digest": row_digest(flat[j]),
                    "inputs": flat[j].tolist() if keep and self.n_features <= self.log_inputs_max else None,
                    "output": output, "answer": answer,
                    "confidence": confs[j] if confs is not None and mode == "active" else None,
                    "mode": mode, "served_by": served_by, "latency_ms": latency_ms,
                    "routed_to_review": reason is not None, "label": None, "created_at": now,
                })
                item: dict[str, Any] = {"answer": answer, "served_by": served_by,
                                        "status": "pending-review" if reason else "final"}
                if mode == "active":
                    item["confidence"] = round(confs[j], 6)  # type: ignore[index]
                items.append(item)
                review.append(reason)
            outcomes.append(Outcome(rows=rows, items=items, review=review,
                                    alerts=alerts if k == 0 else [], timings=timings))
        return outcomes

    # -- events ---------------------------------------------------------------------------
    def ingest(self, events: list[dict[str, Any]], *, client: str, request_id: str) -> Outcome:
        """Predictions made elsewhere: log them and run the watchers on them."""
        if not isinstance(events, list) or not events:
            raise InputError("'events' must be a non-empty list")
        if len(events) > self.max_rows * 4:
            raise InputError(f"{len(events)} events in one request: send at most {self.max_rows * 4}")
        inputs, preds, confs, labels, answers = [], [], [], [], []
        for i, ev in enumerate(events):
            if not isinstance(ev, dict):
                raise InputError(f"'events'[{i}] must be an object with 'inputs' and 'prediction'")
            unknown = set(ev) - {"inputs", "prediction", "confidence", "label", "probabilities"}
            if unknown:
                raise InputError(f"'events'[{i}]: unknown field(s) {sorted(unknown)}: use inputs, "
                                 "prediction, confidence, probabilities, label")
            if "inputs" not in ev or "prediction" not in ev:
                raise InputError(f"'events'[{i}] needs 'inputs' and 'prediction'")
            inputs.append(ev["inputs"])
            p = str(ev["prediction"])
            if p not in self.classes:
                raise InputError(f"'events'[{i}]: prediction '{p}' is not a class of the model "
                                 f"({', '.join(self.classes[:10])})")
            preds.append(self.classes.index(p))
            answers.append(p)
            c = ev.get("confidence")
            if c is not None and (isinstance(c, bool) or not isinstance(c, int | float)
                                  or not math.isfinite(c) or not 0.0 <= c <= 1.0):
                raise InputError(f"'events'[{i}]: confidence must be a number in [0, 1], got {c!r}")
            confs.append(np.nan if c is None else float(c))
            lab = ev.get("label")
            if lab is not None and str(lab) not in self.classes:
                raise InputError(f"'events'[{i}]: label '{lab}' is not a class of the model")
            labels.append(None if lab is None else str(lab))
        X = self.validate(inputs) if len(inputs) <= self.max_rows else np.concatenate(
            [self.validate(inputs[j:j + self.max_rows]) for j in range(0, len(inputs), self.max_rows)])
        n = len(X)
        flat = X.reshape(n, -1)
        conf = np.asarray(confs, dtype=np.float64)
        now = datetime.now(UTC)
        obs = Observation(flat=flat, client=client, at=now, source=EVENTS,
                          predicted=np.asarray(preds), confidence=None if np.isnan(conf).all() else conf,
                          labels=labels)
        alerts = self.watch(obs)
        small = self.n_features <= self.log_inputs_max

        def keep(i: int) -> bool:  # labelled events are the ones retraining needs
            return small and (self.log_inputs == "all"
                              or (self.log_inputs == "review" and labels[i] is not None))

        rows = [{
            "deployment_id": self.deployment_id, "client": client, "request_id": request_id,
            "row": i, "source": EVENTS, "inputs_digest": row_digest(flat[i]),
            "inputs": flat[i].tolist() if keep(i) else None,
            "output": {"label": answers[i], **({} if np.isnan(conf[i]) else {"confidence": float(conf[i])})},
            "answer": answers[i], "confidence": None if np.isnan(conf[i]) else float(conf[i]),
            "mode": self.mode, "served_by": "external", "latency_ms": None,
            "routed_to_review": False, "label": labels[i], "created_at": now,
        } for i in range(n)]
        return Outcome(rows=rows, items=[{"logged": True} for _ in rows], review=[None] * n,
                       alerts=alerts)

    # -- watch ----------------------------------------------------------------------------
    def watch(self, obs: Observation) -> list[AlertDraft]:
        """Run every watcher on one observation (see :meth:`watch_parts`)."""
        return self.watch_parts([obs], obs)

    def watch_parts(self, parts: list[Observation], everyone: Observation) -> list[AlertDraft]:
        """Per-client watchers see each part (one client's rows), deployment-wide watchers
        see ``everyone``; alerts of one (kind, client) are raised once per cooldown."""
        raised: list[AlertDraft] = []
        with self._lock:
            for w in self.watchers:
                try:
                    if getattr(w, "per_client", True):
                        for part in parts:
                            raised.extend(w.observe(part))
                    else:
                        raised.extend(w.observe(everyone))
                except InputError:
                    raise
                except Exception:  # a broken watcher must not take the gateway down
                    log.exception("watcher %s failed on deployment %s", w.name, self.name)
            out = []
            now = time.monotonic()
            for a in raised:
                key = (a.kind, a.client or "")
                last = self._last_alert.get(key)
                if last is not None and now - last < self.cooldown_s:
                    continue
                self._last_alert[key] = now
                out.append(a)
        return out

    def export_states(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(watchdog, client, state) triples of every watcher (client '' = deployment-wide)."""
        with self._lock:
            out = []
            for w in self.watchers:
                for client, state in w.export_state().items():
                    out.append((w.name, client, state))
            return out

    def import_states(self, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
        by_name: dict[str, dict[str, dict[str, Any]]] = {}
        for name, client, state in rows:
            by_name.setdefault(name, {})[client] = state
        with self._lock:
            for w in self.watchers:
                if w.name in by_name:
                    try:
                        w.import_state(by_name[w.name])
                    except Exception:  # stale state from an older version: start afresh
                        log.warning("could not restore state of watcher %s on %s", w.name, self.name)
