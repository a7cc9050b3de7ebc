"""``/api/v1`` review queue: predictions waiting for a human, and deciding them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from ...monitor import review
from ..auth import Principal, require
from .common import Body, IdPath, Name, Text, jsonable, unit

router = APIRouter(tags=["review"])


class DecisionIn(Body):
    label: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
    note: Text | None = None


@router.get("/review")
def list_items(request: Request, deployment: Annotated[Name | None, Query()] = None,
               status: Annotated[str, Query(pattern=r"^(open|decided|all)$")] = "open",
               limit: Annotated[int, Query(ge=1, le=1000)] = 100,
               who: Principal = Depends(require("read"))) -> list[dict[str, Any]]:
    """Review items, oldest first."""
    with unit(request, who) as (_s, session):
        return jsonable(review.list_items(session, deployment=deployment,
                                          status=None if status == "all" else status, limit=limit))


@router.post("/review/{item_id}/decide")
def decide(item_id: IdPath, body: DecisionIn, request: Request,
           who: Principal = Depends(require("review"))) -> dict[str, Any]:
    """Decide an item; the label feeds performance-drift monitoring."""
    with unit(request, who) as (settings, session):
        item = review.decide(session, item_id=item_id, label=body.label, actor=settings.actor,
                             note=body.note)
        return jsonable(review.review_dict(item))
