"""Monitoring evidence for governance: KPIs and runtime evidence computed from the store.

Imported by :mod:`riskloop.govern.hooks` before KPIs or compliance maps are computed, so the
Monitor step's numbers replace the "no data" placeholders (govern never imports monitor).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..govern.hooks import register_evidence
from ..govern.kpi import KpiValue, register_kpi
from ..govern.policy import Policy
from ..store.models import Incident, ModelVersion
from . import incidents


def mean_time_to_restore(session: Session, policy: Policy) -> KpiValue:
    m = incidents.mttr(session)
    target = float(policy.data["monitoring"]["mttr_target_hours"])
    hours = None if m["mttr_seconds"] is None else m["mttr_seconds"] / 3600.0
    status = "no data" if hours is None else ("ok" if hours <= target else "breach")
    detail = [{"restored_incidents": m["incidents"],
               "max_hours": (m.get("max_seconds") or 0) / 3600.0 if hours is not None else None}]
    return KpiValue("mttr", "Mean Time to Restore", "Operational", hours, "hours",
                    f"<= {target:g}", status,
                    "mean time from detecting an incident to restored service", detail)


def incident_evidence(session: Session, mv: ModelVersion) -> str | None:
    rows = session.execute(
        select(Incident.state, func.count()).where(Incident.model_id == mv.id)
        .group_by(Incident.state)
    ).all()
    if not rows:
        return None
    return "incidents: " + ", ".join(f"{n} {state}" for state, n in sorted(rows))


register_kpi("mttr", mean_time_to_restore)
register_evidence("incidents", incident_evidence)
