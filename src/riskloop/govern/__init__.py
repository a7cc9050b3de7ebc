"""MANAGE (organisational): policy as code, risk scoring, gates, approvals, compliance, reports, KPIs.

::

    policy.load(path)                       the risk-appetite YAML, validated (file:line: key: problem)
    evidence.collect(session, model, ...)   usable and rejected assessment runs of one model version
    scoring.assess(evidence, resolved)      likelihood × impact per threat, 5×5 matrix, 0-100 score
    gates.decide(evidence, resolved)        GO / NO-GO / NEEDS-APPROVAL with one row per rule
    approvals.approve / promote / record    human sign-off, stage changes, stored decisions
    compliance.report(session, model, ...)  NIST AI RMF, EU AI Act, ISO/IEC 42001 evidence map
    kpi.compute(session, policy)            paper Table 4 indicators
    reports.write_report / write_annex_iv   HTML (offline), Markdown, JSON, Annex IV draft
"""

from __future__ import annotations

from .gates import EXIT_CODES, GO, NEEDS_APPROVAL, NO_GO, GateEvaluation, RuleResult, decide
from .policy import Policy, PolicyError, Resolved, load, parse
from .scoring import RiskAssessment, ThreatRisk, assess

__all__ = [
    "EXIT_CODES",
    "GO",
    "NEEDS_APPROVAL",
    "NO_GO",
    "GateEvaluation",
    "Policy",
    "PolicyError",
    "Resolved",
    "RiskAssessment",
    "RuleResult",
    "ThreatRisk",
    "assess",
    "decide",
    "load",
    "parse",
]
