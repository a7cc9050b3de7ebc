"""Recover from an AI incident (paper 5.2.2): "sanitize the training dataset, retrain the
model, and validate it against the attack vector before re-deploying".

:func:`recover` runs the playbook's recover step for a contained incident, through the
mitigation and gate machinery (nothing is re-implemented here):

1. ``begin_recovery`` (committed on its own, so the incident shows ``recovering`` while the
   model trains);
2. the mitigation (:func:`riskloop.mitigate.apply.apply_mitigation`): for an incident whose
   signals point at evasion, adversarial training; otherwise data sanitization of the
   model's training data, dropping the rows the latest integrity assessment of that data
   flagged (label issues, backdoor detectors) when there is one, else the rows the label-issue
   detector flags now. Poisoned *feedback* (``POST /events`` labels) is logged, never trained
   on, so it needs no removal; its count is recorded in the plan as evidence;
3. the re-assessment the mitigation runs on the new version (integrity or evasion suite);
4. the gate (:func:`riskloop.govern.approvals.evaluate`, recorded with purpose ``recovery``);
5. only when the gate says GO (a valid sign-off counts, as the gate defines it): the
   deployment switches to the new version in ``active`` mode, with its watchdogs recalibrated
   on the same reference and held-out data, and the incident is ``restored``; otherwise it
   goes back to ``contained`` with the gate's reasons and the deployment stays in its
   containment mode.

A refused version is not lost: once it passes (signed, its missing assessments run, the
sign-off a high-risk tier requires recorded), ``recover(..., model=REF)`` (``riskloop incident
recover ID --model MODEL@VER``) takes the incident through recovering again with that version,
without retraining: gate, and redeploy only on GO.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ..config import Settings
from ..errors import ConflictError, InputError
from ..store import audit
from ..store.db import transaction
from ..store.models import (
    AssessmentRun,
    Deployment,
    FindingRecord,
    ModelVersion,
    PredictionLog,
    WatchState,
)
from . import incidents

log = logging.getLogger(__name__)

EVASION_KINDS = frozenset({"adversarial-input"})
METHODS = ("sanitize", "adversarial-training")
MAX_BACKDOOR_SHARE = 0.5


@dataclass
class RecoveryReport:
    """What one ``riskloop incident recover`` did."""

    incident: int
    method: str
    plan: dict[str, Any]
    new_model: str | None
    decision: str | None
    failing: list[str]
    restored: bool
    mode: str
    time_to_restore_seconds: float | None
    mitigation: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_method(incident: Any) -> str:
    """Adversarial training when the signals point at evasion, else sanitize and retrain."""
    kinds = {s.get("kind") for s in incident.signals or []}
    if incident.classification == "suspected-attack" and kinds & EVASION_KINDS:
        return "adversarial-training"
    return "sanitize"


def flagged_rows(session: Session, mv: ModelVersion, dataset_id: int) -> tuple[list[int] | None, int | None]:
    """Rows of the training data the latest integrity run of ``mv`` on it flagged, and the run."""
    run = session.execute(
        select(AssessmentRun).where(AssessmentRun.model_id == mv.id, AssessmentRun.suite == "integrity",
                                    AssessmentRun.dataset_id == dataset_id)
        .order_by(AssessmentRun.id.desc()).limit(1)
    ).scalar_one_or_none()
    if run is None:
        return None, None
    metrics = run.metrics or {}
    rows: set[int] = set()
    # a backdoor screen that flags most of the data is not evidence about any one row (the
    # sanitization would refuse to drop more than half anyway): keep its label issues only
    backdoor_ok = float(metrics.get("backdoor_flagged_fraction") or 0.0) <= MAX_BACKDOOR_SHARE
    if backdoor_ok:
        rows.update(int(i) for i in metrics.get("backdoor_flagged_rows") or [])
    for f in session.execute(select(FindingRecord).where(FindingRecord.run_id == run.id)).scalars():
        if f.threat_id == "data-poisoning" or (f.threat_id == "backdoor" and backdoor_ok):
            rows.update(int(i) for i in (f.evidence or {}).get("rows") or [])
    return sorted(rows), run.id


def _suspicious_feedback(session: Session, incident: Any) -> int:
    """Feedback rows (``/events``) of the incident's deployment whose label disagrees."""
    return int(session.execute(
        select(func.count()).select_from(PredictionLog).where(
            PredictionLog.deployment_id == incident.deployment_id,
            PredictionLog.source == "events", PredictionLog.label.is_not(None),
            PredictionLog.label != PredictionLog.answer,
            PredictionLog.created_at >= incident.detected_at - _LOOKBACK)
    ).scalar_one())


_LOOKBACK = timedelta(hours=24)


def _contained(session: Session, incident_id: int) -> Any:
    inc = incidents.get_incident(session, incident_id)
    if inc.state != "contained":
        raise ConflictError(
            f"incident {inc.id} is '{inc.state}': only a contained incident can be recovered "
            f"(contain it first with 'riskloop incident contain {inc.id}')"
            if inc.state == "identified" else
            f"incident {inc.id} is '{inc.state}': only a contained incident can be recovered")
    return inc


def recover(
    settings: Settings, *, incident_id: int, actor: str, method: str | None = None,
    data: str | None = None, test: str | None = None, params: dict[str, Any] | None = None,
    policy_path: str | Path | None = None, limit: int | None = None, random_state: int = 0,
    progress: Any = None, model: str | None = None,
) -> RecoveryReport:
    """Run the recover step of a contained incident (see the module docstring).

    With ``model`` (a version recovered earlier, e.g. one that waited for the sign-off a
    high-risk tier requires), no mitigation runs: that version goes through the gate and is
    redeployed only on GO.
    """
    from ..govern import policy as policy_mod
    from ..mitigate.apply import apply_mitigation

    if method is not None and method not in METHODS:
        raise InputError(f"unknown recovery method '{method}': choose one of {', '.join(METHODS)}")
    pol = policy_mod.load(policy_path, workspace=settings.workspace)
    if model is not None:
        if method or data or params:
            raise InputError("--model redeploys a version that exists: drop --method, --data and --epochs")
        return _recover_with(settings, incident_id=incident_id, actor=actor, model=model,
                             pol=pol, random_state=random_state)
    with transaction(settings) as s:
        inc = _contained(s, incident_id)
        mv = inc.model
        chosen = method or choose_method(inc)
        if data is None:
            if not mv.trained_on:
                raise InputError(f"model '{mv.ref}' has no training dataset recorded: pass --data DATASET@VER")
            train = mv.trained_on[0].dataset
        else:
            from ..inventory.refs import resolve_dataset
            train = resolve_dataset(s, data)
        if test is None:
            hold = ((inc.deployment.config or {}).get("holdout") or {}).get("dataset") or ""
            test = hold if "@" in hold and " " not in hold else None
        mparams = dict(params or {})
        plan: dict[str, Any] = {"method": chosen, "model": mv.ref, "data": train.ref, "test": test,
                                "classification": inc.classification}
        if chosen == "sanitize" and "rows" not in mparams:
            rows, run_id = flagged_rows(s, mv, train.id)
            if rows is not None:
                mparams["rows"] = rows
                plan.update({"flagged_by": f"integrity run #{run_id}", "flagged_rows": len(rows)})
            else:
                plan["flagged_by"] = "label-issue detector (no integrity run of this data yet)"
        plan["suspicious_feedback_rows"] = _suspicious_feedback(s, inc)
        model_ref, train_ref = mv.ref, train.ref
        incidents.begin_recovery(s, inc, actor=actor, plan=plan)
    try:
        report = apply_mitigation(settings, model=model_ref, method=chosen, data=train_ref,
                                  test=test, params=mparams, limit=limit,
                                  random_state=random_state, progress=progress)
    except BaseException as exc:
        with transaction(settings) as s:
            inc = incidents.get_incident(s, incident_id)
            incidents.finish_recovery(s, inc, actor=actor, restored=False,
                                      outcome={"error": f"{type(exc).__name__}: {exc}"[:500]})
        raise
    return _gate_and_redeploy(settings, incident_id=incident_id, actor=actor, model=report.model,
                              pol=pol, method=chosen, plan=plan, random_state=random_state,
                              mitigation={"rows": [{"metric": r.metric, "before": r.before,
                                                    "after": r.after} for r in report.rows],
                                          "new_dataset": report.new_dataset,
                                          "warnings": report.warnings})


def _recover_with(settings: Settings, *, incident_id: int, actor: str, model: str, pol: Any,
                  random_state: int) -> RecoveryReport:
    """Recover with an existing version of the incident's model (no mitigation)."""
    from ..inventory.refs import resolve_model

    with transaction(settings) as s:
        inc = _contained(s, incident_id)
        new = resolve_model(s, model)
        if new.name != inc.model.name:
            raise InputError(f"--model {new.ref} is not a version of the incident's model "
                             f"'{inc.model.name}': name one of its versions")
        if new.id == inc.model_id:
            raise InputError(f"--model {new.ref} is the version the incident happened on: name "
                             "a recovered version")
        plan = {"method": "redeploy", "model": inc.model.ref, "recovered": new.ref,
                "classification": inc.classification}
        incidents.begin_recovery(s, inc, actor=actor, plan=plan)
    return _gate_and_redeploy(settings, incident_id=incident_id, actor=actor, model=new.ref, pol=pol,
                              method="redeploy", plan=plan, random_state=random_state, mitigation={})


def _gate_and_redeploy(settings: Settings, *, incident_id: int, actor: str, model: str, pol: Any,
                       method: str, plan: dict[str, Any], random_state: int,
                       mitigation: dict[str, Any]) -> RecoveryReport:
    """Gate ``model``; on GO redeploy it and mark the incident restored, else contained again."""
    with transaction(settings) as s:
        from ..govern import approvals
        from ..inventory.refs import resolve_model

        inc = incidents.get_incident(s, incident_id)
        new = resolve_model(s, model)
        result = approvals.evaluate(s, new, pol)
        decision = approvals.record(s, actor=actor, mv=new, policy=pol, result=result,
                                    purpose="recovery")
        outcome = {"model": new.ref, "decision": result.decision, "decision_id": decision.id,
                   "failing": result.failing(), "mitigation": method}
        if result.decision == "GO":
            redeploy(s, settings, dep=inc.deployment, mv=new, actor=actor, incident=inc.id,
                     gate={"decision": result.decision, "decision_id": decision.id,
                           "policy": pol.name, "policy_digest": pol.digest},
                     policy=pol, random_state=random_state)
            incidents.finish_recovery(s, inc, actor=actor, restored=True, new_model_id=new.id,
                                      outcome=outcome)
        else:
            incidents.finish_recovery(s, inc, actor=actor, restored=False,
                                      outcome={**outcome, "reason": "the gate did not pass: "
                                               + (", ".join(result.failing()) or "sign-off pending")})
        return RecoveryReport(
            incident=inc.id, method=method, plan=plan, new_model=new.ref,
            decision=result.decision, failing=result.failing(), restored=inc.state == "restored",
            mode=inc.deployment.mode, time_to_restore_seconds=incidents.time_to_restore(inc),
            mitigation=mitigation)


def redeploy(
    session: Session, settings: Settings, *, dep: Deployment, mv: ModelVersion, actor: str,
    incident: int, gate: dict[str, Any], policy: Any, random_state: int = 0,
) -> Deployment:
    """Serve ``mv`` under ``dep`` in active mode, with watchdogs recalibrated for it.

    The drift reference and the held-out calibration data stay those of the deployment; the
    model-dependent parts (confidence, outliers, query patterns, the adversarial detector)
    are recalibrated on the new model. Watcher state of the old model is dropped. A running
    gateway reloads the deployment on its next refresh (the model changed).
    """
    from ..inventory.refs import resolve_dataset
    from ..targets.loader import load_arrays, load_target
    from . import watchset

    cfg = dict(dep.config or {})
    ref_name = (cfg.get("reference") or {}).get("dataset")
    hold_name = (cfg.get("holdout") or {}).get("dataset") or ""
    target = load_target(session, settings, mv)
    X_ref, y_ref = load_arrays(resolve_dataset(session, ref_name)) if ref_name else load_arrays(mv.trained_on[0].dataset)
    X_ref = target.input_spec.check(X_ref, where="reference dataset")
    if "@" in hold_name and " " not in hold_name:
        X_hold, y_hold = load_arrays(resolve_dataset(session, hold_name))
        X_hold = target.input_spec.check(X_hold, where="held-out dataset")
    else:
        X_ref, X_hold, y_ref, y_hold = watchset.split_holdout(X_ref, y_ref, random_state=random_state)
    resolved = policy.resolve(tier=mv.tier, domain=mv.domain)
    budget = watchset.extraction_budget(
        session, mv, max_fidelity=watchset.policy_thresholds(resolved)["max_extraction_fidelity"])
    new_cfg = watchset.build_config(
        target=target, X_ref=X_ref, X_hold=X_hold, y_hold=y_hold, policy=resolved,
        model_path=Path(mv.path), random_state=random_state,
        drift_window=(cfg.get("sizes") or {}).get("drift_window"), extraction_queries=budget)
    new_cfg["reference"].update({k: v for k, v in (cfg.get("reference") or {}).items() if k != "profile"
                                 and k != "rows"})
    new_cfg["holdout"] = cfg.get("holdout")
    new_cfg["trust"] = bool(cfg.get("trust"))
    new_cfg["model"] = {"ref": mv.ref, "digest": mv.digest, "format": mv.format}
    new_cfg["gate"] = gate
    new_cfg["redeployed_by_incident"] = incident
    before_model, before_mode = dep.model.ref, dep.mode
    dep.model_id = mv.id
    dep.config = new_cfg
    dep.mode = "active"
    dep.updated_at = datetime.now(UTC)
    session.execute(delete(WatchState).where(WatchState.deployment_id == dep.id))
    session.flush()
    session.refresh(dep)
    audit.append(session, actor=actor, action="deployment.redeploy", subject=f"deployment:{dep.name}",
                 payload={"from_model": before_model, "to_model": mv.ref, "digest": mv.digest,
                          "from_mode": before_mode, "to_mode": "active", "incident": incident,
                          "gate": gate, "watchdogs": watchset.calibration_summary(new_cfg)})
    return dep
