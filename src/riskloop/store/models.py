"""The relational schema of the store (SQLAlchemy 2 declarative).

Alembic migrations in ``migrations/versions`` create exactly these tables; a test checks that
the migrated schema and this module agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_dataset_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[list[Any]] = mapped_column(JSON)
    rows: Mapped[int] = mapped_column(Integer)
    schema: Mapped[list[Any]] = mapped_column(JSON)
    sensitive: Mapped[list[Any]] = mapped_column(JSON, default=list)
    target: Mapped[str | None] = mapped_column(String(200), nullable=True)
    derived_from_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_versions.id"), nullable=True
    )
    derivation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))

    derived_from: Mapped[DatasetVersion | None] = relationship(remote_side="DatasetVersion.id")

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    framework: Mapped[str] = mapped_column(String(32))
    format: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[list[Any]] = mapped_column(JSON)
    domain: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(32))
    tier_reason: Mapped[str] = mapped_column(Text)
    impact: Mapped[dict[str, Any]] = mapped_column(JSON)
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    intended_use: Mapped[str | None] = mapped_column(Text, nullable=True)
    stage: Mapped[str] = mapped_column(String(32), default="registered")
    signature_status: Mapped[str] = mapped_column(String(32), default="unsigned")
    scan_status: Mapped[str] = mapped_column(String(32), default="not-scanned")
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    derived_from_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id"), nullable=True
    )
    derivation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))

    derived_from: Mapped[ModelVersion | None] = relationship(remote_side="ModelVersion.id")
    trained_on: Mapped[list[TrainingEdge]] = relationship(
        back_populates="model", cascade="all, delete-orphan"
    )

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class TrainingEdge(Base):
    """Lineage edge: this model version was trained on that dataset version."""

    __tablename__ = "training_edges"

    model_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), primary_key=True)

    model: Mapped[ModelVersion] = relationship(back_populates="trained_on")
    dataset: Mapped[DatasetVersion] = relationship()


class Signature(Base):
    __tablename__ = "signatures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    signature_path: Mapped[str] = mapped_column(Text)
    public_key_pem: Mapped[str] = mapped_column(Text)
    key_fingerprint: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    signed_by: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32), default="valid")
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AssessmentRun(Base):
    """One run of an assessment suite (evasion, privacy, supply-chain, ...) against a model."""

    __tablename__ = "assessment_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), index=True)
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_versions.id"), nullable=True
    )
    suite: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32), default="complete")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    code_version: Mapped[str] = mapped_column(String(64))
    model_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    dataset_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    trustworthy: Mapped[bool] = mapped_column(Boolean, default=True)
    artifacts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))

    findings: Mapped[list[FindingRecord]] = relationship(
        back_populates="run", cascade="all, delete-orphan"
    )


class FindingRecord(Base):
    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("assessment_runs.id"), index=True)
    threat_id: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text, default="")
    metric: Mapped[str | None] = mapped_column(String(128), nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    run: Mapped[AssessmentRun] = relationship(back_populates="findings")


class AuditEvent(Base):
    """One link of the hash-chained audit trail."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    subject: Mapped[str] = mapped_column(String(300), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """Checkpoint of the audit chain's head, updated with every append (one row, id=1)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


# --- Governance (migration 0002): policies, gate decisions, approvals, stage changes ---------


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


# --- Monitoring (migration 0003): deployments, client keys, prediction logs, alerts, review ---


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


# --- Incidents (migration 0004) -------------------------------------------------------------


class Incident(Base):
    """An AI incident and where it stands in the identify → contain → recover → close playbook."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    classification: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    signals: Mapped[list[Any]] = mapped_column(JSON, default=list)
    summary: Mapped[str] = mapped_column(Text, default="")
    report_deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    report_basis: Mapped[str | None] = mapped_column(Text, nullable=True)
    previous_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    recovered_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id"), nullable=True
    )
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    detected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    contained_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    restored_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    opened_by: Mapped[str] = mapped_column(String(200))

    deployment: Mapped[Deployment] = relationship()
    model: Mapped[ModelVersion] = relationship(foreign_keys=[model_id])
    transitions: Mapped[list[IncidentTransition]] = relationship(
        back_populates="incident", cascade="all, delete-orphan", order_by="IncidentTransition.id"
    )


class IncidentTransition(Base):
    """One timestamped step of an incident (who moved it from which state to which, and why)."""

    __tablename__ = "incident_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    incident: Mapped[Incident] = relationship(back_populates="transitions")


class IncidentSignal(Base):
    """Which alerts opened or joined an incident."""

    __tablename__ = "incident_signals"

    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), primary_key=True)


# --- API tokens (migration 0005) ------------------------------------------------------------


class ApiToken(Base):
    """A bearer token for the REST API and dashboard; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
