"""What each console page shows, read from the store through the library (plain data out).

Every number here comes from the same functions the CLI calls (``govern.kpi``,
``govern.approvals``, ``govern.reports``, ``monitor.deployments``, ``monitor.incidents``,
``monitor.review``, ``inventory.assets``); this module only gathers and shapes it for the
templates. Each function runs inside the caller's transaction and returns JSON-able data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ...assess.runs import runs_for
from ...govern import approvals, kpi
from ...govern.evidence import aware
from ...govern.policy import Policy
from ...govern.reports import build as report_data
from ...govern.reports import charts as report_charts
from ...inventory import assets
from ...inventory.refs import resolve_model
from ...monitor import deployments as deps
from ...monitor import incidents, review
from ...store.models import (
    Alert,
    Deployment,
    Incident,
    PredictionLog,
    ReviewItem,
    WatchState,
)
from . import figures, trends

TRAFFIC_ROWS = 5000
ALERT_ROWS = 200


def overview(session: Session, policy: Policy) -> dict[str, Any]:
    """Executive view: the Table 4 indicators, their trends, the portfolio heat map."""
    values = kpi.as_dicts(kpi.compute(session, policy))
    tr = trends.all_trends(session, policy)
    models = []
    for mv in assets.list_models(session):
        gate = approvals.evaluate(session, mv, policy)
        risk = gate.risk.as_dict()
        models.append({"model": mv.ref, "stage": mv.stage, "tier": mv.tier, "domain": mv.domain,
                       "decision": gate.decision, "score": risk["score"],
                       "assessed": risk["assessed"], "applicable": risk["applicable"],
                       "gaps": risk["gaps"], "threats": risk["threats"],
                       "worst": _worst_level(risk["threats"])})
    counts = {
        "models": len(models),
        "deployments": session.execute(select(func.count()).select_from(Deployment)).scalar_one(),
        "open_incidents": session.execute(select(func.count()).select_from(Incident).where(
            Incident.state.in_(incidents.OPEN_STATES))).scalar_one(),
        "open_reviews": session.execute(select(func.count()).select_from(ReviewItem).where(
            ReviewItem.status == "open")).scalar_one(),
    }
    return {
        "kpis": [{**v, "trend": figures.as_json(figures.trend(tr[v["key"]])) if v["key"] in tr else None,
                  "trend_note": tr[v["key"]].note if v["key"] in tr else ""} for v in values],
        "heat": figures.as_json(figures.portfolio_heat_map(models)),
        "models": models, "counts": counts, "policy": {"name": policy.name, "source": policy.source},
    }


_ORDER = ("n/a", "low", "medium", "high", "critical", "unknown")


def _worst_level(threats: list[dict[str, Any]]) -> str:
    known = [t["level"] for t in threats if t["level"] in _ORDER[1:5]]
    return max(known, key=_ORDER.index) if known else "unknown"


def inventory(session: Session) -> dict[str, Any]:
    models = [{**assets.model_dict(mv), "lineage": assets.lineage_tree(mv)}
              for mv in assets.list_models(session)]
    datasets = [assets.dataset_dict(ds) for ds in assets.list_datasets(session)]
    return {"models": models, "datasets": datasets}


def model_page(session: Session, policy: Policy, ref: str, *, owner: str) -> dict[str, Any]:
    """One model version: gate, risk, robustness, findings, history, what may be signed."""
    mv = resolve_model(session, ref)
    data = report_data(session, mv, policy)
    status = {r["run_id"]: r["status"] for r in data["evidence"]}
    findings = []
    for run in reversed(runs_for(session, mv)):
        for f in run.findings:
            findings.append({"run_id": run.id, "suite": run.suite, "threat_id": f.threat_id,
                             "severity": f.severity, "title": f.title, "detail": f.detail,
                             "metric": f.metric, "value": f.value,
                             "status": status.get(run.id, "rejected"),
                             "at": (run.finished_at or run.started_at).isoformat(timespec="seconds")})
    pol = policy.resolve(tier=mv.tier, domain=mv.domain)
    decision = data["gate"]["decision"]
    accept = bool(pol.get("approval.allow_risk_acceptance"))
    own = bool(pol.get("approval.separation_of_duties")) and owner == mv.created_by
    return {
        "d": data, "ref": mv.ref, "findings": findings,
        "heat": figures.as_json(report_charts.heat_map(data)),
        "robustness": figures.as_json(report_charts.robustness(data)),
        "approval": {"sign_off": decision == "NEEDS-APPROVAL" and not own,
                     "accept_risk": decision == "NO-GO" and accept and not own,
                     "own_model": own, "decision": decision},
    }


def _iso(ts: datetime | None) -> str | None:
    ts = aware(ts)
    return ts.isoformat() if ts else None


def deployments(session: Session, policy: Policy) -> list[dict[str, Any]]:
    """Every deployment with its counts, alerts, drift windows and traffic."""
    out = []
    for dep in deps.list_all(session):
        d = deps.deployment_dict(session, dep)
        alerts = deps.recent_alerts(session, dep.id, limit=ALERT_ROWS)
        pol = policy.resolve(tier=dep.model.tier, domain=dep.model.domain)
        alert_psi = float(pol.get("monitoring.drift_alert_psi"))
        block_psi = float(pol.get("monitoring.drift_block_psi"))
        points = [{"at": a["created_at"], "mean_psi": (a["details"] or {}).get("mean_psi"),
                   "source": f"alert #{a['id']}"} for a in alerts if a["kind"] == "drift"]
        state = session.execute(select(WatchState.state).where(
            WatchState.deployment_id == dep.id, WatchState.watchdog == "input-drift",
            WatchState.client == "")).scalar_one_or_none() or {}
        last = state.get("last") or {}
        if last.get("at") and last.get("mean_psi") is not None and \
                not any(p["mean_psi"] == last["mean_psi"] for p in points):
            points.append({"at": last["at"], "mean_psi": last["mean_psi"], "source": "newest window"})
        rows = session.execute(
            select(PredictionLog.created_at, PredictionLog.routed_to_review)
            .where(PredictionLog.deployment_id == dep.id)
            .order_by(PredictionLog.id.desc()).limit(TRAFFIC_ROWS)).all()
        times = [aware(t) for t, _ in rows]
        psi = {str(k): float(v) for k, v in (state.get("psi") or {}).items()}
        d.update({
            "recent_alerts": alerts[:10], "windows": state.get("windows"),
            "last_window": last, "alert_psi": alert_psi, "block_psi": block_psi,
            "open_incidents": [i.id for i in incidents.open_incidents(session, dep)],
            "charts": {
                "traffic": figures.as_json(figures.traffic(times, [bool(r) for _, r in rows], dep.name)),  # type: ignore[arg-type]
                "drift": figures.as_json(figures.drift_chart(points, dep.name, alert_psi, block_psi)),
                "features": figures.as_json(figures.feature_psi(psi, dep.name, alert_psi)),
                "alerts": figures.as_json(figures.alerts_timeline(alerts, dep.name)),
            },
        })
        out.append(d)
    return out


def incident_list(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(select(Incident).order_by(Incident.id.desc())).scalars()
    return [incidents.incident_dict(i) for i in rows]


def incident_page(session: Session, incident_id: int) -> dict[str, Any]:
    inc = incidents.get_incident(session, incident_id)
    d = incidents.incident_dict(inc)
    ids = [s["alert"] for s in d["signals"] if isinstance(s, dict) and s.get("alert")]
    times = {i: _iso(t) for i, t in session.execute(
        select(Alert.id, Alert.created_at).where(Alert.id.in_(ids))).all()} if ids else {}
    return {"i": d, "timeline": figures.as_json(figures.incident_timeline(d, times)),  # type: ignore[arg-type]
            "can_contain": inc.state == "identified",
            "has_rules": bool(inc.deployment.fallback_rules),
            "modes": incidents.CONTAIN_MODES}


def review_page(session: Session) -> dict[str, Any]:
    items = review.list_items(session, status="open", limit=200)
    decided = review.list_items(session, status="decided", limit=1000)[-20:]
    choices: dict[str, list[str]] = {}
    for name in {i["deployment"] for i in items}:
        dep = deps.get(session, str(name))
        classes = session.execute(select(Deployment.config["classes"]).where(
            Deployment.id == dep.id)).scalar_one_or_none() or []
        answers = (dep.fallback_rules or {}).get("answers") or []
        labels = [str(c) for c in classes]
        choices[str(name)] = labels + [str(a) for a in answers if str(a) not in labels]
    return {"items": items, "decided": list(reversed(decided)), "choices": choices}
