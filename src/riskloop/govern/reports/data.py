"""Everything a report shows, gathered once from the store into plain JSON-able data.

The HTML, Markdown, JSON and Annex IV renderers all read this dictionary, so the formats
cannot disagree. The gate decision in a report is evaluated when the report is written (and
says so); it is not recorded as a decision.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from ... import __version__
from ...findings import THREATS
from ...inventory.assets import lineage_tree, model_dict
from ...store.models import AuditHead, ModelVersion
from .. import approvals, compliance, evidence, scoring
from ..policy import Policy
from ..readings import ars_at, fidelity_at


def _iso(ts: datetime | None) -> str | None:
    ts = evidence.aware(ts)
    return ts.isoformat(timespec="seconds") if ts else None


def _run_row(r: evidence.RunEvidence, used: set[int]) -> dict[str, Any]:
    return {"run_id": r.run_id, "suite": r.suite, "finished_at": _iso(r.finished_at),
            "dataset_digest": r.dataset_digest, "findings": len(r.findings),
            "status": "used" if r.run_id in used else "usable",
            "note": "; ".join(r.warnings[:2])}


def build(session: Session, mv: ModelVersion, policy: Policy, *, now: datetime | None = None) -> dict[str, Any]:
    """The report data of one model version."""
    f = compliance.facts(session, mv, policy)
    gate, ev = f.gate, f.ev
    pol = policy.resolve(tier=mv.tier, domain=mv.domain)
    items = compliance.check(f)
    used = {r.run_id for r in gate.rules if r.run_id} | {t.run_id for t in gate.risk.threats if t.run_id}
    evidence_rows = [_run_row(r, used) for r in ev.usable()]
    evidence_rows += [{"run_id": r.run_id, "suite": r.suite, "finished_at": _iso(r.finished_at),
                       "dataset_digest": None, "findings": None, "status": "rejected",
                       "note": r.reason} for r in ev.rejected]
    evidence_rows.sort(key=lambda r: -r["run_id"])
    head = session.get(AuditHead, 1)
    data: dict[str, Any] = {
        "generated_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "riskloop_version": __version__,
        "model": model_dict(mv),
        "lineage": lineage_tree(mv),
        "policy": {"name": policy.name, "source": policy.source, "digest": policy.digest,
                   "applied_overrides": list(pol.applied),
                   "min_ars": pol.get("rules.evasion.min_ars"), "eps": pol.get("rules.evasion.eps"),
                   "max_fidelity": pol.get("rules.extraction.max_fidelity"),
                   "max_membership_advantage": pol.get("rules.privacy.max_membership_advantage"),
                   "max_dp": pol.get("rules.fairness.max_demographic_parity_difference"),
                   "max_eo": pol.get("rules.fairness.max_equalized_odds_difference")},
        "gate": gate.as_dict(),
        "risk": gate.risk.as_dict(),
        "matrix": scoring.matrix(),
        "residual": _residual(session, mv, policy, gate.risk),
        "evidence": evidence_rows,
        "charts": _chart_data(ev, pol),
        "supply_chain": _supply_chain(ev),
        "compliance": {"items": [asdict(i) for i in items],
                       "summary": {fw: {s: sum(1 for i in items if i.framework == fw and i.status == s)
                                        for s in ("evidenced", "partial", "missing", "human")}
                                   for fw in compliance.FRAMEWORKS},
                       "red_team_passed": compliance.passes_red_team(gate),
                       "privacy_audit_passed": compliance.passes_privacy_audit(gate)},
        "history": approvals.history(session, mv),
        "audit_head": {"seq": head.seq, "hash": head.hash} if head else None,
        "threats": {tid: {"name": t.name, "atlas": list(t.atlas), "eu_ai_act_15_5": list(t.eu_ai_act_15_5),
                          "layer": t.layer, "paper": t.paper} for tid, t in THREATS.items()},
    }
    return data


def _residual(session: Session, mv: ModelVersion, policy: Policy,
              risk: scoring.RiskAssessment) -> dict[str, Any] | None:
    parent = mv.derived_from
    if parent is None:
        return None
    pp = policy.resolve(tier=parent.tier, domain=parent.domain)
    pev = evidence.collect(session, parent, max_age_days=int(pp.get("evidence.max_age_days")))
    before = scoring.assess(pev, pp)
    return {"parent": parent.ref, "method": (mv.derivation or {}).get("method"),
            "score_before": before.score, "score_after": risk.score,
            "rows": scoring.compare(before, risk)}


def _chart_data(ev: evidence.EvidenceSet, pol: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    eva = ev.get("evasion")
    if eva:
        curve = [{"eps": p.get("eps"), "robust_accuracy": p.get("robust_accuracy"),
                  "verified_accuracy": p.get("verified_accuracy"), "attack": p.get("attack")} for p in eva.metrics.get("curve") or []
                 if isinstance(p, dict)]
        reading = ars_at(eva, pol.get("rules.evasion.eps"))
        out["robustness"] = {"run_id": eva.run_id, "curve": curve, "ars": reading.value,
                             "at": reading.at, "clean_accuracy": eva.metrics.get("clean_accuracy")}
    roc_run = next((r for r in ev.all("privacy") if isinstance(r.metrics.get("roc"), dict)), None)
    if roc_run:
        roc = roc_run.metrics["roc"]
        out["roc"] = {"run_id": roc_run.run_id, "fpr": list(roc.get("fpr") or []),
                      "tpr": list(roc.get("tpr") or []),
                      "auc": roc_run.metrics.get("membership_auc"),
                      "advantage": roc_run.metrics.get("membership_advantage"),
                      "tpr_at_1pct_fpr": roc_run.metrics.get("tpr_at_1pct_fpr")}
    fair = ev.get("fairness")
    if fair:
        out["fairness"] = {"run_id": fair.run_id, "groups": _groups(fair.metrics),
                           "gaps": {k: fair.metrics.get(k) for k in (
                               "demographic_parity_difference", "equalized_odds_difference",
                               "fpr_gap") if evidence.number(fair.metrics.get(k)) is not None},
                           "worst_group": fair.metrics.get("worst_group")}
    ext = ev.get("extraction")
    if ext:
        curve = [p for p in ext.metrics.get("fidelity_curve") or [] if isinstance(p, dict)]
        reading = fidelity_at(ext, pol.get("rules.extraction.budget"))
        out["extraction"] = {"run_id": ext.run_id, "curve": curve, "fidelity": reading.value}
    return out


def _groups(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-group rows from ``by_group`` ({group: {metric: value}} or [{group:..., ...}])."""
    raw = metrics.get("by_group") or metrics.get("groups")
    rows: list[dict[str, Any]] = []
    if isinstance(raw, dict):
        for group, vals in raw.items():
            if isinstance(vals, dict):
                rows.append({"group": str(group), **{k: v for k, v in vals.items()
                                                     if evidence.number(v) is not None}})
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and "group" in item:
                rows.append({"group": str(item["group"]), **{k: v for k, v in item.items()
                                                             if evidence.number(v) is not None}})
    return rows


def _supply_chain(ev: evidence.EvidenceSet) -> dict[str, Any]:
    run = ev.get("supply-chain")
    verdict, _ = evidence.worst_verdict(ev)
    if run is None:
        return {"run_id": None, "verdict": verdict, "metrics": {}, "findings": []}
    return {"run_id": run.run_id, "verdict": verdict,
            "metrics": {k: run.metrics.get(k) for k in ("files", "critical", "needs_trust", "verdict")},
            "findings": [f for f in run.findings]}
