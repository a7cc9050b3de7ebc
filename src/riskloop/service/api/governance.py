"""``/api/v1`` GOVERN: the policy, gate decisions, approvals, promotions, compliance, KPIs.

Reading is open to every role; replacing the policy needs ``policy`` (risk officers), a sign-off
or risk acceptance and a promotion need ``approve``, recording a gate decision needs ``assess``
(the engineers' CI step). Refusals by policy answer 403 with the reason.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from ...errors import ConflictError
from ...govern import approvals, compliance, kpi
from ...govern import policy as policy_mod
from ...inventory.refs import resolve_model
from ..auth import Principal, require
from .common import Body, IdPath, Ref, RefPath, Text, jsonable, policy, settings_of, unit

router = APIRouter(tags=["governance"])


class PolicyIn(Body):
    text: Annotated[str, Field(max_length=200_000, pattern=r"^[^\x00]*$",
                               description="The policy YAML.")]


class ApprovalIn(Body):
    reason: Text
    accept_risk: bool = False


class PromotionIn(Body):
    to: Annotated[str, Field(pattern=r"^[a-z]{1,20}$")]
    reason: Text = ""


def _policy_dict(pol: policy_mod.Policy) -> dict[str, Any]:
    return {"name": pol.name, "digest": pol.digest, "source": pol.source, "text": pol.text or pol.dump()}


@router.get("/policy")
def get_policy(request: Request, model: Annotated[Ref | None, Query()] = None,
               who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """The workspace policy; with ``?model=REF`` also the values resolved for that model."""
    with unit(request, who) as (settings, session):
        pol = policy(settings)
        out = _policy_dict(pol)
        if model:
            mv = resolve_model(session, model)
            out["model"] = mv.ref
            out["resolved"] = pol.resolve(tier=mv.tier, domain=mv.domain).data
        return jsonable(out)


@router.put("/policy")
def put_policy(body: PolicyIn, request: Request,
               who: Principal = Depends(require("policy"))) -> dict[str, Any]:
    """Replace the workspace policy: validated first (422 naming the line), then written to
    ``riskloop-policy.yaml`` and stored with an audit event ``policy.store``."""
    settings = settings_of(request)
    if os.environ.get("RISKLOOP_POLICY"):
        raise ConflictError("the policy comes from RISKLOOP_POLICY on this server: change that "
                            "file instead")
    target = settings.workspace / policy_mod.POLICY_FILE
    pol = policy_mod.parse(body.text, where=str(target))
    with unit(request, who) as (s, session):
        rec = approvals.store_policy(session, actor=s.actor, policy=pol)
        target.write_text(body.text, encoding="utf-8")
        return {**_policy_dict(pol), "policy_id": rec.id}


@router.get("/models/{ref}/gate")
def gate_preview(ref: RefPath, request: Request,
                 who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Evaluate the gate now without recording a decision."""
    with unit(request, who) as (settings, session):
        return jsonable(approvals.evaluate(session, resolve_model(session, ref), policy(settings)).as_dict())


@router.post("/models/{ref}/gate")
def gate(ref: RefPath, request: Request, who: Principal = Depends(require("assess"))) -> dict[str, Any]:
    """Evaluate the gate and record the decision (``riskloop gate``)."""
    with unit(request, who) as (settings, session):
        mv = resolve_model(session, ref)
        pol = policy(settings)
        result = approvals.evaluate(session, mv, pol)
        decision = approvals.record(session, actor=settings.actor, mv=mv, policy=pol, result=result)
        return jsonable({**result.as_dict(), "decision_id": decision.id})


@router.post("/models/{ref}/approve")
def approve(ref: RefPath, body: ApprovalIn, request: Request,
            who: Principal = Depends(require("approve"))) -> dict[str, Any]:
    """Record a sign-off (or, with ``accept_risk``, a risk acceptance) for a model version."""
    with unit(request, who) as (settings, session):
        mv = resolve_model(session, ref)
        appr, after = approvals.approve(session, actor=settings.actor, mv=mv, policy=policy(settings),
                                        reason=body.reason, accept_risk=body.accept_risk)
        return jsonable({"approval_id": appr.id, "kind": appr.kind, "model": mv.ref,
                         "approved_by": appr.approved_by, "gate": after.decision})


class RevocationIn(Body):
    reason: Text


@router.post("/models/{ref}/approvals/{approval_id}/revoke")
def revoke(ref: RefPath, approval_id: IdPath, body: RevocationIn,
           request: Request, who: Principal = Depends(require("approve"))) -> dict[str, Any]:
    """Withdraw a sign-off or risk acceptance: it stays on record and no longer counts."""
    with unit(request, who) as (settings, session):
        mv = resolve_model(session, ref)
        appr, after = approvals.revoke(session, actor=settings.actor, mv=mv, approval_id=approval_id,
                                       reason=body.reason, policy=policy(settings))
        return jsonable({"approval_id": appr.id, "model": mv.ref, "revoked_by": appr.revoked_by,
                         "gate": after.decision, "stage": mv.stage})


@router.post("/models/{ref}/promote")
def promote(ref: RefPath, body: PromotionIn, request: Request,
            who: Principal = Depends(require("approve"))) -> dict[str, Any]:
    """Move a model version to another stage; production needs a GO gate now. A refused
    promotion is recorded (gate decision + audit event) and answered 403."""
    with unit(request, who) as (settings, session):
        mv = resolve_model(session, ref)
        outcome = approvals.promote(session, actor=settings.actor, mv=mv, policy=policy(settings),
                                    to=body.to, reason=body.reason)
    outcome.check()
    return jsonable({"model": outcome.model, "stage": outcome.to, "change_id": outcome.change_id,
                     "gate": outcome.gate.decision if outcome.gate else None})


@router.get("/models/{ref}/history")
def history(ref: RefPath, request: Request, who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Gate decisions, approvals and stage changes of a model version."""
    with unit(request, who) as (_s, session):
        return jsonable(approvals.history(session, resolve_model(session, ref)))


@router.get("/models/{ref}/compliance")
def compliance_report(ref: RefPath, request: Request,
                      who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """The compliance mapping of a model version (NIST AI RMF, EU AI Act, ISO 42001)."""
    with unit(request, who) as (settings, session):
        return jsonable(compliance.report(session, resolve_model(session, ref), policy(settings)))


@router.get("/kpis")
def kpis(request: Request, who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """The five KPIs of the paper's Table 4 with their limits and status."""
    with unit(request, who) as (settings, session):
        return jsonable({"kpis": kpi.as_dicts(kpi.compute(session, policy(settings)))})
