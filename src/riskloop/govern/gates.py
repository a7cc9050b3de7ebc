"""The go / no-go gate: a policy applied to a model version's evidence.

Paper 5.3: "a Robustness Score below 80% might automatically trigger a No-Go decision";
Table 4: "If score < 85%, deployment is blocked"; 2.3.3 and EU AI Act Art. 14: human
oversight for high-risk systems. NIST AI RMF MANAGE 1.1 ("a determination is made as to
whether ... deployment should proceed").

Each rule gives one row with its value, threshold and evidence run. Row statuses:

- ``pass`` / ``fail``: measured and compared;
- ``missing``: required, but no usable evidence (none, stale or untrustworthy);
- ``skipped``: not required by the policy and not measured;
- ``accepted``: failed or missing, and covered by a recorded approval;
- ``approved`` / ``pending``: the human sign-off row.

Decision: any ``fail`` (or ``missing`` when ``evidence.on_missing`` is no-go) → NO-GO; else a
``pending`` sign-off or a ``missing`` row under ``on_missing: needs-approval`` →
NEEDS-APPROVAL; else GO. Exit codes 0 / 1 / 3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any

from .evidence import ApprovalFact, EvidenceSet, worst_verdict
from .policy import Resolved
from .readings import Reading, ars_at, fidelity_at, metric, worst
from .scoring import RiskAssessment, assess

GO, NO_GO, NEEDS_APPROVAL = "GO", "NO-GO", "NEEDS-APPROVAL"
EXIT_CODES = {GO: 0, NO_GO: 1, NEEDS_APPROVAL: 3}


@dataclass(frozen=True)
class RuleResult:
    id: str
    title: str
    status: str
    required: bool
    value: Any
    threshold: str
    run_id: int | None
    detail: str
    policy_key: str
    line: int | None = None


@dataclass(frozen=True)
class MetricRule:
    """One policy threshold compared against one reading of one suite's newest run."""

    id: str
    title: str
    suite: str
    section: str  # rules.<section>
    limit_key: str  # key under the section holding the threshold
    op: str  # ">=" or "<="
    read: Callable[[Any, Resolved], Reading]
    threat: str

    def evaluate(self, ev: EvidenceSet, pol: Resolved) -> RuleResult:
        limit = pol.get(f"{self.section}.{self.limit_key}")
        required = bool(pol.get(f"{self.section}.required"))
        key = f"{self.section}.{self.limit_key}"
        base = RuleResult(self.id, self.title, "", required, None, f"{self.op} {limit:g}", None, "",
                          pol.key_of(key), pol.line_of(key))
        runs = ev.all(self.suite)
        if not runs:
            return replace(base, status="missing" if required else "skipped",
                           detail=ev.why_missing(self.suite))
        r, run = worst(runs, lambda x: self.read(x, pol), higher_is_worse=self.op == "<=")
        if run is None or r.value is None:
            return replace(base, status="missing" if required else "skipped",
                           run_id=runs[0].run_id, detail=r.note)
        ok = r.value >= limit if self.op == ">=" else r.value <= limit
        value = int(r.value) if isinstance(limit, int) and r.value.is_integer() else round(r.value, 6)
        more = f" (worst of {len(runs)} usable runs)" if len(runs) > 1 else ""
        return replace(base, status="pass" if ok else "fail", value=value,
                       run_id=run.run_id, detail=r.note + more)


METRIC_RULES: tuple[MetricRule, ...] = (
    MetricRule("evasion.ars", "Adversarial Robustness Score", "evasion", "rules.evasion", "min_ars",
               ">=", lambda run, pol: ars_at(run, pol.get("rules.evasion.eps")), "evasion"),
    MetricRule("supply-chain.critical", "Critical model-file findings", "supply-chain",
               "rules.supply_chain", "max_critical", "<=", lambda run, pol: metric(run, "critical"),
               "supply-chain"),
    MetricRule("privacy.membership-advantage", "Membership-inference advantage", "privacy",
               "rules.privacy", "max_membership_advantage", "<=",
               lambda run, pol: metric(run, "membership_advantage"), "membership-inference"),
    MetricRule("privacy.tpr-at-1pct-fpr", "Membership TPR at 1% FPR", "privacy", "rules.privacy",
               "max_tpr_at_1pct_fpr", "<=", lambda run, pol: metric(run, "tpr_at_1pct_fpr"),
               "membership-inference"),
    MetricRule("extraction.fidelity", "Extraction fidelity at the budget", "extraction",
               "rules.extraction", "max_fidelity", "<=",
               lambda run, pol: fidelity_at(run, pol.get("rules.extraction.budget")), "model-extraction"),
    MetricRule("integrity.label-issues", "Training labels flagged as wrong", "integrity",
               "rules.integrity", "max_label_issue_fraction", "<=",
               lambda run, pol: metric(run, "label_issue_fraction"), "data-poisoning"),
    MetricRule("integrity.backdoor", "Inputs flagged by the backdoor detector", "integrity",
               "rules.integrity", "max_backdoor_flagged_fraction", "<=",
               lambda run, pol: metric(run, "backdoor_flagged_fraction"), "backdoor"),
    MetricRule("fairness.demographic-parity", "Demographic parity difference", "fairness",
               "rules.fairness", "max_demographic_parity_difference", "<=",
               lambda run, pol: metric(run, "demographic_parity_difference"), "bias-injection"),
    MetricRule("fairness.equalized-odds", "Equalized odds difference", "fairness", "rules.fairness",
               "max_equalized_odds_difference", "<=",
               lambda run, pol: metric(run, "equalized_odds_difference"), "bias-injection"),
)
RULE_THREATS = {r.id: r.threat for r in METRIC_RULES} | {
    "supply-chain.verdict": "supply-chain", "signature.valid": "supply-chain",
    "approval.sign-off": "automation-bias"}


def _verdict_rule(ev: EvidenceSet, pol: Resolved) -> RuleResult:
    required = bool(pol.get("rules.supply_chain.required"))
    mode = pol.get("rules.supply_chain.needs_trust")
    key = "rules.supply_chain.needs_trust"
    base = RuleResult("supply-chain.verdict", "Model-file scan verdict", "", required, None,
                      f"clean (needs-trust: {mode})", None, "", pol.key_of(key), pol.line_of(key))
    verdict, run = worst_verdict(ev)
    source = f"run #{run.run_id}" if run else "model scan status"
    if verdict is None:
        return replace(base, status="missing" if required else "skipped",
                       detail=ev.why_missing("supply-chain") if not ev.all("supply-chain")
                       else "no run records a verdict")
    ok = verdict == "clean" or (verdict == "needs-trust" and (
        mode == "allow" or (mode == "require-trusted" and ev.model.trusted)))
    detail = source + ("" if verdict != "needs-trust" else
                       f"; model {'is' if ev.model.trusted else 'is not'} marked trusted")
    return replace(base, status="pass" if ok else "fail", value=verdict,
                   run_id=run.run_id if run else None, detail=detail)


def _signature_rule(ev: EvidenceSet, pol: Resolved) -> RuleResult:
    required = bool(pol.get("rules.signature.required"))
    key = "rules.signature.required"
    m = ev.model
    base = RuleResult("signature.valid", "Valid model signature", "", required, m.signature_status,
                      "signed over the registered digest", None, "", pol.key_of(key), pol.line_of(key))
    if m.signature_status == "invalid":
        return replace(base, status="fail", detail="the last verification failed: the files changed "
                       "or the signature does not match")
    if m.signature_status == "signed" and m.signature_digest == m.digest:
        return replace(base, status="pass", detail=f"signature over digest {m.digest[:12]}")
    if m.signature_status == "signed":
        return replace(base, status="fail", detail="the signature covers another digest")
    return replace(base, status="fail" if required else "skipped",
                   detail="not signed: run 'riskloop sign'")


@dataclass(frozen=True)
class GateEvaluation:
    model: str
    digest: str
    decision: str
    rules: tuple[RuleResult, ...]
    risk: RiskAssessment
    policy_name: str
    policy_source: str
    policy_digest: str
    applied: tuple[str, ...]
    approval_id: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.decision]

    def failing(self) -> list[str]:
        return [r.id for r in self.rules if r.status in ("fail", "missing")]

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "digest": self.digest, "decision": self.decision,
                "exit_code": self.exit_code, "policy": {"name": self.policy_name,
                "source": self.policy_source, "digest": self.policy_digest,
                "applied_overrides": list(self.applied)},
                "rules": [asdict(r) for r in self.rules], "approval_id": self.approval_id,
                "notes": list(self.notes),
                "risk": {"score": self.risk.score, "assessed": self.risk.assessed,
                         "applicable": self.risk.applicable, "gaps": self.risk.gaps}}


def valid_approvals(ev: EvidenceSet, pol: Resolved) -> tuple[list[ApprovalFact], list[str]]:
    """Approvals that still count (not revoked, same digest, young enough, separation of duties)."""
    ok: list[ApprovalFact] = []
    notes: list[str] = []
    max_age = timedelta(days=int(pol.get("approval.max_age_days")))
    for a in ev.approvals:
        if a.revoked_by is not None:
            notes.append(f"approval #{a.id} was revoked by {a.revoked_by}")
        elif a.model_digest != ev.model.digest:
            notes.append(f"approval #{a.id} covers another digest")
        elif ev.now - a.created_at > max_age:
            notes.append(f"approval #{a.id} is older than {max_age.days} days")
        elif pol.get("approval.separation_of_duties") and a.approved_by == ev.model.created_by:
            notes.append(f"approval #{a.id} was given by the model's registrant ({a.approved_by})")
        else:
            ok.append(a)
    return ok, notes


def decide(ev: EvidenceSet, pol: Resolved) -> GateEvaluation:
    """Evaluate every rule and reach GO, NO-GO or NEEDS-APPROVAL (a pure function)."""
    rows = [r.evaluate(ev, pol) for r in METRIC_RULES]
    rows.insert(2, _verdict_rule(ev, pol))
    rows.insert(3, _signature_rule(ev, pol))
    approvals, notes = valid_approvals(ev, pol)
    on_missing = pol.get("evidence.on_missing")
    allow_accept = bool(pol.get("approval.allow_risk_acceptance"))
    used: ApprovalFact | None = None
    for i, row in enumerate(rows):
        if row.status not in ("fail", "missing"):
            continue
        for a in approvals:
            sign_off_covers = row.status == "missing" and on_missing == "needs-approval"
            accepts = allow_accept and a.kind == "risk-acceptance" and row.id in a.accepted_rules
            if sign_off_covers or accepts:
                rows[i] = replace(row, status="accepted",
                                  detail=f"{row.detail}; accepted by approval #{a.id} ({a.approved_by})")
                used = used or a
                break
    needs_sign_off = bool(pol.get("approval.required"))
    if needs_sign_off or approvals:
        a = approvals[0] if approvals else None
        used = used or a
        rows.append(RuleResult(
            "approval.sign-off", "Human sign-off", "approved" if a else
            ("pending" if needs_sign_off else "skipped"), needs_sign_off,
            a.approved_by if a else None, "recorded approval", None,
            f"approval #{a.id}: {a.reason}" if a else "run 'riskloop approve' after review",
            pol.key_of("approval.required"), pol.line_of("approval.required")))
    statuses = [r.status for r in rows]
    blocking = "fail" in statuses or ("missing" in statuses and on_missing == "no-go")
    if blocking:
        decision = NO_GO
    elif "pending" in statuses or "missing" in statuses:
        decision = NEEDS_APPROVAL
    else:
        decision = GO
    return GateEvaluation(
        model=ev.model.ref, digest=ev.model.digest, decision=decision, rules=tuple(rows),
        risk=assess(ev, pol), policy_name=pol.policy.name, policy_source=pol.policy.source,
        policy_digest=pol.policy.digest, applied=pol.applied,
        approval_id=used.id if used and decision == GO else None, notes=tuple(notes))
