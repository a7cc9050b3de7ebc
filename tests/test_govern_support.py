"""Builders shared by the governance tests (no tests here): real model folders registered in a
real store, assessment runs recorded through ``record_run``, and detached evidence sets for
pure property tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from riskloop import AssessmentResult, Finding
from riskloop.assess.runs import record_run
from riskloop.govern.evidence import EvidenceSet, ModelFacts, RunEvidence
from riskloop.inventory import assets
from riskloop.store.models import AssessmentRun, ModelVersion
from tests.helpers import write_model_folder, write_npz

GOOD = {
    "evasion": {"ars": 0.9, "eps": 0.1, "clean_accuracy": 0.97,
                "curve": [{"eps": 0.05, "robust_accuracy": 0.95}, {"eps": 0.1, "robust_accuracy": 0.9},
                          {"eps": 0.2, "robust_accuracy": 0.7}]},
    "supply-chain": {"files": 2, "critical": 0, "needs_trust": 0, "verdict": "clean"},
    "privacy": {"membership_advantage": 0.04, "membership_auc": 0.53, "tpr_at_1pct_fpr": 0.02,
                "roc": {"fpr": [0.0, 0.01, 0.1, 0.5, 1.0], "tpr": [0.0, 0.02, 0.13, 0.55, 1.0]}},
}


def register(session: Session, root: Path, *, name: str = "m", domain: str = "general",
             actor: str = "alice", payload: bytes = b"w1", **kw: Any) -> ModelVersion:
    folder = write_model_folder(root / f"{name}-{payload.hex()}", payload=payload)
    return assets.register_model(session, path=folder, name=name, framework="torch", domain=domain,
                                 actor=actor, **kw)


def add_run(session: Session, mv: ModelVersion, suite: str, metrics: dict[str, Any], *,
            findings: list[Finding] | None = None, trustworthy: bool = True, age_days: float = 0,
            digest: str | None = None, warnings: list[str] | None = None) -> AssessmentRun:
    run = record_run(session, actor="alice", model=mv, dataset=None, result=AssessmentResult(
        suite=suite, metrics=metrics, findings=findings or [], trustworthy=trustworthy,
        warnings=warnings or []))
    if age_days:
        when = datetime.now(UTC) - timedelta(days=age_days)
        run.started_at = when
        run.finished_at = when
    if digest is not None:
        run.model_digest = digest
    session.flush()
    return run


def facts(*, domain: str = "general", impact: dict[str, int] | None = None, **kw: Any) -> ModelFacts:
    return ModelFacts(ref="m@1", digest="d" * 64, domain=domain, tier="minimal",
                      impact=impact or {"confidentiality": 3, "integrity": 3, "availability_safety": 3},
                      created_by="alice", **kw)


def evidence_set(suites: dict[str, dict[str, Any] | list[dict[str, Any]]], *,
                 model: ModelFacts | None = None, findings: dict[str, list[dict[str, Any]]] | None = None
                 ) -> EvidenceSet:
    """Detached evidence: one run per metrics dict, newest first, ids from 100 down."""
    ev = EvidenceSet(model=model or facts(), now=datetime.now(UTC), max_age_days=90)
    rid = 100
    for suite, metrics in suites.items():
        for m in metrics if isinstance(metrics, list) else [metrics]:
            ev.runs.setdefault(suite, []).append(RunEvidence(
                run_id=rid, suite=suite, metrics=m,
                findings=tuple((findings or {}).get(suite, []))))
            rid -= 1
    return ev


XSS = "<img src=x onerror=alert(1)>"


def rich_model(session: Session, root: Path) -> ModelVersion:
    """A model version with every kind of evidence a report draws, derived from a parent."""
    ds = assets.register_dataset(session, path=write_npz(root / "train.npz"), name="train", actor="alice")
    parent = register(session, root, name="clf", payload=b"p1", trained_on=[ds.ref],
                      owner="team-a", intended_use=f"demo {XSS}")
    add_run(session, parent, "evasion", {"ars": 0.41, "eps": 0.1, "clean_accuracy": 0.97})
    mv = register(session, root, name="clf", payload=b"p2", trained_on=[ds.ref],
                  derived_from=parent.ref, derivation={"method": "adversarial-training"},
                  owner="team-a", intended_use="read digits")
    add_run(session, mv, "evasion", GOOD["evasion"])
    add_run(session, mv, "supply-chain", {"files": 2, "critical": 0, "needs_trust": 1, "verdict": "needs-trust"},
            findings=[Finding("supply-chain", "medium", f"pickle needs trust {XSS}", detail="weights.pkl")])
    add_run(session, mv, "privacy", GOOD["privacy"])
    add_run(session, mv, "fairness", {
        "demographic_parity_difference": 0.12, "equalized_odds_difference": 0.08, "worst_group": "f",
        "by_group": {"f": {"selection_rate": 0.31, "accuracy": 0.9}, "m": {"selection_rate": 0.43, "accuracy": 0.93}}})
    add_run(session, mv, "extraction", {"fidelity_curve": [
        {"budget": 100, "fidelity": 0.55, "accuracy": 0.5}, {"budget": 1000, "fidelity": 0.81, "accuracy": 0.78},
        {"budget": 5000, "fidelity": 0.93, "accuracy": 0.9}], "fidelity_at_max_budget": 0.93})
    return mv
