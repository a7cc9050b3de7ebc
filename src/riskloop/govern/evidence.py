"""Evidence: which stored assessment runs may speak for a model version, and which may not.

A run counts only when it measured this exact content (its ``model_digest`` equals the model's
digest), completed, did not doubt its own numbers (``trustworthy``) and is younger than the
policy's maximum age. Everything else is listed as rejected, with the reason, so reports can
show why a gate saw no evidence.

Every usable run of a suite counts, not only the newest: an attack that worked against these
exact bytes still works, so readers take the worst value across usable runs (the lowest robust
accuracy, the highest membership advantage, the worst scan verdict). A weaker re-run can never
talk a measured weakness away; only age (``evidence.max_age_days``) retires a run. Scoring and gates work on the plain data classes here, not on
database rows, so they can be tested as pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..inventory.signing import latest_signature
from ..store.models import Approval, AssessmentRun, ModelVersion

SUITES = ("evasion", "supply-chain", "privacy", "extraction", "integrity", "fairness")


def aware(ts: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything riskloop stores is UTC."""
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ModelFacts:
    """What the gate needs to know about the model version itself."""

    ref: str
    digest: str
    domain: str
    tier: str
    impact: dict[str, int]
    created_by: str
    signature_status: str = "unsigned"
    signature_digest: str | None = None
    scan_status: str = "not-scanned"
    trusted: bool = False
    path: str = ""

    @classmethod
    def of(cls, session: Session, mv: ModelVersion) -> ModelFacts:
        sig = latest_signature(session, mv)
        return cls(
            ref=mv.ref, digest=mv.digest, domain=mv.domain, tier=mv.tier,
            impact={k: int(v) for k, v in (mv.impact or {}).items()}, created_by=mv.created_by,
            signature_status=mv.signature_status, signature_digest=sig.digest if sig else None,
            scan_status=mv.scan_status, trusted=bool(mv.trusted), path=mv.path,
        )


@dataclass(frozen=True)
class RunEvidence:
    """One usable assessment run, detached from the database."""

    run_id: int
    suite: str
    metrics: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    findings: tuple[dict[str, Any], ...] = ()
    finished_at: datetime | None = None
    dataset_digest: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejected:
    run_id: int
    suite: str
    reason: str
    finished_at: datetime | None = None


@dataclass(frozen=True)
class ApprovalFact:
    id: int
    kind: str  # sign-off | risk-acceptance
    accepted_rules: tuple[str, ...]
    approved_by: str
    created_at: datetime
    model_digest: str
    reason: str = ""
    revoked_by: str | None = None


@dataclass
class EvidenceSet:
    """The usable runs per suite (newest first), the rejected runs, the approvals."""

    model: ModelFacts
    now: datetime
    max_age_days: int
    runs: dict[str, list[RunEvidence]] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    approvals: list[ApprovalFact] = field(default_factory=list)

    def get(self, suite: str) -> RunEvidence | None:
        """The newest usable run of a suite."""
        runs = self.runs.get(suite)
        return runs[0] if runs else None

    def all(self, suite: str) -> list[RunEvidence]:
        return list(self.runs.get(suite, []))

    def usable(self) -> list[RunEvidence]:
        return sorted((r for runs in self.runs.values() for r in runs), key=lambda r: -r.run_id)

    def why_missing(self, suite: str) -> str:
        reasons = [f"run #{r.run_id} {r.reason}" for r in self.rejected if r.suite == suite]
        return "; ".join(reasons[:3]) if reasons else f"no {suite} run recorded"


def classify(run: AssessmentRun, model: ModelFacts, *, now: datetime, max_age_days: int) -> str | None:
    """Why a run cannot count as evidence for this model (None: it can)."""
    if run.status != "complete":
        return f"did not complete (status {run.status})"
    if run.model_digest != model.digest:
        return (f"is stale: it measured digest {str(run.model_digest)[:12]}, the model is "
                f"{model.digest[:12]}")
    if not run.trustworthy:
        why = "; ".join(str(w) for w in (run.warnings or [])[:2]) or "no reason recorded"
        return f"is untrustworthy ({why})"
    when = aware(run.finished_at) or aware(run.started_at)
    if when is not None and now - when > timedelta(days=max_age_days):
        return f"is stale: {(now - when).days} days old (policy maximum {max_age_days})"
    return None


def collect(
    session: Session, mv: ModelVersion, *, max_age_days: int, now: datetime | None = None
) -> EvidenceSet:
    """Gather the evidence for one model version as of ``now``."""
    now = now or datetime.now(UTC)
    facts = ModelFacts.of(session, mv)
    ev = EvidenceSet(model=facts, now=now, max_age_days=max_age_days)
    runs = session.execute(
        select(AssessmentRun)
        .where(or_(AssessmentRun.model_id == mv.id, AssessmentRun.model_digest == mv.digest))
        .order_by(AssessmentRun.id.desc())
    ).scalars().all()
    for run in runs:
        when = aware(run.finished_at) or aware(run.started_at)
        reason = classify(run, facts, now=now, max_age_days=max_age_days)
        if reason:
            ev.rejected.append(Rejected(run.id, run.suite, reason, when))
            continue
        ev.runs.setdefault(run.suite, []).append(RunEvidence(
            run_id=run.id, suite=run.suite, metrics=dict(run.metrics or {}),
            params=dict(run.params or {}),
            findings=tuple(
                {"threat_id": f.threat_id, "severity": f.severity, "title": f.title,
                 "detail": f.detail, "metric": f.metric, "value": f.value,
                 "evidence": f.evidence}
                for f in run.findings
            ),
            finished_at=when, dataset_digest=run.dataset_digest,
            warnings=tuple(str(w) for w in (run.warnings or [])),
        ))
    ev.approvals = [
        ApprovalFact(id=a.id, kind=a.kind, accepted_rules=tuple(a.accepted_rules or []),
                     approved_by=a.approved_by, created_at=aware(a.created_at) or now,
                     model_digest=a.model_digest, reason=a.reason,
                     revoked_by=a.revoked_by if a.revoked_at is not None else None)
        for a in session.execute(
            select(Approval).where(Approval.model_id == mv.id).order_by(Approval.id.desc())
        ).scalars()
    ]
    return ev


def number(value: Any) -> float | None:
    """A metric as a float, or None when it is absent or not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


VERDICTS = ("clean", "needs-trust", "malicious")  # from best to worst


def worst_verdict(ev: EvidenceSet) -> tuple[str | None, RunEvidence | None]:
    """The worst scanner verdict of the usable supply-chain runs (or the model's scan status)."""
    found = [(str(r.metrics.get("verdict")), r) for r in ev.all("supply-chain")
             if r.metrics.get("verdict") in VERDICTS]
    if found:
        return max(found, key=lambda p: VERDICTS.index(p[0]))
    if ev.model.scan_status in VERDICTS:
        return ev.model.scan_status, None
    return None, None
