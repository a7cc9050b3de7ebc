"""Governance (migration 0002): policies, gate decisions, approvals, stage changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, utcnow


class PolicyRecord(Base):
    """A risk-appetite policy as it was used, stored once per content digest."""

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    content: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class GateDecision(Base):
    """One evaluation of the go / no-go gate for a model version under a policy."""

    __tablename__ = "gate_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    model_digest: Mapped[str] = mapped_column(String(64))
    policy_id: Mapped[int] = mapped_column(ForeignKey("policies.id"))
    decision: Mapped[str] = mapped_column(String(32))
    rules: Mapped[list[Any]] = mapped_column(JSON)
    risk: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    purpose: Mapped[str] = mapped_column(String(32), default="gate")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))

    policy: Mapped[PolicyRecord] = relationship()


class Approval(Base):
    """A human sign-off (or an explicit risk acceptance) bound to a model digest."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    model_digest: Mapped[str] = mapped_column(String(64))
    decision_id: Mapped[int | None] = mapped_column(
        ForeignKey("gate_decisions.id"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    accepted_rules: Mapped[list[Any]] = mapped_column(JSON, default=list)
    reason: Mapped[str] = mapped_column(Text)
    approved_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # revocation (migration 0006): a revoked approval stays on record and no longer counts
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    revoke_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class StageChange(Base):
    """A move of a model version between lifecycle stages (promotion, supersession)."""

    __tablename__ = "stage_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    from_stage: Mapped[str] = mapped_column(String(32))
    to_stage: Mapped[str] = mapped_column(String(32))
    decision_id: Mapped[int | None] = mapped_column(
        ForeignKey("gate_decisions.id"), nullable=True
    )
    approval_id: Mapped[int | None] = mapped_column(ForeignKey("approvals.id"), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
