"""Persisting assessment runs and their findings (one transaction, audited)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import __version__
from ..findings import AssessmentResult
from ..store import audit
from ..store.models import AssessmentRun, DatasetVersion, FindingRecord, ModelVersion


def record_run(
    session: Session,
    *,
    actor: str,
    model: ModelVersion | None,
    dataset: DatasetVersion | None,
    result: AssessmentResult,
    started_at: datetime | None = None,
) -> AssessmentRun:
    """Store a completed run with its parameters, digests, metrics and findings."""
    run = AssessmentRun(
        model_id=model.id if model else None,
        dataset_id=dataset.id if dataset else None,
        suite=result.suite, status="complete", params=_jsonable(result.params),
        code_version=__version__,
        model_digest=model.digest if model else None,
        dataset_digest=dataset.digest if dataset else None,
        metrics=_jsonable(result.metrics), warnings=list(result.warnings),
        trustworthy=result.trustworthy, artifacts=_jsonable(result.artifacts),
        started_at=started_at or datetime.now(UTC), finished_at=datetime.now(UTC),
        created_by=actor,
    )
    for f in result.findings:
        run.findings.append(
            FindingRecord(
                threat_id=f.threat_id, severity=str(f.severity), title=f.title, detail=f.detail,
                metric=f.metric, value=f.value, evidence=_jsonable(f.evidence),
            )
        )
    session.add(run)
    session.flush()
    audit.append(
        session, actor=actor, action="assessment.record",
        subject=f"model:{model.ref}" if model else f"run:{run.id}",
        payload={"run": run.id, "suite": run.suite, "trustworthy": run.trustworthy,
                 "findings": len(run.findings), "dataset": dataset.ref if dataset else None,
                 "model_digest": run.model_digest, "dataset_digest": run.dataset_digest},
    )
    return run


def runs_for(session: Session, model: ModelVersion, suite: str | None = None) -> list[AssessmentRun]:
    stmt = select(AssessmentRun).where(AssessmentRun.model_id == model.id)
    if suite:
        stmt = stmt.where(AssessmentRun.suite == suite)
    return list(session.execute(stmt.order_by(AssessmentRun.id)).scalars())


def run_dict(run: AssessmentRun) -> dict[str, Any]:
    return {
        "id": run.id, "suite": run.suite, "status": run.status, "params": run.params,
        "code_version": run.code_version, "model_digest": run.model_digest,
        "dataset_digest": run.dataset_digest, "metrics": run.metrics, "warnings": run.warnings,
        "trustworthy": run.trustworthy, "artifacts": run.artifacts,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "created_by": run.created_by,
        "findings": [
            {"threat_id": f.threat_id, "severity": f.severity, "title": f.title,
             "detail": f.detail, "metric": f.metric, "value": f.value, "evidence": f.evidence}
            for f in run.findings
        ],
    }


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and tuples into plain JSON types."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj
