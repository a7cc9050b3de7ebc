"""Plumbing shared by the ``/api/v1`` routers: one transaction per request with the token's
owner as the actor, the workspace policy, bounded path and body types."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import Path, Request
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy.orm import Session

from ...config import Settings
from ...errors import InputError
from ...govern import policy as policy_mod
from ...store.db import transaction
from ..auth import Principal

#: ``NAME@VER``, ``NAME@latest`` or ``NAME`` (latest); versions bounded so no store overflows.
REF_PATTERN = r"^[A-Za-z0-9._-]{1,200}(@(v?[0-9]{1,9}|latest))?$"
NAME_PATTERN = r"^[A-Za-z0-9._-]{1,200}$"
MAX_ID = 2**31 - 1

Ref = Annotated[str, StringConstraints(pattern=REF_PATTERN)]
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
#: Free text: bounded, without NUL (which no SQL text column accepts).
Text = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]
RefPath = Annotated[str, Path(pattern=REF_PATTERN, description="MODEL@VER or MODEL@latest")]
NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


class Body(BaseModel):
    """Request bodies refuse unknown keys."""

    model_config = ConfigDict(extra="forbid")


def settings_of(request: Request) -> Settings:
    return request.app.state.runtime.settings


def acting(request: Request, who: Principal) -> Settings:
    """The app's settings with the token's owner as the actor of every audit event."""
    return replace(settings_of(request), actor=who.owner)


@contextmanager
def unit(request: Request, who: Principal) -> Iterator[tuple[Settings, Session]]:
    """One request = one transaction, acted by the token's owner."""
    settings = acting(request, who)
    with transaction(settings) as session:
        yield settings, session


def policy(settings: Settings) -> policy_mod.Policy:
    return policy_mod.load(workspace=settings.workspace)


def in_workspace(settings: Settings, path: str, what: str) -> FsPath:
    """A server-side path for registration: it must lie inside the workspace folder, so an API
    caller can only register files that were placed there (never arbitrary server files)."""
    root = settings.workspace.resolve()
    p = (root / path).resolve() if not FsPath(path).is_absolute() else FsPath(path).resolve()
    if not p.is_relative_to(root):
        raise InputError(f"{what} '{path}' is outside the workspace {root}: copy it into the "
                         "workspace and give a path relative to it")
    try:
        found = p.exists()
    except OSError:
        found = False
    if not found:
        raise InputError(f"{what} '{path}' does not exist in the workspace {root}")
    return p


def jsonable(data: Any) -> Any:
    """Datetimes and other values as JSON (what the CLI's ``--json`` prints)."""
    import json

    return json.loads(json.dumps(data, default=str))
