"""AI incidents and the response playbook of the paper (5.2.2): identify → contain → recover.

States, in order (an incident can never skip one)::

    identified ──contain──▶ contained ──recover──▶ recovering ──▶ restored ──close──▶ closed
                                 ▲                     │
                                 └──── gate refused ───┘   (stays contained, retry later)

- **identify**: alerts of a deployment open an incident, or join the one still open. The
  incident is classified as ``suspected-attack`` or ``benign-drift`` from which signals fired
  (:func:`classify`).
- **contain**: the deployment switches to ``fallback`` (rule-based answers) or ``shadow`` (the
  model runs and is logged, the fallback answers), automatically when the policy says so.
- **recover**: sanitize the training data, retrain, re-assess, gate, and redeploy only when the
  gate passes (``riskloop incident recover``).
- **close**: after service is restored. Mean Time to Restore is the mean of
  ``restored_at - detected_at`` over restored incidents.

Every transition is timestamped, names its actor and is appended to the audit trail.
EU AI Act Article 73 reporting deadlines are attached when the model is high-risk and the
incident is serious (severity high or critical): 15 days from awareness, 2 days when the model
serves critical infrastructure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ConflictError, InputError, NotFoundError
from ..findings import Severity
from ..store import audit
from ..store.models import Alert, Deployment, Incident, IncidentSignal, IncidentTransition

STATES = ("identified", "contained", "recovering", "restored", "closed")
OPEN_STATES = STATES[:-1]
_NEXT: dict[str, tuple[str, ...]] = {
    "identified": ("contained",),
    "contained": ("recovering",),
    "recovering": ("restored", "contained"),
    "restored": ("closed",),
    "closed": (),
}
CONTAIN_MODES = ("fallback", "shadow")

# Alert kinds raised per client by the query-pattern watchdog: someone is probing or copying.
CLIENT_ATTACK_KINDS = frozenset({
    "query-volume", "near-duplicate-queries", "boundary-probing", "input-space-sweep",
    "extraction-budget",
})
# Alert kinds that mean an adversarial input was seen, whatever the population does.
INPUT_ATTACK_KINDS = frozenset({"adversarial-input"})
# Population-level input drift: the world changed.
DATA_DRIFT_KINDS = frozenset({"drift", "data-drift"})
# Behaviour changes that are benign when the inputs drifted too, suspicious when they did not.
BEHAVIOUR_KINDS = frozenset({
    "low-confidence-spike", "input-outliers", "prediction-drift", "performance-drift",
})


def classify(kinds: Iterable[str], *, clients: Iterable[str | None] = ()) -> tuple[str, str]:
    """``(classification, reason)`` for a set of alert kinds; ``clients`` pairs with
    ``kinds`` (one per signal), and the reason names the clients of the query-pattern ones.

    1. A client-attributed query-pattern alert (extraction or probing) → suspected attack.
    2. An adversarial-input alert (e.g. the feature-squeezing detector) → suspected attack.
    3. Behaviour changes (low-confidence spike, outliers, prediction or performance drift)
       while the input population did not drift → suspected attack: the model is being fed
       crafted inputs or poisoned feedback labels.
    4. Otherwise (input drift, with or without the behaviour it explains) → benign drift.
    """
    kinds = list(kinds)
    ks = set(kinds)
    client_kinds = sorted(ks & CLIENT_ATTACK_KINDS)
    if client_kinds:
        who = sorted({c for k, c in zip(kinds, clients, strict=False) if c and k in CLIENT_ATTACK_KINDS})
        return "suspected-attack", (
            f"query-pattern signals {', '.join(client_kinds)}"
            + (f" from client(s) {', '.join(who)}" if who else "")
        )
    if ks & INPUT_ATTACK_KINDS:
        return "suspected-attack", "adversarial inputs detected"
    behaviour = sorted(ks & BEHAVIOUR_KINDS)
    if behaviour and not ks & DATA_DRIFT_KINDS:
        return "suspected-attack", (
            f"{', '.join(behaviour)} without input drift: crafted inputs or poisoned feedback"
        )
    if ks & DATA_DRIFT_KINDS:
        return "benign-drift", "input distribution shifted" + (
            f" (explains {', '.join(behaviour)})" if behaviour else ""
        )
    return "benign-drift", f"signals {', '.join(sorted(ks)) or 'none'}"


@dataclass(frozen=True)
class IncidentPolicy:
    """What the risk-appetite policy says about incidents (``monitoring`` section)."""

    auto_contain: bool = True
    contain_on: tuple[str, ...] = ("suspected-attack",)
    contain_mode: str = "fallback"


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _max_severity(values: Iterable[str]) -> str:
    ranked = [Severity(v) for v in values if v in Severity._value2member_map_]
    return str(max(ranked, key=lambda s: s.rank)) if ranked else "medium"


def _deadline(incident: Incident, now: datetime) -> tuple[datetime | None, str | None]:
    model = incident.model
    if model.tier not in ("high", "prohibited") or incident.severity not in ("high", "critical"):
        return None, None
    if model.domain == "critical-infrastructure":
        return now + timedelta(days=2), (
            "EU AI Act Art. 73(3): serious incident involving critical infrastructure, report "
            "within 2 days of awareness"
        )
    return now + timedelta(days=15), (
        "EU AI Act Art. 73(2): serious incident of a high-risk AI system, report within 15 days "
        "of awareness"
    )


def _transition(
    session: Session, incident: Incident, to_state: str, *, action: str, actor: str,
    details: dict[str, Any] | None = None,
) -> IncidentTransition:
    if to_state not in _NEXT.get(incident.state, ()):
        allowed = ", ".join(_NEXT.get(incident.state, ())) or "nothing (it is closed)"
        raise ConflictError(
            f"incident {incident.id} is '{incident.state}': it can only move to {allowed}, "
            f"not '{to_state}' (the playbook does not skip steps)"
        )
    step = IncidentTransition(
        incident_id=incident.id, from_state=incident.state, to_state=to_state, action=action,
        actor=actor, details=details or {}, created_at=_now(),
    )
    incident.transitions.append(step)
    incident.state = to_state
    session.flush()
    audit.append(
        session, actor=actor, action=f"incident.{action}", subject=f"incident:{incident.id}",
        payload={"from": step.from_state, "to": to_state, **(details or {})},
    )
    return step


def open_incidents(session: Session, deployment: Deployment | None = None) -> list[Incident]:
    stmt = select(Incident).where(Incident.state.in_(OPEN_STATES))
    if deployment is not None:
        stmt = stmt.where(Incident.deployment_id == deployment.id)
    return list(session.execute(stmt.order_by(Incident.id)).scalars())


def get_incident(session: Session, incident_id: int) -> Incident:
    inc = session.get(Incident, incident_id)
    if inc is None:
        raise NotFoundError(
            f"unknown incident {incident_id}: run 'riskloop incident list' to see the incidents"
        )
    return inc


def ingest_alerts(
    session: Session, *, deployment: Deployment, alerts: list[Alert], actor: str,
    policy: IncidentPolicy | None = None,
) -> Incident | None:
    """Open an incident for new alerts, or join the deployment's open one; contain if told to."""
    if not alerts:
        return None
    policy = policy or IncidentPolicy()
    now = _now()
    current = open_incidents(session, deployment)
    incident = current[-1] if current else None
    new_signals = [
        {"alert": a.id, "kind": a.kind, "threat_id": a.threat_id, "client": a.client,
         "severity": a.severity}
        for a in alerts
    ]
    if incident is None:
        earliest = min((_aware(a.created_at) or now) for a in alerts)
        incident = Incident(
            deployment_id=deployment.id, model_id=deployment.model_id, state="identified",
            classification="benign-drift", severity="medium", signals=[], summary="",
            opened_at=now, detected_at=earliest, opened_by=actor, previous_mode=deployment.mode,
        )
        session.add(incident)
        session.flush()
        step = IncidentTransition(
            incident_id=incident.id, from_state=None, to_state="identified", action="identify",
            actor=actor, details={"alerts": [a.id for a in alerts]}, created_at=now,
        )
        incident.transitions.append(step)
        opened = True
    else:
        opened = False
    signals = list(incident.signals or []) + new_signals
    incident.signals = signals
    old_class = incident.classification
    incident.classification, incident.summary = classify(
        (s["kind"] for s in signals), clients=(s["client"] for s in signals)
    )
    if not opened and old_class == "suspected-attack":
        incident.classification = "suspected-attack"  # never downgraded by later drift
    severity = _max_severity(s["severity"] for s in signals)
    if incident.classification == "suspected-attack" and incident.model.tier == "high":
        severity = _max_severity([severity, "high"])
    incident.severity = severity
    if incident.report_deadline is None:
        incident.report_deadline, incident.report_basis = _deadline(incident, now)
    for a in alerts:
        session.add(IncidentSignal(incident_id=incident.id, alert_id=a.id))
    session.flush()
    audit.append(
        session, actor=actor, action="incident.identify" if opened else "incident.signal",
        subject=f"incident:{incident.id}",
        payload={"deployment": deployment.name, "classification": incident.classification,
                 "severity": incident.severity, "signals": new_signals,
                 "reclassified": (not opened and old_class != incident.classification)},
    )
    if (policy.auto_contain and incident.state == "identified"
            and incident.classification in policy.contain_on):
        contain(session, incident, actor=actor, mode=policy.contain_mode, automatic=True)
    return incident


def contain(
    session: Session, incident: Incident, *, actor: str, mode: str = "fallback",
    automatic: bool = False,
) -> Incident:
    """Switch the affected deployment to ``fallback`` or ``shadow``."""
    if mode not in CONTAIN_MODES:
        raise InputError(f"bad containment mode '{mode}': choose one of {', '.join(CONTAIN_MODES)}")
    dep = incident.deployment
    before = dep.mode
    _transition(session, incident, "contained", action="contain", actor=actor,
                details={"mode": mode, "previous_mode": before, "automatic": automatic,
                         "deployment": dep.name})
    if incident.previous_mode is None:
        incident.previous_mode = before
    dep.mode = mode
    dep.updated_at = _now()
    incident.contained_at = _now()
    audit.append(session, actor=actor, action="deployment.mode", subject=f"deployment:{dep.name}",
                 payload={"from": before, "to": mode, "incident": incident.id})
    return incident


def begin_recovery(session: Session, incident: Incident, *, actor: str, plan: dict[str, Any]) -> None:
    _transition(session, incident, "recovering", action="recover", actor=actor, details=plan)


def finish_recovery(
    session: Session, incident: Incident, *, actor: str, outcome: dict[str, Any],
    restored: bool, new_model_id: int | None = None,
) -> None:
    """Record the outcome of a recovery: restored (redeployed) or back to contained."""
    if restored:
        incident.recovered_model_id = new_model_id
        incident.restored_at = _now()
        _transition(session, incident, "restored", action="restore", actor=actor, details=outcome)
    else:
        _transition(session, incident, "contained", action="recover-refused", actor=actor,
                    details=outcome)


def close(session: Session, incident: Incident, *, actor: str, note: str = "") -> Incident:
    _transition(session, incident, "closed", action="close", actor=actor, details={"note": note})
    incident.closed_at = _now()
    return incident


def time_to_restore(incident: Incident) -> float | None:
    restored, detected = _aware(incident.restored_at), _aware(incident.detected_at)
    if restored is None or detected is None:
        return None
    return (restored - detected).total_seconds()


def mttr(session: Session) -> dict[str, Any]:
    """Mean Time to Restore over every restored incident (paper Table 4)."""
    rows = session.execute(select(Incident).where(Incident.restored_at.is_not(None))).scalars()
    values = [v for v in (time_to_restore(i) for i in rows) if v is not None]
    if not values:
        return {"mttr_seconds": None, "incidents": 0}
    return {"mttr_seconds": sum(values) / len(values), "incidents": len(values),
            "max_seconds": max(values)}


def incident_dict(incident: Incident) -> dict[str, Any]:
    def iso(ts: datetime | None) -> str | None:
        ts = _aware(ts)
        return ts.isoformat() if ts else None

    return {
        "id": incident.id, "state": incident.state, "classification": incident.classification,
        "severity": incident.severity, "summary": incident.summary,
        "deployment": incident.deployment.name, "model": incident.model.ref,
        "signals": incident.signals, "previous_mode": incident.previous_mode,
        "mode": incident.deployment.mode,
        "report_deadline": iso(incident.report_deadline), "report_basis": incident.report_basis,
        "detected_at": iso(incident.detected_at), "opened_at": iso(incident.opened_at),
        "contained_at": iso(incident.contained_at), "restored_at": iso(incident.restored_at),
        "closed_at": iso(incident.closed_at), "time_to_restore_seconds": time_to_restore(incident),
        "recovered_model_id": incident.recovered_model_id,
        "transitions": [
            {"from": t.from_state, "to": t.to_state, "action": t.action, "actor": t.actor,
             "at": iso(t.created_at), "details": t.details}
            for t in incident.transitions
        ],
    }
