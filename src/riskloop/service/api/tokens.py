"""``/api/v1`` API tokens (admin only): list, create (the secret is returned once), revoke."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import Field

from .. import tokens
from ..auth import Principal, require
from .common import Body, Text, jsonable, unit

router = APIRouter(tags=["tokens"])


class TokenIn(Body):
    owner: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
    role: Annotated[str, Field(pattern=r"^[a-z-]{1,20}$", description=", ".join(tokens.ROLES))]
    note: Text = ""


@router.get("/tokens")
def list_tokens(request: Request, who: Principal = Depends(require("tokens"))) -> list[dict[str, Any]]:
    with unit(request, who) as (_s, session):
        return jsonable(tokens.list_tokens(session))


@router.post("/tokens", status_code=201)
def create(body: TokenIn, request: Request, who: Principal = Depends(require("tokens"))) -> dict[str, Any]:
    """A new token; the secret is in this answer only (the store keeps its hash)."""
    with unit(request, who) as (settings, session):
        rec, secret = tokens.create_token(session, owner=body.owner, role=body.role,
                                          actor=settings.actor, note=body.note)
        return {"prefix": rec.prefix, "owner": rec.owner, "role": rec.role, "token": secret}


@router.delete("/tokens/{prefix}")
def revoke(prefix: Annotated[str, Path(pattern=r"^[0-9a-f]{1,16}$")], request: Request,
           who: Principal = Depends(require("tokens"))) -> dict[str, Any]:
    with unit(request, who) as (settings, session):
        rec = tokens.revoke(session, prefix=prefix, actor=settings.actor)
        return {"prefix": rec.prefix, "owner": rec.owner, "role": rec.role, "revoked": True}
