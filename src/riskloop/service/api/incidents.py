"""``/api/v1`` incidents and their transitions: list, show, contain, recover, close.

Transitions need ``incident`` (risk officers). Recovery runs synchronously through
``monitor.recovery.recover`` (mitigate, re-assess, gate, redeploy only on GO), like
``riskloop incident recover``; its training is bounded by ``epochs``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from ...monitor import incidents
from ...store.models import Incident
from ..auth import Principal, require
from .common import Body, IdPath, Ref, Text, acting, jsonable, unit

router = APIRouter(tags=["incidents"])


class ContainIn(Body):
    mode: Annotated[str, Field(pattern=r"^[a-z]{1,20}$")] = "fallback"


class RecoverIn(Body):
    method: Annotated[str, Field(pattern=r"^[a-z-]{1,40}$")] | None = None
    data: Ref | None = None
    test: Ref | None = None
    epochs: Annotated[int, Field(ge=1, le=50)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class CloseIn(Body):
    note: Text = ""


@router.get("/incidents")
def list_incidents(request: Request, open_only: Annotated[bool, Query(alias="open")] = False,
                   who: Principal = Depends(require("read"))) -> list[dict[str, Any]]:
    with unit(request, who) as (_s, session):
        q = session.query(Incident).order_by(Incident.id)
        if open_only:
            q = q.filter(Incident.state.in_(incidents.OPEN_STATES))
        return jsonable([incidents.incident_dict(i) for i in q.all()])


@router.get("/incidents/{incident_id}")
def show(incident_id: IdPath, request: Request, who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """One incident with its timeline."""
    with unit(request, who) as (_s, session):
        return jsonable(incidents.incident_dict(incidents.get_incident(session, incident_id)))


@router.post("/incidents/{incident_id}/contain")
def contain(incident_id: IdPath, request: Request, body: ContainIn | None = None,
            who: Principal = Depends(require("incident"))) -> dict[str, Any]:
    """Switch the affected deployment to fallback (rules answer) or shadow mode."""
    with unit(request, who) as (settings, session):
        inc = incidents.contain(session, incidents.get_incident(session, incident_id),
                                actor=settings.actor, mode=(body or ContainIn()).mode)
        return jsonable(incidents.incident_dict(inc))


@router.post("/incidents/{incident_id}/recover")
def recover(incident_id: IdPath, request: Request, body: RecoverIn | None = None,
            who: Principal = Depends(require("incident"))) -> dict[str, Any]:
    """Sanitize or retrain, re-assess, gate, and redeploy only when the gate passes."""
    from ...monitor.recovery import recover as run_recovery

    b = body or RecoverIn()
    settings = acting(request, who)
    rep = run_recovery(settings, incident_id=incident_id, actor=settings.actor, method=b.method,
                       data=b.data, test=b.test, policy_path=None,
                       params={"epochs": b.epochs} if b.epochs else None, random_state=b.seed)
    return jsonable(rep.as_dict())


@router.post("/incidents/{incident_id}/close")
def close(incident_id: IdPath, request: Request, body: CloseIn | None = None,
          who: Principal = Depends(require("incident"))) -> dict[str, Any]:
    """Close a restored incident; its time to restore counts towards MTTR."""
    with unit(request, who) as (settings, session):
        inc = incidents.close(session, incidents.get_incident(session, incident_id),
                              actor=settings.actor, note=(body or CloseIn()).note)
        return jsonable(incidents.incident_dict(inc))
