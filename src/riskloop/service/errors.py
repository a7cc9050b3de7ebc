"""HTTP errors of the service: every refusal is one JSON line ``{"detail": "..."}``.

riskloop's own exceptions map to status codes here, so library code never knows about HTTP:

==================  ======  ===============================================
exception           status  when
==================  ======  ===============================================
BadRequest          400     the body is not JSON, not an object, lacks a key
AuthError           401     no API key, or a key this deployment does not know
PolicyViolation     403     a policy refuses the action
NotFoundError       404     unknown deployment (or other named thing)
ConflictError       409     state forbids the action
PayloadTooLarge     413     body over the size limit, too many rows
UnsupportedMedia    415     a Content-Type other than JSON
InputError          422     wrong shape, wrong types, NaN or infinity, out of range
Unavailable         503     deployment off, store unavailable, log not written
==================  ======  ===============================================
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    ConflictError,
    InputError,
    IntegrityError,
    NotFoundError,
    PolicyViolation,
    RiskloopError,
    StoreError,
    UserError,
)

log = logging.getLogger(__name__)


class HttpError(UserError):
    """A refusal with its own status code."""

    status = 400


class BadRequest(HttpError):
    status = 400


class AuthError(HttpError):
    status = 401


class PayloadTooLarge(HttpError):
    status = 413


class UnsupportedMedia(HttpError):
    status = 415


class Unavailable(HttpError):
    status = 503


def status_of(exc: RiskloopError) -> int:
    if isinstance(exc, HttpError):
        return exc.status
    for cls, code in ((NotFoundError, 404), (ConflictError, 409), (PolicyViolation, 403),
                      (InputError, 422), (UserError, 400), (StoreError, 503),
                      (IntegrityError, 503)):
        if isinstance(exc, cls):
            return code
    return 500


def error_response(status: int, detail: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'} if status == 401 else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into one-line JSON refusals."""

    @app.exception_handler(RiskloopError)
    async def _riskloop(_request: Request, exc: RiskloopError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.warning("refused with %d: %s", status, exc)
        return error_response(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(422, f"{where or 'request'}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))
