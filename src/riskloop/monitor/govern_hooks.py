"""Monitoring evidence for governance: KPIs and runtime evidence computed from the store.

Imported by :mod:`riskloop.govern.hooks` before KPIs or compliance maps are computed, so the
Monitor step's numbers replace the "no data" placeholders (govern never imports monitor).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..govern.hooks import register_evidence
from ..govern.kpi import KpiValue, register_kpi
from ..govern.policy import Policy
from ..store.models import Alert, Deployment, Incident, ModelVersion, WatchState
from . import deployments, incidents
from .watchset import calibration_summary


def _number(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if out == out else None


def drift_magnitude(session: Session, policy: Policy) -> KpiValue:
    """Largest mean PSI seen by a live deployment within the policy's drift window.

    Per deployment the newest scored window (the input-drift watcher's state) and every drift
    alert inside the window count; the headline is the worst deployment.
    """
    mon = policy.data["monitoring"]
    since = datetime.now(UTC) - timedelta(hours=float(mon["drift_window_hours"]))
    limit = float(mon["drift_block_psi"])
    names = dict(session.execute(select(Deployment.id, Deployment.name)
                                 .where(Deployment.mode != "off")).all())
    worst: dict[str, float] = {}
    for dep_id, state in session.execute(
            select(WatchState.deployment_id, WatchState.state)
            .where(WatchState.watchdog == "input-drift")).all():
        last = (state or {}).get("last") or {}
        value, at = _number(last.get("mean_psi")), last.get("at")
        try:
            when = datetime.fromisoformat(at) if isinstance(at, str) else None
        except ValueError:
            when = None
        if dep_id in names and value is not None and when is not None:
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
            if when >= since:
                worst[names[dep_id]] = max(worst.get(names[dep_id], 0.0), value)
    for dep_id, at, details in session.execute(
            select(Alert.deployment_id, Alert.created_at, Alert.details)
            .where(Alert.kind == "drift")).all():
        at = at if at is None or at.tzinfo else at.replace(tzinfo=UTC)
        value = _number((details or {}).get("mean_psi"))
        if dep_id in names and value is not None and at is not None and at >= since:
            worst[names[dep_id]] = max(worst.get(names[dep_id], 0.0), value)
    value = max(worst.values()) if worst else None
    status = "no data" if value is None else ("ok" if value <= limit else "breach")
    return KpiValue("drift_magnitude", "Drift Magnitude", "Technical", value, "PSI",
                    f"<= {limit:g}", status,
                    f"largest mean PSI of a live deployment over the last "
                    f"{float(mon['drift_window_hours']):g} h",
                    [{"deployment": k, "psi": v} for k, v in sorted(worst.items())])


def defence_fpr(session: Session, policy: Policy) -> KpiValue:
    """False-positive rate of the defences: watchdogs' false alarms on clean held-out traffic,
    measured at calibration, summed over a deployment's watchdogs (a union bound)."""
    limit = float(policy.data["monitoring"]["max_defence_fpr"])
    rows = []
    for dep in session.execute(select(Deployment).where(Deployment.mode != "off")).scalars():
        rates = {name: _number(w.get("fpr"))
                 for name, w in calibration_summary(dep.config or {}).items()}
        known = [r for r in rates.values() if r is not None]
        if known:
            rows.append({"deployment": dep.name, "fpr": sum(known), "watchdogs": rates})
    value = max(r["fpr"] for r in rows) if rows else None
    status = "no data" if value is None else ("ok" if value <= limit else "breach")
    return KpiValue("defence_fpr", "False Positive Rate of the defences", "Operational", value,
                    "fraction", f"<= {limit:g}", status,
                    "share of legitimate inputs the defences flag (worst deployment)", rows)


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
register_kpi("drift_magnitude", drift_magnitude)
register_kpi("defence_fpr", defence_fpr)
register_evidence("incidents", incident_evidence)
register_evidence("monitoring", deployments.monitoring_evidence)
register_evidence("fallback", deployments.fallback_evidence)
register_evidence("defence_fpr", deployments.defence_fpr_evidence)
