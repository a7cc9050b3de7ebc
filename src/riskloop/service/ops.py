"""Operations endpoints: ``GET /healthz`` and ``GET /metrics`` (Prometheus text format)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """Liveness and what is served: each deployment's mode, the log writer's queue."""
    rt = request.app.state.runtime
    return JSONResponse({
        "status": "ok",
        "deployments": {d.name: {"mode": d.guard.mode, "model": d.model}
                        for d in rt.live_deployments()},
        "unavailable": dict(rt.load_errors),
        "log": {"queued": rt.writer.queued, "rows_written": rt.writer.rows_written,
                "failures": rt.writer.failures, "commits": rt.writer.batches},
        "batching": {"requests": rt.worker.requests, "batches": rt.worker.batches,
                     "shared_batches": rt.worker.shared_batches},
    })


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    registry = request.app.state.runtime.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
