"""``/api/v1`` deployments: list and show, create, switch mode, alerts, per-client keys.

Creating and changing deployments and their client keys needs ``deploy`` (engineers); a
deployment whose gate is not GO cannot be active (the same check as ``riskloop deploy``).
Fallback rules files and ``--trust`` stay with the CLI (they name server files / run pickles).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from ...errors import NotFoundError
from ...monitor import deployments as deps
from ...store.models import ClientKey
from ..auth import Principal, require
from .common import MAX_ID, Body, IdPath, Name, NamePath, Ref, Text, jsonable, policy, unit

router = APIRouter(tags=["deployments"])
Mode = Annotated[str, Field(pattern=r"^[a-z]{1,20}$", description="active, shadow, fallback or off")]


class DeploymentIn(Body):
    model: Ref
    name: Name
    mode: Mode = "active"
    reference: Ref | None = None
    holdout: Ref | None = None
    window: Annotated[int, Field(ge=10, le=1_000_000)] | None = None
    like: Name | None = None


class ModeIn(Body):
    mode: Mode
    reason: Text = ""


class KeyIn(Body):
    client: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]


@router.get("/deployments")
def list_deployments(request: Request, who: Principal = Depends(require("read"))) -> list[dict[str, Any]]:
    with unit(request, who) as (_s, session):
        return jsonable([deps.deployment_dict(session, d) for d in deps.list_all(session)])


@router.get("/deployments/{name}")
def show(name: NamePath, request: Request, who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """One deployment with its watchdogs' calibration, drift window and counters."""
    with unit(request, who) as (_s, session):
        return jsonable(deps.deployment_dict(session, deps.get(session, name), detail=True))


@router.get("/deployments/{name}/alerts")
def alerts(name: NamePath, request: Request,
           limit: Annotated[int, Query(ge=1, le=1000)] = 50,
           who: Principal = Depends(require("read"))) -> list[dict[str, Any]]:
    with unit(request, who) as (_s, session):
        return jsonable(deps.recent_alerts(session, deps.get(session, name).id, limit=limit))


@router.post("/deployments", status_code=201)
def create(body: DeploymentIn, request: Request, who: Principal = Depends(require("deploy"))) -> dict[str, Any]:
    """Create a deployment (``riskloop deploy``)."""
    with unit(request, who) as (settings, session):
        dep = deps.create(session, settings, model=body.model, name=body.name, actor=settings.actor,
                          mode=body.mode, reference=body.reference, holdout=body.holdout,
                          policy=policy(settings), window=body.window, like=body.like)
        return jsonable(deps.deployment_dict(session, dep, detail=True))


@router.post("/deployments/{name}/mode")
def set_mode(name: NamePath, body: ModeIn, request: Request,
             who: Principal = Depends(require("deploy"))) -> dict[str, Any]:
    """Switch the mode; running gateways follow within a second."""
    with unit(request, who) as (settings, session):
        pol = policy(settings) if body.mode == "active" else None
        dep = deps.set_mode(session, settings, name=name, mode=body.mode, actor=settings.actor,
                            reason=body.reason, policy=pol)
        return {"name": dep.name, "mode": dep.mode}


@router.get("/deployments/{name}/keys")
def list_keys(name: NamePath, request: Request, who: Principal = Depends(require("deploy"))) -> list[dict[str, Any]]:
    """Client keys of a deployment (prefixes only, never the keys)."""
    with unit(request, who) as (_s, session):
        return jsonable(deps.list_keys(session, name=name))


@router.post("/deployments/{name}/keys", status_code=201)
def create_key(name: NamePath, body: KeyIn, request: Request,
               who: Principal = Depends(require("deploy"))) -> dict[str, Any]:
    """A new client key for the gateway; returned once, only its hash is stored."""
    with unit(request, who) as (settings, session):
        rec, key = deps.create_key(session, name=name, client=body.client, actor=settings.actor)
        return {"id": rec.id, "deployment": name, "client": rec.client, "key": key}


@router.delete("/deployments/{name}/keys/{key_id}")
def revoke_key(name: NamePath, key_id: IdPath, request: Request,
               who: Principal = Depends(require("deploy"))) -> dict[str, Any]:
    with unit(request, who) as (settings, session):
        dep = deps.get(session, name)
        rec = session.get(ClientKey, key_id) if key_id <= MAX_ID else None
        if rec is None or rec.deployment_id != dep.id:
            raise NotFoundError(f"deployment '{name}' has no client key {key_id}: "
                                f"GET /api/v1/deployments/{name}/keys lists them")
        rec = deps.revoke_key(session, key_id=key_id, actor=settings.actor)
        return {"id": rec.id, "deployment": name, "client": rec.client, "revoked": True}
