"""``/api/v1`` audit log and its verification."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select

from ...store.audit import HEAD_FILE, verify_chain
from ...store.models import AuditEvent
from ..auth import Principal, require
from .common import jsonable, unit

router = APIRouter(tags=["audit"])


@router.get("/audit")
def events(request: Request, limit: Annotated[int, Query(ge=0, le=10_000)] = 50,
           action: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None,
           who: Principal = Depends(require("read"))) -> list[dict[str, Any]]:
    """The newest ``limit`` events (0 = all), oldest first, as ``riskloop audit --json``."""
    with unit(request, who) as (_s, session):
        stmt = select(AuditEvent).order_by(AuditEvent.seq.desc())
        if action:
            stmt = stmt.where(AuditEvent.action == action)
        if limit:
            stmt = stmt.limit(limit)
        rows = reversed(session.execute(stmt).scalars().all())
        return jsonable([{"seq": e.seq, "ts": e.ts, "actor": e.actor, "action": e.action,
                          "subject": e.subject, "payload": e.payload, "prev_hash": e.prev_hash,
                          "hash": e.hash} for e in rows])


@router.get("/audit/verify")
def verify(request: Request, who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Check the hash chain; ``ok`` false names the first bad event (the answer is still 200)."""
    with unit(request, who) as (settings, session):
        rep = verify_chain(session, head_file=settings.state_dir / HEAD_FILE)
        return {"ok": rep.ok, "events": rep.events, "head_seq": rep.head_seq,
                "head_hash": rep.head_hash, "problem": rep.problem, "bad_seq": rep.bad_seq}
