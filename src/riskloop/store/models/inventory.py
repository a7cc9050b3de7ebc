"""Datasets, model versions, lineage edges and signatures (the MAP step)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, utcnow


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
