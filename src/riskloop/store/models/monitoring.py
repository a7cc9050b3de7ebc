"""Monitoring (migration 0003): deployments, client keys, prediction logs, alerts, review queue, watcher state."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, utcnow

if TYPE_CHECKING:
    from .inventory import ModelVersion


class Deployment(Base):
    """A model version served by the gateway under a name, with its mode and frozen references.

    ``config`` holds what the gateway needs without touching the training data again: the
    frozen drift reference profile, the watchdogs' calibration (thresholds and measured false
    positive rates), the policy thresholds in force and the input spec.
    """

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    fallback_rules: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # megabytes of JSON (profile, calibration): loaded on first access only
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, deferred=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))

    model: Mapped[ModelVersion] = relationship()


class ClientKey(Base):
    """An API key of one client of one deployment; only its SHA-256 is stored."""

    __tablename__ = "client_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    client: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PredictionLog(Base):
    """One prediction served by the gateway (or ingested as an event), logged exactly once."""

    __tablename__ = "prediction_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    client: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    row: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(16))
    inputs_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    inputs: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    output: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    answer: Mapped[str | None] = mapped_column(String(200), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    mode: Mapped[str] = mapped_column(String(16))
    served_by: Mapped[str] = mapped_column(String(16))
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    routed_to_review: Mapped[bool] = mapped_column(Boolean, default=False)
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )


class Alert(Base):
    """A watchdog or drift alarm raised on live traffic."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    threat_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    client: Mapped[str | None] = mapped_column(String(200), nullable=True)
    severity: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )


class ReviewItem(Base):
    """A low-confidence prediction waiting for (or decided by) a human reviewer."""

    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    prediction_log_id: Mapped[int] = mapped_column(
        ForeignKey("prediction_logs.id"), unique=True
    )
    status: Mapped[str] = mapped_column(String(16), index=True, default="open")
    reason: Mapped[str] = mapped_column(Text, default="")
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reviewer: Mapped[str | None] = mapped_column(String(200), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    prediction: Mapped[PredictionLog] = relationship()


class WatchState(Base):
    """Running state of one watchdog for one client (or the whole deployment: client '').

    Keyed by (deployment, watchdog, client), so gateway replicas can share it through the
    store.
    """

    __tablename__ = "watch_states"
    __table_args__ = (
        UniqueConstraint("deployment_id", "watchdog", "client", name="uq_watch_state_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    watchdog: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
