"""Who is calling: bearer tokens for the REST API and the dashboard, checked per permission.

``Authorization: Bearer rlk_...`` (API clients) or the ``riskloop_token`` cookie (the
dashboard's sign-in) names a token from :mod:`riskloop.service.tokens`. No token, or one that
is unknown or revoked: **401**. A valid token whose role lacks the permission: **403**. The
token's owner is the actor of every audit event the request causes. Tokens are compared with
``hmac.compare_digest`` and never logged.

Routes declare what they need::

    @router.post("/models/{ref}/approve")
    def approve(ref: str, who: Principal = Depends(require("approve"))): ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.orm import sessionmaker

from ..store.db import get_engine
from . import tokens
from .errors import AuthError, HttpError

COOKIE = "riskloop_token"


class Forbidden(HttpError):
    status = 403


@dataclass(frozen=True)
class Principal:
    owner: str
    role: str
    prefix: str

    def can(self, permission: str) -> bool:
        return tokens.allowed(self.role, permission)


def token_from(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE)


def authenticate(request: Request) -> Principal:
    """The caller, or 401. Caches the result on the request."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = token_from(request)
    if not token:
        raise AuthError("no API token: send 'Authorization: Bearer <token>' "
                        "(create one with 'riskloop token create')")
    settings = request.app.state.runtime.settings
    factory = sessionmaker(bind=get_engine(settings))
    with factory() as session, session.begin():
        rec = tokens.authenticate(session, token)
        principal = Principal(rec.owner, rec.role, rec.prefix) if rec is not None else None
    if principal is None:
        raise AuthError("the API token is unknown or revoked: ask an admin for a new one")
    request.state.principal = principal
    return principal


def require(permission: str) -> Callable[[Request], Principal]:
    """A FastAPI dependency: the caller, if their role grants ``permission``; 403 otherwise."""

    def dependency(request: Request) -> Principal:
        who = authenticate(request)
        if not who.can(permission):
            raise Forbidden(f"role '{who.role}' may not {permission.replace(':', ' ')}: "
                            "ask an admin for a token with the right role")
        return who

    dependency.__name__ = f"require_{permission.replace(':', '_').replace('-', '_')}"
    return dependency
