"""Compliance evidence: which framework items a model version has evidence for, and which not.

Paper 4.3.1 and 6.2.1 align the loop with the NIST AI RMF, ISO/IEC 42001 and the EU AI Act;
4.3.2 asks for periodic audits with evidence. Each item below is checked against what the
store holds for one model version:

- ``evidenced``: the store holds the evidence the item asks for;
- ``partial``: some of it (the ``evidence`` text says what is there and what is not);
- ``missing``: nothing yet (the text says which command produces it);
- ``human``: only a person can write it (design choices, declarations); reports mark it.

Model Compliance Rate (paper Table 4) = the share of production models with a passing red-team
assessment (the evasion rule passes on fresh evidence) and a passing privacy audit (the
membership-inference rules pass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..findings import (
    ART15_CONFIDENTIALITY,
    ART15_DATA_POISONING,
    ART15_EVASION,
    ART15_MODEL_FLAWS,
    ART15_MODEL_POISONING,
    THREATS,
)
from ..store.models import AuditEvent, GateDecision, ModelVersion, StageChange
from . import approvals, evidence, hooks
from .gates import GateEvaluation, decide
from .policy import Policy
from .scoring import RiskAssessment

NIST, ANNEX_IV, ART15, ISO = ("NIST AI RMF 1.0", "EU AI Act Annex IV", "EU AI Act Art. 15(5)",
                              "ISO/IEC 42001 Annex A")
FRAMEWORKS = (NIST, ANNEX_IV, ART15, ISO)


@dataclass(frozen=True)
class Facts:
    ev: evidence.EvidenceSet
    gate: GateEvaluation
    owner: str | None
    intended_use: str | None
    tier_reason: str
    trained_on: tuple[str, ...]
    derived_from: str | None
    decisions: int
    stage_changes: int
    audit_events: int
    reports: int
    runtime: dict[str, str | None]

    @property
    def risk(self) -> RiskAssessment:
        return self.gate.risk

    def run(self, suite: str) -> evidence.RunEvidence | None:
        return self.ev.get(suite)


Check = Callable[[Facts], tuple[str, str]]


@dataclass(frozen=True)
class Item:
    framework: str
    id: str
    title: str
    check: Check


@dataclass(frozen=True)
class ItemStatus:
    framework: str
    id: str
    title: str
    status: str
    evidence: str


def _suites(*suites: str, what: str, cmd: str) -> Check:
    def check(f: Facts) -> tuple[str, str]:
        have = [s for s in suites if f.run(s)]
        runs = ", ".join(f"{s} run #{f.run(s).run_id}" for s in have)  # type: ignore[union-attr]
        if len(have) == len(suites):
            return "evidenced", f"{what}: {runs}"
        if have:
            lacking = ", ".join(s for s in suites if s not in have)
            return "partial", f"{what}: {runs}; no usable {lacking} run"
        return "missing", f"no usable {' or '.join(suites)} run: {cmd}"
    return check


def _runtime(kind: str, what: str, partial: Callable[[Facts], str | None] | None = None) -> Check:
    def check(f: Facts) -> tuple[str, str]:
        found = f.runtime.get(kind)
        if found:
            return "evidenced", found
        note = partial(f) if partial else None
        if note:
            return "partial", f"{note}; no {what} recorded yet"
        return "missing", f"no {what} recorded yet (Monitor step)"
    return check


def _measure_21(f: Facts) -> tuple[str, str]:
    runs = f.ev.usable()
    if not runs:
        return "missing", "no usable assessment run: run an assessment suite"
    with_data = [r for r in runs if r.dataset_digest]
    text = ", ".join(f"{r.suite} #{r.run_id}" for r in runs)
    if len(with_data) == len(runs) or all(r.dataset_digest or r.suite == "supply-chain" for r in runs):
        return "evidenced", f"runs with parameters, code version and test-data digests: {text}"
    return "partial", f"runs {text}; some without a registered test dataset digest"


def _measure_23(f: Facts) -> tuple[str, str]:
    run = f.run("evasion")
    if run and run.metrics.get("clean_accuracy") is not None:
        return "evidenced", (f"clean accuracy {run.metrics['clean_accuracy']} and robust accuracy "
                             f"on held-out data, run #{run.run_id}")
    if f.ev.runs:
        return "partial", "assessment runs exist, but none reports accuracy on held-out data"
    return "missing", "no usable run: run the evasion suite"


def _measure_26(f: Facts) -> tuple[str, str]:
    if not f.ev.runs:
        return "missing", "no usable evidence to compare against the risk tolerance"
    text = (f"gate {f.gate.decision} under policy '{f.gate.policy_name}', risk score "
            f"{f.risk.score}/100")
    if f.runtime.get("fallback"):
        return "evidenced", f"{text}; fail-safe: {f.runtime['fallback']}"
    return "partial", f"{text}; no fail-safe (fallback) test recorded yet"


def _manage_11(f: Facts) -> tuple[str, str]:
    if f.decisions:
        return "evidenced", f"{f.decisions} recorded gate decision(s); latest evaluation {f.gate.decision}"
    return "missing", "no recorded go / no-go decision: run 'riskloop gate'"


def _manage_24(f: Facts) -> tuple[str, str]:
    parts = []
    if f.owner:
        parts.append(f"accountable owner {f.owner}")
    if f.stage_changes:
        parts.append(f"{f.stage_changes} recorded stage change(s)")
    if len(parts) == 2:
        return "evidenced", "; ".join(parts)
    if parts:
        return "partial", "; ".join(parts) + ("; no stage change recorded" if f.owner else "; no owner")
    return "missing", "no owner and no stage change: register with --owner, use 'riskloop promote'"


def _art15(klass: str) -> Check:
    def check(f: Facts) -> tuple[str, str]:
        threats = [t for t in f.risk.threats if t.applicable and klass in THREATS[t.threat_id].eu_ai_act_15_5]
        done = [t for t in threats if t.likelihood is not None]
        names = ", ".join(f"{t.threat_id} ({t.level})" for t in done)
        gaps = ", ".join(t.threat_id for t in threats if t.likelihood is None)
        if threats and len(done) == len(threats):
            return "evidenced", f"assessed: {names}"
        if done:
            return "partial", f"assessed: {names}; not assessed: {gaps}"
        return "missing", f"not assessed: {gaps or 'no applicable threat'}"
    return check


def _annex_1(f: Facts) -> tuple[str, str]:
    have = [x for x in (f.intended_use and "intended use", f.owner and "owner") if x]
    text = f"inventory record with digest, version lineage{', ' + ', '.join(have) if have else ''}"
    if len(have) == 2:
        return "partial", text + "; provider, interactions and instructions for use: to be written"
    return "partial", text + "; missing intended use or owner"


def _provenance(f: Facts) -> tuple[str, str]:
    if f.trained_on:
        return "evidenced", f"trained on {', '.join(f.trained_on)} (content digests recorded)"
    return "missing", "no training dataset linked: register with --trained-on"


def _annex_2g(f: Facts) -> tuple[str, str]:
    status, text = _measure_21(f)
    if status == "missing":
        return status, text
    return "partial", text + "; dated and recorded in the hash-chained audit trail, signature of the report by a person: to be done"


def _annex_2h(f: Facts) -> tuple[str, str]:
    have = [x for x in ("supply-chain", "evasion") if f.run(x)]
    signed = f.ev.model.signature_status == "signed"
    parts = [f"{x} run #{f.run(x).run_id}" for x in have] + (["model signature"] if signed else [])  # type: ignore[union-attr]
    if len(parts) == 3:
        return "evidenced", ", ".join(parts)
    return ("partial" if parts else "missing"), (", ".join(parts) or "no scan, robustness test or signature")


def _annex_5(f: Facts) -> tuple[str, str]:
    return ("evidenced" if not f.risk.gaps else "partial",
            f"risk register: {f.risk.assessed}/{f.risk.applicable} threats assessed, score "
            f"{f.risk.score}/100" + (f"; gaps: {', '.join(f.risk.gaps)}" if f.risk.gaps else ""))


def _annex_6(f: Facts) -> tuple[str, str]:
    text = f"{f.audit_events} audit event(s), {f.stage_changes} stage change(s)"
    text += f", derived from {f.derived_from}" if f.derived_from else ""
    return ("evidenced" if f.audit_events else "missing"), text


def _human(note: str) -> Check:
    return lambda f: ("human", note)


def _iso_docs(f: Facts) -> tuple[str, str]:
    if f.reports:
        return "evidenced", f"{f.reports} report(s) written from the store (see audit trail)"
    return "missing", "no report written: run 'riskloop report'"


ITEMS: tuple[Item, ...] = (
    Item(NIST, "MEASURE 2.1", "Test sets, metrics and TEVV tools documented", _measure_21),
    Item(NIST, "MEASURE 2.3", "Performance demonstrated under deployment-like conditions", _measure_23),
    Item(NIST, "MEASURE 2.4", "Functionality and behaviour monitored in production",
         _runtime("monitoring", "production monitoring")),
    Item(NIST, "MEASURE 2.6", "Safety risks evaluated; residual risk within tolerance; fails safely", _measure_26),
    Item(NIST, "MEASURE 2.7", "Security and resilience evaluated and documented",
         _suites("evasion", "supply-chain", what="red-team and model-file scan", cmd="run the evasion and supply-chain suites")),
    Item(NIST, "MEASURE 2.10", "Privacy risk examined and documented",
         _suites("privacy", what="membership-inference audit", cmd="run the privacy suite")),
    Item(NIST, "MEASURE 2.11", "Fairness and bias evaluated and documented",
         _suites("fairness", what="bias audit", cmd="run the fairness suite")),
    Item(NIST, "MEASURE 2.13", "Effectiveness of the TEVV metrics and processes evaluated",
         _runtime("defence_fpr", "defence false-positive measurement",
                  lambda f: f"evasion run #{f.run('evasion').run_id} carries its own trust checks"  # type: ignore[union-attr]
                  if f.run("evasion") else None)),
    Item(NIST, "MANAGE 1.1", "Go / no-go determination on deployment", _manage_11),
    Item(NIST, "MANAGE 2.3", "Response to and recovery from newly identified risks",
         _runtime("incidents", "incident response")),
    Item(NIST, "MANAGE 2.4", "Mechanisms to supersede, disengage or deactivate", _manage_24),
    Item(NIST, "MANAGE 4.1", "Post-deployment monitoring plan implemented",
         _runtime("monitoring", "monitoring records",
                  lambda f: "policy defines drift, defence-FPR and MTTR thresholds")),
    Item(NIST, "MANAGE 4.3", "Incidents and errors tracked and communicated",
         _runtime("incidents", "incident records")),
    Item(ANNEX_IV, "1", "General description of the AI system", _annex_1),
    Item(ANNEX_IV, "2(a)", "Development methods, third-party and pre-trained components", _provenance),
    Item(ANNEX_IV, "2(b)", "Design choices, assumptions and trade-offs",
         _human("design rationale: to be written by the provider")),
    Item(ANNEX_IV, "2(d)", "Data requirements and datasheets", _provenance),
    Item(ANNEX_IV, "2(e)", "Assessment of human-oversight measures",
         lambda f: ("partial", "policy approval rule; oversight design: to be written")),
    Item(ANNEX_IV, "2(g)", "Validation and testing: data, metrics, dated and signed test logs", _annex_2g),
    Item(ANNEX_IV, "2(h)", "Cybersecurity measures", _annex_2h),
    Item(ANNEX_IV, "3", "Monitoring, functioning and control; per-group accuracy; limitations",
         _suites("fairness", "evasion", what="per-group and robustness results", cmd="run the fairness and evasion suites")),
    Item(ANNEX_IV, "4", "Appropriateness of the performance metrics",
         lambda f: ("partial", f"policy '{f.gate.policy_name}' documents each threshold's reason; "
                               "fitness for this system: to be argued by the provider")),
    Item(ANNEX_IV, "5", "Risk management system (Art. 9)", _annex_5),
    Item(ANNEX_IV, "6", "Changes through the lifecycle", _annex_6),
    Item(ANNEX_IV, "7", "Harmonised standards or other specifications applied",
         _human("list of standards applied: to be written by the provider")),
    Item(ANNEX_IV, "8", "EU declaration of conformity (Art. 47)",
         _human("declaration: to be signed by the provider")),
    Item(ANNEX_IV, "9", "Post-market monitoring plan (Art. 72)",
         _runtime("monitoring", "post-market monitoring records",
                  lambda f: "policy monitoring thresholds")),
    *(Item(ART15, k, f"Measures against {k}", _art15(k)) for k in
      (ART15_DATA_POISONING, ART15_MODEL_POISONING, ART15_EVASION, ART15_CONFIDENTIALITY,
       ART15_MODEL_FLAWS)),
    Item(ISO, "A.5.2", "AI system impact assessment process",
         lambda f: ("evidenced", f"risk profile and tier: {f.tier_reason}")),
    Item(ISO, "A.6.2.4", "AI system verification and validation",
         lambda f: ("evidenced", f"{len(f.ev.usable())} usable run(s), gate {f.gate.decision}")
         if f.ev.runs else ("missing", "no usable assessment run")),
    Item(ISO, "A.6.2.5", "AI system deployment", _manage_24),
    Item(ISO, "A.6.2.6", "AI system operation and monitoring", _runtime("monitoring", "monitoring records")),
    Item(ISO, "A.6.2.7", "AI system technical documentation", _iso_docs),
    Item(ISO, "A.6.2.8", "AI system recording of event logs",
         lambda f: ("evidenced", f"{f.audit_events} hash-chained audit event(s) for this model")
         if f.audit_events else ("missing", "no audit event")),
    Item(ISO, "A.7.4", "Quality of data for AI systems",
         _suites("integrity", what="label-issue and backdoor screening", cmd="run the integrity suite")),
    Item(ISO, "A.7.5", "Data provenance", _provenance),
    Item(ISO, "A.8.4", "Communication of incidents", _runtime("incidents", "incident communication")),
)


def facts(session: Session, mv: ModelVersion, policy: Policy) -> Facts:
    pol = policy.resolve(tier=mv.tier, domain=mv.domain)
    ev = evidence.collect(session, mv, max_age_days=int(pol.get("evidence.max_age_days")))
    subject = f"model:{mv.ref}"

    def count(stmt: Any) -> int:
        return int(session.execute(stmt).scalar() or 0)

    return Facts(
        ev=ev, gate=decide(ev, pol), owner=mv.owner, intended_use=mv.intended_use,
        tier_reason=mv.tier_reason, trained_on=tuple(e.dataset.ref for e in mv.trained_on),
        derived_from=mv.derived_from.ref if mv.derived_from else None,
        decisions=count(select(func.count()).select_from(GateDecision).where(GateDecision.model_id == mv.id)),
        stage_changes=count(select(func.count()).select_from(StageChange).where(StageChange.model_id == mv.id)),
        audit_events=count(select(func.count()).select_from(AuditEvent).where(AuditEvent.subject == subject)),
        reports=count(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.subject == subject, AuditEvent.action == "report.write")),
        runtime=hooks.runtime_evidence(session, mv),
    )


def check(f: Facts) -> list[ItemStatus]:
    out = []
    for item in ITEMS:
        status, text = item.check(f)
        out.append(ItemStatus(item.framework, item.id, item.title, status, text))
    return out


def passes_red_team(gate: GateEvaluation) -> bool:
    return any(r.id == "evasion.ars" and r.status == "pass" for r in gate.rules)


def passes_privacy_audit(gate: GateEvaluation) -> bool:
    rows = [r for r in gate.rules if r.id.startswith("privacy.")]
    return any(r.id == "privacy.membership-advantage" and r.status == "pass" for r in rows) and \
        not any(r.status in ("fail", "missing") for r in rows)


def report(session: Session, mv: ModelVersion, policy: Policy) -> dict[str, Any]:
    """The compliance map of one model version, with a summary per framework."""
    f = facts(session, mv, policy)
    items = check(f)
    summary = {fw: {s: sum(1 for i in items if i.framework == fw and i.status == s)
                    for s in ("evidenced", "partial", "missing", "human")} for fw in FRAMEWORKS}
    return {"model": mv.ref, "stage": mv.stage, "tier": mv.tier, "gate": f.gate.decision,
            "red_team_passed": passes_red_team(f.gate),
            "privacy_audit_passed": passes_privacy_audit(f.gate),
            "summary": summary, "items": [asdict(i) for i in items],
            "history": approvals.history(session, mv)}


def compliance_rate(session: Session, policy: Policy) -> dict[str, Any]:
    """Model Compliance Rate over production models (None when none is in production)."""
    models = session.execute(select(ModelVersion).where(ModelVersion.stage == "production")
                             .order_by(ModelVersion.name, ModelVersion.version)).scalars().all()
    rows = []
    for mv in models:
        pol = policy.resolve(tier=mv.tier, domain=mv.domain)
        ev = evidence.collect(session, mv, max_age_days=int(pol.get("evidence.max_age_days")))
        gate = decide(ev, pol)
        rows.append({"model": mv.ref, "red_team_passed": passes_red_team(gate),
                     "privacy_audit_passed": passes_privacy_audit(gate)})
    ok = sum(1 for r in rows if r["red_team_passed"] and r["privacy_audit_passed"])
    return {"value": ok / len(rows) if rows else None, "compliant": ok, "production": len(rows),
            "models": rows}
