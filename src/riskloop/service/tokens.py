"""API tokens and roles for the REST API and the dashboard.

A token looks like ``rlk_<prefix>_<secret>``. Only ``sha256(token)`` is stored; a token is
shown once, when it is created. Look-up is by prefix, then a timing-safe comparison of the
hashes (``hmac.compare_digest``). Tokens never appear in logs or audit payloads — only their
prefix does.

Roles and what they may do:

- ``viewer``: read everything.
- ``engineer``: read, register, assess, mitigate, deploy, decide review items.
- ``risk-officer``: read, policies, approvals, promotions, incidents (contain, recover,
  close), decide review items.
- ``admin``: everything, including tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import InputError, NotFoundError
from ..store import audit
from ..store.models import ApiToken

ROLES = ("viewer", "engineer", "risk-officer", "admin")
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset(ROLES),
    "inventory:write": frozenset({"engineer", "admin"}),
    "assess": frozenset({"engineer", "admin"}),
    "mitigate": frozenset({"engineer", "admin"}),
    "deploy": frozenset({"engineer", "admin"}),
    "review": frozenset({"engineer", "risk-officer", "admin"}),
    "policy": frozenset({"risk-officer", "admin"}),
    "approve": frozenset({"risk-officer", "admin"}),
    "incident": frozenset({"risk-officer", "admin"}),
    "tokens": frozenset({"admin"}),
}
_PREFIX = "rlk"


def allowed(role: str, permission: str) -> bool:
    return role in PERMISSIONS.get(permission, frozenset())


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, *, owner: str, role: str, actor: str, note: str = ""
) -> tuple[ApiToken, str]:
    """Create a token; returns the record and the secret (shown once, never stored)."""
    if role not in ROLES:
        raise InputError(f"unknown role '{role}': choose one of {', '.join(ROLES)}")
    if not owner or not owner.strip():
        raise InputError("a token needs an owner (--owner NAME): audit events name the owner")
    prefix = secrets.token_hex(4)
    while session.execute(select(ApiToken.id).where(ApiToken.prefix == prefix)).first():
        prefix = secrets.token_hex(4)
    token = f"{_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    rec = ApiToken(owner=owner.strip(), role=role, prefix=prefix, token_hash=_hash(token),
                   note=note, created_by=actor)
    session.add(rec)
    session.flush()
    audit.append(session, actor=actor, action="token.create", subject=f"token:{prefix}",
                 payload={"owner": rec.owner, "role": role})
    return rec, token


def authenticate(session: Session, token: str | None) -> ApiToken | None:
    """The active token record for ``token``, or None. Timing-safe."""
    if not token or not token.startswith(_PREFIX + "_"):
        return None
    parts = token.split("_", 2)
    if len(parts) != 3:
        return None
    rec = session.execute(select(ApiToken).where(ApiToken.prefix == parts[1])).scalar_one_or_none()
    candidate = _hash(token)
    stored = rec.token_hash if rec is not None else "0" * 64
    ok = hmac.compare_digest(candidate, stored)
    if rec is None or not ok or rec.revoked_at is not None:
        return None
    return rec


def revoke(session: Session, *, prefix: str, actor: str) -> ApiToken:
    rec = session.execute(select(ApiToken).where(ApiToken.prefix == prefix)).scalar_one_or_none()
    if rec is None:
        raise NotFoundError(f"unknown token '{prefix}': run 'riskloop token list'")
    rec.revoked_at = datetime.now(UTC)
    audit.append(session, actor=actor, action="token.revoke", subject=f"token:{prefix}",
                 payload={"owner": rec.owner, "role": rec.role})
    return rec


def list_tokens(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(select(ApiToken).order_by(ApiToken.id)).scalars()
    return [
        {"prefix": r.prefix, "owner": r.owner, "role": r.role, "note": r.note,
         "created_at": r.created_at.isoformat(), "created_by": r.created_by,
         "revoked": r.revoked_at is not None}
        for r in rows
    ]


def has_admin(session: Session) -> bool:
    n = session.execute(
        select(func.count()).select_from(ApiToken)
        .where(ApiToken.role == "admin", ApiToken.revoked_at.is_(None))
    ).scalar()
    return bool(n)
