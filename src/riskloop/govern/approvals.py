"""Recording gate decisions, human approvals and stage changes (each audited, one transaction).

Human oversight (paper 2.3.3; EU AI Act Art. 14): for high-risk tiers the default policy asks
for a named person's sign-off before production. A sign-off is bound to the model digest, ages
out after ``approval.max_age_days`` and, with ``separation_of_duties``, cannot come from the
person who registered the model. Accepting a failed or missing rule is a separate, explicit
act (``--accept-risk``) that the policy must allow.

Promotion to production re-evaluates the gate at that moment and refuses anything but GO.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ConflictError, InputError, PolicyViolation
from ..store import audit
from ..store.models import Approval, GateDecision, ModelVersion, PolicyRecord, StageChange
from . import evidence
from .gates import GO, NO_GO, GateEvaluation, decide
from .policy import Policy

STAGES = ("registered", "staging", "production", "superseded", "retired")


def evaluate(session: Session, mv: ModelVersion, policy: Policy, *, now: datetime | None = None) -> GateEvaluation:
    pol = policy.resolve(tier=mv.tier, domain=mv.domain)
    ev = evidence.collect(session, mv, max_age_days=int(pol.get("evidence.max_age_days")), now=now)
    return decide(ev, pol)


def store_policy(session: Session, *, actor: str, policy: Policy) -> PolicyRecord:
    """The stored copy of a policy (one row per content digest)."""
    rec = session.execute(
        select(PolicyRecord).where(PolicyRecord.digest == policy.digest)
    ).scalar_one_or_none()
    if rec is None:
        rec = PolicyRecord(name=policy.name, digest=policy.digest, source=policy.source,
                           content=policy.text or policy.dump(), data=policy.data, created_by=actor)
        session.add(rec)
        session.flush()
        audit.append(session, actor=actor, action="policy.store", subject=f"policy:{policy.name}",
                     payload={"policy_id": rec.id, "digest": rec.digest, "source": rec.source})
    return rec


def record(
    session: Session, *, actor: str, mv: ModelVersion, policy: Policy, result: GateEvaluation,
    purpose: str = "gate",
) -> GateDecision:
    """Persist one gate evaluation and audit it."""
    rec = store_policy(session, actor=actor, policy=policy)
    d = result.as_dict()
    gd = GateDecision(model_id=mv.id, model_digest=mv.digest, policy_id=rec.id,
                      decision=result.decision, rules=d["rules"], risk=d["risk"], purpose=purpose,
                      created_by=actor)
    session.add(gd)
    session.flush()
    audit.append(session, actor=actor, action="gate.decide", subject=f"model:{mv.ref}",
                 payload={"decision_id": gd.id, "decision": gd.decision, "purpose": purpose,
                          "policy_digest": rec.digest, "digest": mv.digest,
                          "failing": result.failing(), "approval_id": result.approval_id})
    return gd


def approve(
    session: Session, *, actor: str, mv: ModelVersion, policy: Policy, reason: str,
    accept_risk: bool = False, now: datetime | None = None,
) -> tuple[Approval, GateEvaluation]:
    """Record a human sign-off (or an explicit risk acceptance) for a model version."""
    if not reason or not reason.strip():
        raise InputError("--reason is empty: say what was reviewed and why it is acceptable")
    pol = policy.resolve(tier=mv.tier, domain=mv.domain)
    if pol.get("approval.separation_of_duties") and actor == mv.created_by:
        raise PolicyViolation(
            f"{actor} registered {mv.ref} and cannot approve it (separation of duties): "
            "ask another person, or set approval.separation_of_duties: false in the policy"
        )
    result = evaluate(session, mv, policy, now=now)
    open_rules = result.failing()
    kind = "sign-off"
    if accept_risk:
        if not pol.get("approval.allow_risk_acceptance"):
            raise PolicyViolation(
                f"the policy '{policy.name}' does not allow risk acceptance for {mv.ref}: fix "
                f"{', '.join(open_rules) or 'the findings'} or set approval.allow_risk_acceptance: true"
            )
        if not open_rules:
            raise InputError(f"{mv.ref} has no failed or missing rule to accept: drop --accept-risk")
        kind = "risk-acceptance"
    elif result.decision == NO_GO:
        raise PolicyViolation(
            f"{mv.ref} is NO-GO ({', '.join(open_rules)}): a sign-off cannot override it; fix "
            "the findings, or use --accept-risk where the policy allows risk acceptance"
        )
    gd = record(session, actor=actor, mv=mv, policy=policy, result=result, purpose="approval")
    appr = Approval(model_id=mv.id, model_digest=mv.digest, decision_id=gd.id, kind=kind,
                    accepted_rules=open_rules if accept_risk else [], reason=reason.strip(),
                    approved_by=actor)
    session.add(appr)
    session.flush()
    audit.append(session, actor=actor, action="model.approve", subject=f"model:{mv.ref}",
                 payload={"approval_id": appr.id, "kind": kind, "decision_id": gd.id,
                          "gate_before": result.decision, "accepted_rules": appr.accepted_rules,
                          "reason": appr.reason, "digest": mv.digest})
    return appr, evaluate(session, mv, policy, now=now)


def revoke(
    session: Session, *, actor: str, mv: ModelVersion, approval_id: int, reason: str,
    policy: Policy, now: datetime | None = None,
) -> tuple[Approval, GateEvaluation]:
    """Withdraw a sign-off or risk acceptance of ``mv``: it stays on record, marked revoked,
    and no longer counts for the gate. A model already in production stays there; the
    gate's answer after the revocation says whether it should be demoted."""
    if not reason or not reason.strip():
        raise InputError("--reason is empty: say why the approval no longer holds")
    appr = session.get(Approval, approval_id)
    if appr is None or appr.model_id != mv.id:
        raise InputError(f"approval #{approval_id} is not one of {mv.ref}'s: see "
                         f"'riskloop gate {mv.ref}' or the model's history for its approvals")
    if appr.revoked_at is not None:
        raise ConflictError(f"approval #{approval_id} was already revoked by {appr.revoked_by}")
    appr.revoked_at = now or datetime.now(UTC)
    appr.revoked_by = actor
    appr.revoke_reason = reason.strip()
    session.flush()
    after = evaluate(session, mv, policy, now=now)
    audit.append(session, actor=actor, action="model.approval-revoke", subject=f"model:{mv.ref}",
                 payload={"approval_id": appr.id, "kind": appr.kind, "approved_by": appr.approved_by,
                          "reason": appr.revoke_reason, "digest": mv.digest, "gate_now": after.decision,
                          "stage": mv.stage})
    return appr, after


@dataclass(frozen=True)
class Promotion:
    """The outcome of :func:`promote`; ``refused`` holds the one-line reason when it was."""

    model: str
    to: str
    change_id: int | None
    gate: GateEvaluation | None
    refused: str | None = None

    def check(self) -> Promotion:
        if self.refused:
            raise PolicyViolation(self.refused)
        return self


def promote(
    session: Session, *, actor: str, mv: ModelVersion, policy: Policy, to: str, reason: str = "",
    now: datetime | None = None,
) -> Promotion:
    """Move a model version to another stage; production requires a GO gate decision now.

    A refused promotion is recorded too (its gate decision and an audit event), so the caller
    commits and then calls :meth:`Promotion.check`.
    """
    if to not in STAGES or to == "superseded":
        allowed = ", ".join(s for s in STAGES if s != "superseded")
        raise InputError(f"unknown stage '{to}': choose one of {allowed}")
    if mv.stage == to:
        raise ConflictError(f"{mv.ref} is already in stage '{to}'")
    result: GateEvaluation | None = None
    gd: GateDecision | None = None
    if to == "production":
        result = evaluate(session, mv, policy, now=now)
        gd = record(session, actor=actor, mv=mv, policy=policy, result=result, purpose="promotion")
        if result.decision != GO:
            audit.append(session, actor=actor, action="model.promote.refused",
                         subject=f"model:{mv.ref}",
                         payload={"to": to, "decision_id": gd.id, "decision": result.decision})
            hint = (" and record a sign-off with 'riskloop approve'"
                    if result.decision != NO_GO else "")
            return Promotion(mv.ref, to, None, result, refused=(
                f"{mv.ref} cannot go to production: the gate says {result.decision} "
                f"({', '.join(result.failing()) or 'human sign-off pending'}); see "
                f"'riskloop gate {mv.ref}'{hint}"))
        for other in session.execute(
            select(ModelVersion).where(ModelVersion.name == mv.name,
                                       ModelVersion.stage == "production", ModelVersion.id != mv.id)
        ).scalars():
            _move(session, actor=actor, mv=other, to="superseded", reason=f"superseded by {mv.ref}")
    change = _move(session, actor=actor, mv=mv, to=to, reason=reason, decision=gd,
                   approval_id=result.approval_id if result else None)
    return Promotion(mv.ref, to, change.id, result)


def _move(
    session: Session, *, actor: str, mv: ModelVersion, to: str, reason: str,
    decision: GateDecision | None = None, approval_id: int | None = None,
) -> StageChange:
    change = StageChange(model_id=mv.id, from_stage=mv.stage, to_stage=to, reason=reason,
                         decision_id=decision.id if decision else None, approval_id=approval_id,
                         created_by=actor)
    mv.stage = to
    session.add(change)
    session.flush()
    audit.append(session, actor=actor, action="model.stage", subject=f"model:{mv.ref}",
                 payload={"from": change.from_stage, "to": to, "reason": reason,
                          "decision_id": change.decision_id, "approval_id": approval_id})
    return change


def history(session: Session, mv: ModelVersion) -> dict[str, list[dict[str, Any]]]:
    """Gate decisions, approvals and stage changes recorded for a model version."""
    def iso(ts: datetime | None) -> str | None:
        ts = evidence.aware(ts)
        return ts.isoformat() if ts else None

    decisions = session.execute(select(GateDecision).where(GateDecision.model_id == mv.id)
                                .order_by(GateDecision.id)).scalars()
    approvals = session.execute(select(Approval).where(Approval.model_id == mv.id)
                                .order_by(Approval.id)).scalars()
    stages = session.execute(select(StageChange).where(StageChange.model_id == mv.id)
                             .order_by(StageChange.id)).scalars()
    return {
        "decisions": [{"id": d.id, "decision": d.decision, "purpose": d.purpose,
                       "policy": d.policy.name, "at": iso(d.created_at), "by": d.created_by}
                      for d in decisions],
        "approvals": [{"id": a.id, "kind": a.kind, "reason": a.reason, "by": a.approved_by,
                       "accepted_rules": a.accepted_rules, "at": iso(a.created_at),
                       "revoked_at": iso(a.revoked_at), "revoked_by": a.revoked_by,
                       "revoke_reason": a.revoke_reason}
                      for a in approvals],
        "stages": [{"id": s.id, "from": s.from_stage, "to": s.to_stage, "reason": s.reason,
                    "at": iso(s.created_at), "by": s.created_by} for s in stages],
    }
