"""How the five indicators of paper Table 4 moved over time, from what the store recorded.

:func:`riskloop.govern.kpi.compute` gives each indicator *now*. The trends replay the
timestamped records behind them, each read with the same library functions the indicator
uses:

- **Adversarial Robustness Score**: every usable evasion run of every model version, read at
  the policy's epsilon (:func:`~riskloop.govern.readings.ars_at`), one series per model.
- **Drift Magnitude**: the mean PSI of every drift window that raised an alert on a
  deployment, the newest window each deployment scored (its watcher state), and the drift
  runs recorded by ``riskloop drift``.
- **Mean Time to Restore**: the running mean of
  :func:`~riskloop.monitor.incidents.time_to_restore` after each restored incident.
- **Defence FPR**: the false-positive rate the watchdogs measured on clean held-out data when
  each deployment was created (the ``deployment.create`` audit event records it), summed over
  a deployment's watchdogs.
- **Model Compliance Rate**: after each stage change or gate decision, the share of models
  then in production whose latest recorded gate decision passed the red-team and privacy
  rules (:func:`~riskloop.govern.compliance.passes_red_team`,
  :func:`~riskloop.govern.compliance.passes_privacy_audit`).

Nothing is interpolated: a trend without records is empty and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from ...govern import compliance, evidence
from ...govern.gates import GateEvaluation, RuleResult
from ...govern.policy import Policy
from ...govern.readings import ars_at
from ...inventory.assets import list_models
from ...monitor import incidents
from ...store.models import (
    Alert,
    AssessmentRun,
    AuditEvent,
    Deployment,
    GateDecision,
    Incident,
    StageChange,
    WatchState,
)

MAX_POINTS = 500


@dataclass
class Series:
    name: str
    x: list[str] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    step: bool = False

    def add(self, when: datetime | None, value: float | None) -> None:
        when = evidence.aware(when)
        if when is None or value is None:
            return
        self.x.append(when.isoformat())
        self.y.append(float(value))


@dataclass
class Trend:
    key: str
    title: str
    unit: str
    series: list[Series]
    limit: float | None = None
    limit_label: str = ""
    note: str = ""

    @property
    def empty(self) -> bool:
        return not any(s.x for s in self.series)


def _sorted(series: Series) -> Series:
    pairs = sorted(zip(series.x, series.y, strict=True))[-MAX_POINTS:]
    return Series(series.name, [p[0] for p in pairs], [p[1] for p in pairs], series.step)


def robustness(session: Session, policy: Policy) -> Trend:
    out: list[Series] = []
    for mv in list_models(session):
        pol = policy.resolve(tier=mv.tier, domain=mv.domain)
        ev = evidence.collect(session, mv, max_age_days=int(pol.get("evidence.max_age_days")))
        s = Series(mv.ref)
        for run in ev.all("evasion"):
            s.add(run.finished_at, ars_at(run, pol.get("rules.evasion.eps")).value)
        if s.x:
            out.append(_sorted(s))
    limit = policy.data["rules"]["evasion"]["min_ars"]
    return Trend("ars", "Adversarial Robustness Score", "fraction", out, float(limit),
                 f"policy min {limit:g}", "each usable evasion run, at the policy's epsilon")


def _mean_psi(features: Any) -> float | None:
    values = [f.get("psi") for f in features or [] if isinstance(f, dict)]
    nums = [float(v) for v in values if evidence.number(v) is not None]
    return sum(nums) / len(nums) if nums else None


def drift(session: Session, policy: Policy) -> Trend:
    by_dep: dict[str, Series] = {}
    names = dict(session.execute(select(Deployment.id, Deployment.name)).all())
    rows = session.execute(select(Alert.deployment_id, Alert.created_at, Alert.details)
                           .where(Alert.kind == "drift").order_by(Alert.id.desc())
                           .limit(MAX_POINTS)).all()
    for dep_id, at, details in rows:
        name = names.get(dep_id, str(dep_id))
        by_dep.setdefault(name, Series(name)).add(at, evidence.number((details or {}).get("mean_psi")))
    states = session.execute(select(WatchState.deployment_id, WatchState.state)
                             .where(WatchState.watchdog == "input-drift")).all()
    for dep_id, state in states:
        last = (state or {}).get("last") or {}
        value, at = evidence.number(last.get("mean_psi")), last.get("at")
        if value is not None and isinstance(at, str):
            try:
                when = datetime.fromisoformat(at)
            except ValueError:
                continue
            name = names.get(dep_id, str(dep_id))
            series = by_dep.setdefault(name, Series(name))
            if when.isoformat() not in series.x:
                series.add(when, value)
    runs = Series("riskloop drift runs")
    for started, finished, metrics in session.execute(
            select(AssessmentRun.started_at, AssessmentRun.finished_at, AssessmentRun.metrics)
            .where(AssessmentRun.suite == "drift").order_by(AssessmentRun.id.desc())
            .limit(MAX_POINTS)).all():
        runs.add(finished or started, _mean_psi((metrics or {}).get("features")))
    out = [_sorted(s) for s in [*by_dep.values(), runs] if s.x]
    mon = policy.data["monitoring"]
    return Trend("drift_magnitude", "Drift Magnitude", "PSI", out, float(mon["drift_block_psi"]),
                 f"block at PSI {mon['drift_block_psi']:g}",
                 "mean PSI over the features of each scored window")


def mttr(session: Session, policy: Policy) -> Trend:
    restored = session.execute(select(Incident).where(Incident.restored_at.is_not(None))).scalars()
    points = sorted(((evidence.aware(i.restored_at), incidents.time_to_restore(i)) for i in restored),
                    key=lambda p: p[0] or datetime.min.replace(tzinfo=UTC))
    each, mean = Series("time to restore"), Series("mean time to restore")
    total = 0.0
    for n, (at, secs) in enumerate((p for p in points if p[1] is not None), start=1):
        total += float(secs)  # type: ignore[arg-type]
        each.add(at, float(secs) / 3600.0)  # type: ignore[arg-type]
        mean.add(at, total / n / 3600.0)
    target = float(policy.data["monitoring"]["mttr_target_hours"])
    return Trend("mttr", "Mean Time to Restore", "hours", [s for s in (mean, each) if s.x],
                 target, f"target {target:g} h", "after each restored incident")


def defence_fpr(session: Session, policy: Policy) -> Trend:
    out: list[Series] = []
    events = session.execute(select(AuditEvent.ts, AuditEvent.subject, AuditEvent.payload)
                             .where(AuditEvent.action == "deployment.create")
                             .order_by(AuditEvent.seq)).all()
    by_dep: dict[str, Series] = {}
    for ts, subject, payload in events:
        dogs = (payload or {}).get("watchdogs") or {}
        rates = [evidence.number(w.get("fpr")) for w in dogs.values() if isinstance(w, dict)]
        known = [r for r in rates if r is not None]
        if not known:
            continue
        name = subject.split(":", 1)[-1]
        by_dep.setdefault(name, Series(name)).add(datetime.fromisoformat(ts), sum(known))
    out = [_sorted(s) for s in by_dep.values()]
    limit = float(policy.data["monitoring"]["max_defence_fpr"])
    return Trend("defence_fpr", "Defence FPR", "fraction", out, limit, f"max {limit:g}",
                 "watchdogs' false alarms on clean held-out data, measured at deployment")


def _passes(rules: list[dict[str, Any]]) -> bool:
    gate = cast(GateEvaluation, SimpleNamespace(rules=tuple(
        RuleResult(**{k: r.get(k) for k in RuleResult.__dataclass_fields__}) for r in rules)))
    return compliance.passes_red_team(gate) and compliance.passes_privacy_audit(gate)


def compliance_rate(session: Session, policy: Policy) -> Trend:
    events: list[tuple[datetime, int, str, Any]] = []
    for c in session.execute(select(StageChange).order_by(StageChange.id)).scalars():
        events.append((evidence.aware(c.created_at), c.id, "stage", c))  # type: ignore[arg-type]
    for d in session.execute(select(GateDecision).order_by(GateDecision.id)).scalars():
        events.append((evidence.aware(d.created_at), d.id, "gate", d))  # type: ignore[arg-type]
    events.sort(key=lambda e: (e[0], e[2], e[1]))
    stage: dict[int, str] = {}
    passing: dict[int, bool] = {}
    s = Series("production models passing", step=True)
    for at, _id, kind, rec in events:
        if kind == "stage":
            stage[rec.model_id] = rec.to_stage
        else:
            passing[rec.model_id] = _passes(rec.rules or [])
        prod = [m for m, st in stage.items() if st == "production"]
        if prod:
            s.add(at, sum(1 for m in prod if passing.get(m, False)) / len(prod))
    return Trend("model_compliance_rate", "Model Compliance Rate", "fraction",
                 [_sorted(s)] if s.x else [], 1.0, "target 100%",
                 "production models whose latest recorded gate passed red-team and privacy")


def all_trends(session: Session, policy: Policy) -> dict[str, Trend]:
    """One trend per Table 4 indicator, keyed like :mod:`riskloop.govern.kpi`."""
    return {t.key: t for t in (robustness(session, policy), drift(session, policy),
                               mttr(session, policy), defence_fpr(session, policy),
                               compliance_rate(session, policy))}
