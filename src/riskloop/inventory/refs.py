"""``NAME@VERSION`` references and their resolution against the store."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import MSG_BAD_REF, MSG_UNKNOWN_REF, InputError, NotFoundError
from ..store.models import DatasetVersion, ModelVersion

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$")


@dataclass(frozen=True)
class Ref:
    name: str
    version: int | None  # None means latest

    def __str__(self) -> str:
        return f"{self.name}@{'latest' if self.version is None else self.version}"


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise InputError(
            f"bad name '{name}': use letters, digits, '.', '_' or '-' (at most 200, no '@')"
        )
    return name


def parse_ref(text: str) -> Ref:
    name, sep, ver = (text or "").partition("@")
    if not _NAME.match(name):
        raise InputError(MSG_BAD_REF.format(ref=text))
    if not sep or ver == "latest":
        return Ref(name, None)
    ver = ver[1:] if ver[:1] in "vV" else ver
    if not ver.isdigit() or int(ver) < 1:
        raise InputError(MSG_BAD_REF.format(ref=text))
    return Ref(name, int(ver))


def _resolve(session: Session, cls: type, kind: str, text: str):  # type: ignore[no-untyped-def]
    ref = parse_ref(text)
    stmt = select(cls).where(cls.name == ref.name)
    if ref.version is None:
        stmt = stmt.order_by(cls.version.desc()).limit(1)
    else:
        stmt = stmt.where(cls.version == ref.version)
    found = session.execute(stmt).scalar_one_or_none()
    if found is None:
        raise NotFoundError(MSG_UNKNOWN_REF.format(kind=kind, ref=text))
    return found


def resolve_model(session: Session, text: str) -> ModelVersion:
    return _resolve(session, ModelVersion, "model", text)


def resolve_dataset(session: Session, text: str) -> DatasetVersion:
    return _resolve(session, DatasetVersion, "dataset", text)


def next_version(session: Session, cls: type, name: str) -> int:
    current = session.execute(select(func.max(cls.version)).where(cls.name == name)).scalar()
    return int(current or 0) + 1
