"""Registering datasets and models: digests, schema, lineage, risk profile, audit events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import MSG_DUPLICATE_VERSION, ConflictError, InputError
from ..store import audit
from ..store.models import DatasetVersion, ModelVersion, TrainingEdge
from .datasets import column_names, inspect_dataset
from .digest import manifest_of
from .formats import detect_model_format
from .profiles import profile_for
from .refs import check_name, next_version, resolve_dataset, resolve_model

FRAMEWORKS = ("torch", "sklearn", "onnx")


def _version(session: Session, cls: type, kind: str, name: str, version: int | None) -> int:
    if version is None:
        return next_version(session, cls, name)
    if version < 1:
        raise InputError(f"bad --version {version}: versions are positive integers")
    exists = session.execute(
        select(cls.id).where(cls.name == name, cls.version == version)
    ).first()
    if exists:
        raise ConflictError(MSG_DUPLICATE_VERSION.format(kind=kind, name=name, version=version))
    return version


def register_dataset(
    session: Session,
    *,
    path: str | Path,
    name: str,
    actor: str,
    version: int | None = None,
    sensitive: list[str] | None = None,
    target: str | None = None,
    derived_from: DatasetVersion | None = None,
    derivation: dict[str, Any] | None = None,
) -> DatasetVersion:
    """Record a dataset version (content digest, rows, schema, sensitive attributes)."""
    check_name(name)
    p = Path(path).resolve()
    info = inspect_dataset(p)
    cols = column_names(info)
    for col in [*(sensitive or []), *([target] if target else [])]:
        if info.format != "folder" and col not in cols:
            raise InputError(
                f"column '{col}' is not in dataset '{p}' (columns: {', '.join(cols)})"
            )
    manifest = manifest_of(p)
    ver = _version(session, DatasetVersion, "dataset", name, version)
    ds = DatasetVersion(
        name=name, version=ver, path=str(p), format=info.format, digest=manifest.root,
        manifest=manifest.as_list(), rows=info.rows, schema=info.schema,
        sensitive=list(sensitive or []), target=target, created_by=actor,
        derived_from_id=derived_from.id if derived_from else None,
        derivation=derivation or {},
    )
    session.add(ds)
    session.flush()
    audit.append(
        session, actor=actor, action="dataset.register", subject=f"dataset:{ds.ref}",
        payload={"digest": ds.digest, "rows": ds.rows, "format": ds.format, "path": ds.path,
                 "sensitive": ds.sensitive, "target": target,
                 "derived_from": derived_from.ref if derived_from else None},
    )
    return ds


def register_model(
    session: Session,
    *,
    path: str | Path,
    name: str,
    framework: str,
    domain: str,
    actor: str,
    version: int | None = None,
    trained_on: list[str] | None = None,
    derived_from: str | None = None,
    owner: str | None = None,
    intended_use: str | None = None,
    tier: str | None = None,
    tier_reason: str | None = None,
    derivation: dict[str, Any] | None = None,
) -> ModelVersion:
    """Record a model version with its lineage and risk profile."""
    check_name(name)
    if framework not in FRAMEWORKS:
        raise InputError(f"unknown framework '{framework}': choose one of {', '.join(FRAMEWORKS)}")
    profile = profile_for(domain, tier=tier, justification=tier_reason)
    p = Path(path).resolve()
    manifest = manifest_of(p)
    fmt = detect_model_format(p, framework)
    datasets = [resolve_dataset(session, ref) for ref in (trained_on or [])]
    parent = resolve_model(session, derived_from) if derived_from else None
    ver = _version(session, ModelVersion, "model", name, version)
    mv = ModelVersion(
        name=name, version=ver, path=str(p), framework=framework, format=fmt,
        digest=manifest.root, manifest=manifest.as_list(), domain=domain, tier=profile.tier,
        tier_reason=profile.tier_reason, impact=profile.impact, owner=owner,
        intended_use=intended_use, created_by=actor,
        derived_from_id=parent.id if parent else None, derivation=derivation or {},
    )
    session.add(mv)
    session.flush()
    for ds in datasets:
        session.add(TrainingEdge(model_id=mv.id, dataset_id=ds.id))
    session.flush()
    audit.append(
        session, actor=actor, action="model.register", subject=f"model:{mv.ref}",
        payload={"digest": mv.digest, "framework": framework, "format": fmt, "path": mv.path,
                 "domain": domain, "tier": mv.tier, "tier_reason": mv.tier_reason,
                 "trained_on": [d.ref for d in datasets],
                 "derived_from": parent.ref if parent else None,
                 "derivation": derivation or {}},
    )
    # Every registration path (CLI, API, demo, mitigations) scans the files it records, so
    # no model version is ever unscanned; the scanner reads bytes only. Imported here
    # because assess builds on inventory (the one call that goes the other way).
    from ..assess.supply_chain.gate import record_scan

    record_scan(session, mv, actor=actor)
    return mv


def list_models(session: Session) -> list[ModelVersion]:
    return list(
        session.execute(select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version))
        .scalars()
    )


def list_datasets(session: Session) -> list[DatasetVersion]:
    return list(
        session.execute(select(DatasetVersion).order_by(DatasetVersion.name, DatasetVersion.version))
        .scalars()
    )


def model_dict(mv: ModelVersion) -> dict[str, Any]:
    return {
        "name": mv.name, "version": mv.version, "ref": mv.ref, "digest": mv.digest,
        "path": mv.path, "framework": mv.framework, "format": mv.format, "domain": mv.domain,
        "tier": mv.tier, "tier_reason": mv.tier_reason, "impact": mv.impact, "owner": mv.owner,
        "intended_use": mv.intended_use, "stage": mv.stage,
        "signature_status": mv.signature_status, "scan_status": mv.scan_status,
        "trusted": mv.trusted,
        "derived_from": mv.derived_from.ref if mv.derived_from else None,
        "derivation": mv.derivation,
        "trained_on": [e.dataset.ref for e in mv.trained_on],
        "files": len(mv.manifest), "created_at": mv.created_at.isoformat(),
        "created_by": mv.created_by,
    }


def dataset_dict(ds: DatasetVersion) -> dict[str, Any]:
    return {
        "name": ds.name, "version": ds.version, "ref": ds.ref, "digest": ds.digest,
        "path": ds.path, "format": ds.format, "rows": ds.rows, "schema": ds.schema,
        "sensitive": ds.sensitive, "target": ds.target,
        "derived_from": ds.derived_from.ref if ds.derived_from else None,
        "derivation": ds.derivation,
        "files": len(ds.manifest), "created_at": ds.created_at.isoformat(),
        "created_by": ds.created_by,
    }


def lineage_tree(mv: ModelVersion) -> dict[str, Any]:
    """Nested lineage: the model, the datasets it was trained on, the version it derives from."""
    return {
        "model": mv.ref, "digest": mv.digest, "derivation": mv.derivation,
        "trained_on": [
            _dataset_lineage(e.dataset) for e in mv.trained_on
        ],
        "derived_from": lineage_tree(mv.derived_from) if mv.derived_from else None,
    }


def _dataset_lineage(ds: DatasetVersion) -> dict[str, Any]:
    return {
        "dataset": ds.ref, "digest": ds.digest, "derivation": ds.derivation,
        "derived_from": _dataset_lineage(ds.derived_from) if ds.derived_from else None,
    }
