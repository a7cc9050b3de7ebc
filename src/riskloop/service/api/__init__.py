"""The REST API under ``/api/v1``: one router per resource, every route guarded by
``auth.require(permission)`` (401 without a valid token, 403 for a role without the
permission), one transaction per request with the token's owner as the actor, calling the
same library functions as the CLI. See ``docs/api.md``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ..auth import Principal, require
from . import (
    assessments,
    audit,
    deployments,
    governance,
    incidents,
    inventory,
    mitigations,
    review,
    tokens,
)

PREFIX = "/api/v1"
router = APIRouter(prefix=PREFIX)


@router.get("/whoami", tags=["tokens"])
def whoami(request: Request, who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """The caller's token owner, role and prefix."""
    return {"owner": who.owner, "role": who.role, "prefix": who.prefix}


for _module in (inventory, assessments, mitigations, governance, deployments, incidents, review,
                audit, tokens):
    router.include_router(_module.router)

__all__ = ["PREFIX", "router"]
