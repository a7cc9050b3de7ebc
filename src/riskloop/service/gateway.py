"""The guarded inference endpoints of a deployment.

``POST /v1/deployments/{name}/predict`` runs validate → sanitize → predict → watch → route
(:class:`~riskloop.monitor.guard.Guard`) for the rows in the body::

    {"inputs": [[...], ...], "request_id": "optional, up to 64 characters"}
    {"rows": [{"feature": value, ...}, ...]}        # models with feature names

and answers, once every row is logged::

    {"request_id": "...", "deployment": "...", "mode": "active",
     "predictions": [{"id": 41, "answer": "3", "served_by": "model", "status": "final",
                      "confidence": 0.97},
                     {"id": 42, "answer": "5", "served_by": "model", "confidence": 0.41,
                      "status": "pending-review", "review": {"id": 7, "reason": "..."}}]}

``POST /v1/deployments/{name}/events`` logs predictions made by a model served elsewhere and
runs the watchers on them, so monitoring works without the gateway in the path::

    {"events": [{"inputs": [...], "prediction": "3", "confidence": 0.9, "label": "3"}, ...]}

Both need the client's key in ``X-API-Key``. Refusals are one JSON line with a 4xx or 503
status (see :mod:`riskloop.service.errors`); a refused request is never logged.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..errors import InputError, RiskloopError
from .bodies import check_keys, read_json, request_id
from .errors import Unavailable, status_of
from .metrics import UNKNOWN
from .runtime import LiveDeployment, Runtime

router = APIRouter(prefix="/v1", tags=["gateway"])


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def _logged(rt: Runtime, live: LiveDeployment, outcome: Any) -> Any:
    t = time.perf_counter()
    try:
        written = await asyncio.wrap_future(
            rt.writer.submit(outcome, deployment_id=live.id, deployment=live.name))
    except Exception as exc:  # noqa: BLE001 - any store failure means: not served
        raise _unlogged(exc) from None
    rt.metrics.stage_child(live.name, "log").observe(time.perf_counter() - t)
    _follow(live, written)
    return written


def _unlogged(exc: BaseException) -> Unavailable:
    return Unavailable(f"the prediction could not be logged ({type(exc).__name__}), so it is "
                       "not served: try again")


def _follow(live: LiveDeployment, written: Any) -> None:
    if written.contained_mode:  # an incident contained the deployment: follow at once
        live.guard.mode = written.contained_mode


def _count(rt: Runtime, name: str, endpoint: str, code: int, started: float) -> None:
    m = rt.metrics
    m.child(m.requests, name, endpoint, str(code)).inc()
    m.child(m.latency, name, endpoint).observe(time.perf_counter() - started)


def _alerts(rt: Runtime, live: LiveDeployment, outcome: Any) -> None:
    for a in outcome.alerts:
        rt.metrics.child(rt.metrics.alerts, live.name, a.kind, a.severity).inc()


@router.post("/deployments/{name}/predict")
async def predict(name: str, request: Request) -> JSONResponse:
    rt = _runtime(request)
    started = time.perf_counter()
    label = UNKNOWN
    try:
        live = rt.get(name)
        label = live.name
        client = rt.authenticate(live, request.headers.get("x-api-key"))
        guard = live.guard
        if guard.mode == "off":
            raise Unavailable(f"deployment '{name}' is off: it answers no requests")
        if guard.mode in ("shadow", "fallback") and guard.rules is None:
            raise Unavailable(f"deployment '{name}' is in mode {guard.mode} without fallback "
                              "rules: it answers no requests")
        body = await read_json(request, limit=rt.options.max_body)
        check_keys(body, ("inputs", "rows", "request_id"))
        rid = request_id(body, rt.next_request_id())
        if ("inputs" in body) == ("rows" in body):
            raise InputError("send either 'inputs' (lists of numbers) or 'rows' (objects), not both or neither")

        raw = body["inputs"] if "inputs" in body else guard.rows_from_records(body["rows"])
        X = guard.validate(raw)
        job = rt.worker.submit(live, X, client=client, request_id=rid, started=started)
        try:
            written = await asyncio.wrap_future(job.future)
        except RiskloopError:
            raise
        except Exception as exc:  # noqa: BLE001 - the model or the store failed: not served
            raise _unlogged(exc) from None
        _follow(live, written)
        outcome = job.outcome
    except RiskloopError as exc:
        _count(rt, label, "predict", status_of(exc), started)
        raise
    items = []
    for i, item in enumerate(outcome.items):
        out = {"id": written.log_ids[i], **item}
        if written.review_ids[i] is not None:
            out["review"] = {"id": written.review_ids[i], "reason": outcome.review[i]}
        items.append(out)
    m = rt.metrics
    mode = outcome.rows[0]["mode"]
    m.child(m.predictions, live.name, mode, outcome.rows[0]["served_by"]).inc(len(items))
    routed = sum(1 for r in written.review_ids if r is not None)
    if routed:
        m.child(m.reviews, live.name).inc(routed)
    _alerts(rt, live, outcome)
    _count(rt, live.name, "predict", 200, started)
    return JSONResponse({"request_id": rid, "deployment": live.name, "mode": mode,
                         "predictions": items})


@router.post("/deployments/{name}/events")
async def events(name: str, request: Request) -> JSONResponse:
    rt = _runtime(request)
    started = time.perf_counter()
    label = UNKNOWN
    try:
        live = rt.get(name)
        label = live.name
        client = rt.authenticate(live, request.headers.get("x-api-key"))
        body = await read_json(request, limit=rt.options.max_body)
        check_keys(body, ("events", "request_id"))
        rid = request_id(body, rt.next_request_id())
        guard = live.guard
        outcome = await run_in_threadpool(
            lambda: guard.ingest(body.get("events"), client=client, request_id=rid))
        written = await _logged(rt, live, outcome)
    except RiskloopError as exc:
        _count(rt, label, "events", status_of(exc), started)
        raise
    rt.metrics.child(rt.metrics.predictions, live.name, outcome.rows[0]["mode"], "external").inc(
        len(outcome.rows))
    _alerts(rt, live, outcome)
    _count(rt, live.name, "events", 200, started)
    return JSONResponse({"request_id": rid, "deployment": live.name,
                         "logged": len(written.log_ids), "ids": written.log_ids})

