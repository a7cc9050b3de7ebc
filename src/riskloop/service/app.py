"""The FastAPI application: ``create_app(settings)``.

One app serves the guarded inference gateway (``/v1/deployments/...``) and the operations
endpoints (``/healthz``, ``/metrics``). Each resource is its own router, so further parts of
the service (the REST API under ``/api/v1``, token authentication with roles, the dashboard)
are added as routers in :func:`_include_routers` and share the same :class:`Runtime` through
``app.state.runtime``. All state lives in the store: a restarted app resumes deployments,
modes, keys, the review queue and the watchers' checkpointed state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .. import __version__
from ..config import Settings
from . import errors
from .runtime import GatewayOptions, Runtime


def _include_routers(app: FastAPI) -> None:
    from . import gateway, ops

    app.include_router(gateway.router)
    app.include_router(ops.router)
    from .api import router as api_router

    app.include_router(api_router)
    from .dashboard import router as dashboard_router

    app.include_router(dashboard_router)


def create_app(settings: Settings, *, options: GatewayOptions | None = None) -> FastAPI:
    """The service app for the store named by ``settings`` (started with its lifespan)."""
    runtime = Runtime(settings, options)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        runtime.start()
        try:
            yield
        finally:
            runtime.stop()

    app = FastAPI(title="riskloop", version=__version__, lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.state.runtime = runtime
    errors.install(app)
    _include_routers(app)
    return app
