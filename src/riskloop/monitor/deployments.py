"""Deployments: a model version served under a name, its mode, fallback rules and clients.

Modes (paper 5.2.1 and NIST AI RMF MANAGE 2.4, "supersede, disengage or deactivate"):

- ``active``: the model answers. Only a model whose gate says GO now (a sign-off counts, as
  the gate defines it) may be active; the decision is recorded with purpose "deployment".
- ``shadow``: the model runs and is logged, the fallback rules answer.
- ``fallback``: the rules answer, the model does not run.
- ``off``: the gateway refuses every request with 503.

``shadow`` and ``fallback`` need a rules file (:mod:`riskloop.monitor.fallback`). Deploying
computes everything the gateway needs once and freezes it in the deployment's ``config``:
the drift reference profile of the training data and the watchdogs calibrated on clean
held-out data (:mod:`riskloop.monitor.watchset`). Every change is audited.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..config import Settings
from ..errors import ConflictError, InputError, NotFoundError, PolicyViolation
from ..inventory.refs import check_name, resolve_dataset, resolve_model
from ..store import audit
from ..store.models import (
    Alert,
    ClientKey,
    DatasetVersion,
    Deployment,
    ModelVersion,
    PredictionLog,
)
from .fallback import FallbackRules

MODES = ("active", "shadow", "fallback", "off")
KEY_PREFIX = "rk_"
MSG_UNKNOWN = "unknown deployment '{name}': run 'riskloop deployment list' to see them"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"unknown mode '{mode}': choose one of {', '.join(MODES)}")
    return mode


def get(session: Session, name: str) -> Deployment:
    dep = session.execute(select(Deployment).where(Deployment.name == name)).scalar_one_or_none()
    if dep is None:
        raise NotFoundError(MSG_UNKNOWN.format(name=name))
    return dep


def list_all(session: Session) -> list[Deployment]:
    return list(session.execute(select(Deployment).order_by(Deployment.name)).scalars())


# -- gate ---------------------------------------------------------------------------------


def check_gate(session: Session, *, mv: ModelVersion, policy: Any, actor: str, name: str) -> dict[str, Any]:
    """Refuse ``active`` unless the gate says GO now; record the decision either way."""
    from ..govern import approvals
    from ..govern.gates import GO

    result = approvals.evaluate(session, mv, policy)
    decision = approvals.record(session, actor=actor, mv=mv, policy=policy, result=result,
                                purpose="deployment")
    if result.decision != GO:
        failing = ", ".join(result.failing()) or "human sign-off pending"
        raise PolicyViolation(
            f"{mv.ref} cannot serve deployment '{name}' in mode active: the gate says "
            f"{result.decision} ({failing}); see 'riskloop gate {mv.ref}', or deploy it with "
            "--mode shadow and --fallback RULES until it passes"
        )
    return {"decision": result.decision, "decision_id": decision.id, "policy": policy.name,
            "policy_digest": policy.digest}


# -- create / change ----------------------------------------------------------------------


def _reference_dataset(session: Session, mv: ModelVersion, ref: str | None) -> DatasetVersion:
    if ref:
        return resolve_dataset(session, ref)
    if not mv.trained_on:
        raise InputError(
            f"model '{mv.ref}' has no training dataset recorded (register it with --trained-on): "
            "pass --reference DATASET@VER to profile drift against"
        )
    return mv.trained_on[0].dataset


def _rules_dict(rules: FallbackRules, classes: list[str], n_features: int,
                feature_names: list[str] | None) -> dict[str, Any]:
    rules.bind(n_features=n_features, feature_names=feature_names)  # checks every feature
    return {**rules.to_dict(), "digest": rules.digest, "answers": rules.answers,
            "outside_classes": [a for a in rules.answers if a not in classes]}


def create(
    session: Session,
    settings: Settings,
    *,
    model: str,
    name: str,
    actor: str,
    mode: str = "active",
    fallback: str | Path | None = None,
    reference: str | None = None,
    holdout: str | None = None,
    policy: Any = None,
    trust: bool = False,
    window: int | None = None,
    like: str | None = None,
    random_state: int = 0,
) -> Deployment:
    """Create a deployment: gate check, reference profile, watchdog calibration, audit event.

    ``like`` names an existing deployment of the same model version whose frozen references
    and calibrated watchdogs are reused (another tenant, a blue/green twin): nothing is
    recomputed, and the audit event says where the calibration came from.
    """
    from ..govern import policy as policy_mod
    from ..targets.loader import load_arrays, load_target
    from . import watchset

    check_name(name)
    check_mode(mode)
    if session.execute(select(Deployment.id).where(Deployment.name == name)).first():
        raise ConflictError(
            f"deployment '{name}' already exists: choose another --name, or change it with "
            f"'riskloop deployment mode {name} MODE'"
        )
    mv = resolve_model(session, model)
    pol = policy if policy is not None else policy_mod.load(workspace=settings.workspace)
    rules = FallbackRules.load(fallback) if fallback is not None else None
    if mode in ("shadow", "fallback") and rules is None:
        raise InputError(f"mode {mode} answers with fallback rules: pass --fallback RULES.yaml")
    gate = check_gate(session, mv=mv, policy=pol, actor=actor, name=name) if mode == "active" else None
    target = load_target(session, settings, mv, trust=trust)
    if rules is not None:  # every feature the rules name must be an input of this model
        spec = target.input_spec
        rules.bind(n_features=spec.n_features,
                   feature_names=list(spec.feature_names) if spec.feature_names else None)
    if like is not None:
        config = _copied_config(session, like, mv, reference=reference, holdout=holdout, window=window)
        config["gate"] = gate
        return _store(session, name=name, mv=mv, mode=mode, rules=rules, config=config,
                      actor=actor, policy=pol)
    ref_ds = _reference_dataset(session, mv, reference)
    X_ref, y_ref = load_arrays(ref_ds)
    X_ref = target.input_spec.check(X_ref, where=f"reference dataset '{ref_ds.ref}'")
    hold_info: dict[str, Any]
    if holdout:
        hold_ds = resolve_dataset(session, holdout)
        X_hold, y_hold = load_arrays(hold_ds)
        X_hold = target.input_spec.check(X_hold, where=f"held-out dataset '{hold_ds.ref}'")
        hold_info = {"dataset": hold_ds.ref, "digest": hold_ds.digest, "rows": len(X_hold)}
    else:
        X_ref, X_hold, y_ref, y_hold = watchset.split_holdout(X_ref, y_ref, random_state=random_state)
        hold_info = {"dataset": f"{ref_ds.ref} (held-out split)", "digest": ref_ds.digest,
                     "rows": len(X_hold)}
    resolved = pol.resolve(tier=mv.tier, domain=mv.domain)
    budget = watchset.extraction_budget(
        session, mv, max_fidelity=watchset.policy_thresholds(resolved)["max_extraction_fidelity"])
    config = watchset.build_config(
        target=target, X_ref=X_ref, X_hold=X_hold, y_hold=y_hold, policy=resolved,
        model_path=Path(mv.path), random_state=random_state, drift_window=window,
        extraction_queries=budget,
    )
    config["trust"] = bool(trust)
    if not holdout:
        config["warnings"].append(
            "no --holdout given: watchdogs were calibrated on a held-out split of the reference "
            "data, which the model was trained on; false-alarm rates on live traffic may be higher"
        )
    config["reference"].update({"dataset": ref_ds.ref, "digest": ref_ds.digest})
    config["holdout"] = hold_info
    config["model"] = {"ref": mv.ref, "digest": mv.digest, "format": mv.format}
    config["gate"] = gate
    return _store(session, name=name, mv=mv, mode=mode, rules=rules, config=config, actor=actor,
                  policy=pol)


def _copied_config(session: Session, like: str, mv: ModelVersion, *, reference: str | None,
                   holdout: str | None, window: int | None) -> dict[str, Any]:
    import copy

    src = get(session, like)
    if src.model_id != mv.id:
        raise ConflictError(
            f"deployment '{like}' serves {src.model.ref}, not {mv.ref}: --like reuses the "
            "calibration of the same model version only"
        )
    if reference or holdout or window:
        raise InputError("--like reuses the references and calibration of another deployment: "
                         "drop --reference, --holdout and --window, or drop --like")
    config = copy.deepcopy(src.config)
    config["copied_from"] = like
    return config


def _store(session: Session, *, name: str, mv: ModelVersion, mode: str,
           rules: FallbackRules | None, config: dict[str, Any], actor: str, policy: Any) -> Deployment:
    from . import watchset

    rules_data = None
    if rules is not None:
        rules_data = _rules_dict(rules, config["classes"], config["input"]["n_features"],
                                 config["input"].get("feature_names"))
    now = datetime.now(UTC)
    dep = Deployment(name=name, model_id=mv.id, mode=mode, fallback_rules=rules_data,
                     config=config, created_at=now, updated_at=now, created_by=actor)
    session.add(dep)
    session.flush()
    audit.append(
        session, actor=actor, action="deployment.create", subject=f"deployment:{name}",
        payload={"model": mv.ref, "digest": mv.digest, "mode": mode, "gate": config.get("gate"),
                 "fallback": rules_data["digest"] if rules_data else None,
                 "reference": config["reference"].get("dataset"), "holdout": config.get("holdout"),
                 "calibration_from": config.get("copied_from"),
                 "watchdogs": watchset.calibration_summary(config),
                 "policy": {"name": policy.name, "digest": policy.digest}},
    )
    return dep


def set_mode(
    session: Session, settings: Settings, *, name: str, mode: str, actor: str,
    reason: str = "", policy: Any = None,
) -> Deployment:
    """Switch a deployment's mode (a running gateway picks it up within a second)."""
    from ..govern import policy as policy_mod

    check_mode(mode)
    dep = get(session, name)
    if dep.mode == mode:
        raise ConflictError(f"deployment '{name}' is already in mode {mode}")
    if mode in ("shadow", "fallback") and not dep.fallback_rules:
        raise ConflictError(
            f"deployment '{name}' has no fallback rules, which mode {mode} answers with: add "
            f"them with 'riskloop deployment rules {name} RULES.yaml'"
        )
    gate = None
    if mode == "active":
        pol = policy if policy is not None else policy_mod.load(workspace=settings.workspace)
        gate = check_gate(session, mv=dep.model, policy=pol, actor=actor, name=name)
    before = dep.mode
    dep.mode = mode
    dep.updated_at = datetime.now(UTC)
    session.flush()
    audit.append(session, actor=actor, action="deployment.mode", subject=f"deployment:{name}",
                 payload={"from": before, "to": mode, "reason": reason, "gate": gate})
    return dep


def set_rules(session: Session, *, name: str, path: str | Path, actor: str) -> Deployment:
    """Attach (or replace) a deployment's fallback rules."""
    dep = get(session, name)
    rules = FallbackRules.load(path)
    cfg = dep.config
    data = _rules_dict(rules, cfg["classes"], cfg["input"]["n_features"],
                       cfg["input"].get("feature_names"))
    before = (dep.fallback_rules or {}).get("digest")
    dep.fallback_rules = data
    dep.updated_at = datetime.now(UTC)
    session.flush()
    audit.append(session, actor=actor, action="deployment.rules", subject=f"deployment:{name}",
                 payload={"from": before, "to": data["digest"], "source": str(path),
                          "rules": len(data["rules"]), "default": data["default"]})
    return dep


# -- client keys --------------------------------------------------------------------------


def create_key(session: Session, *, name: str, client: str, actor: str) -> tuple[ClientKey, str]:
    """A new API key for ``client``; the key itself is returned once and never stored."""
    check_name(client)
    dep = get(session, name)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    rec = ClientKey(deployment_id=dep.id, client=client, key_hash=hash_key(key),
                    key_prefix=key[:10], created_by=actor)
    session.add(rec)
    session.flush()
    audit.append(session, actor=actor, action="client_key.create", subject=f"deployment:{name}",
                 payload={"key_id": rec.id, "client": client, "prefix": rec.key_prefix})
    return rec, key


def list_keys(session: Session, *, name: str) -> list[dict[str, Any]]:
    dep = get(session, name)
    keys = session.execute(select(ClientKey).where(ClientKey.deployment_id == dep.id)
                           .order_by(ClientKey.id)).scalars()
    return [{"id": k.id, "client": k.client, "prefix": k.key_prefix,
             "created_at": _iso(k.created_at), "created_by": k.created_by,
             "revoked_at": _iso(k.revoked_at)} for k in keys]


def revoke_key(session: Session, *, key_id: int, actor: str) -> ClientKey:
    rec = session.get(ClientKey, key_id)
    if rec is None:
        raise NotFoundError(f"unknown client key {key_id}: run 'riskloop client-key list DEPLOYMENT'")
    if rec.revoked_at is not None:
        raise ConflictError(f"client key {key_id} was already revoked")
    rec.revoked_at = datetime.now(UTC)
    dep = session.get(Deployment, rec.deployment_id)
    session.flush()
    audit.append(session, actor=actor, action="client_key.revoke",
                 subject=f"deployment:{dep.name if dep else rec.deployment_id}",
                 payload={"key_id": rec.id, "client": rec.client, "prefix": rec.key_prefix})
    return rec


def keys_of(session: Session, deployment_id: int) -> dict[str, str]:
    """Active key hashes of a deployment -> client name (what the gateway authenticates by)."""
    rows = session.execute(
        select(ClientKey.key_hash, ClientKey.client).where(
            ClientKey.deployment_id == deployment_id, ClientKey.revoked_at.is_(None))
    ).all()
    return {h: c for h, c in rows}


# -- reading ------------------------------------------------------------------------------


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).isoformat()


def deployment_dict(session: Session, dep: Deployment, *, detail: bool = False) -> dict[str, Any]:
    from . import review, watchset

    cfg = dep.config or {}
    logged = session.execute(select(func.count()).select_from(PredictionLog)
                             .where(PredictionLog.deployment_id == dep.id)).scalar_one()
    alerts = session.execute(select(func.count()).select_from(Alert)
                             .where(Alert.deployment_id == dep.id)).scalar_one()
    out: dict[str, Any] = {
        "name": dep.name, "model": dep.model.ref, "mode": dep.mode,
        "fallback": ({"digest": dep.fallback_rules["digest"], "rules": len(dep.fallback_rules["rules"]),
                      "default": dep.fallback_rules["default"]} if dep.fallback_rules else None),
        "review_below": cfg.get("policy", {}).get("review_below"),
        "predictions": int(logged), "alerts": int(alerts),
        "review": review.counts(session, dep.id),
        "created_at": _iso(dep.created_at), "updated_at": _iso(dep.updated_at),
        "created_by": dep.created_by,
    }
    if detail:
        out.update({
            "reference": {k: v for k, v in cfg.get("reference", {}).items() if k != "profile"},
            "holdout": cfg.get("holdout"), "policy": cfg.get("policy"), "gate": cfg.get("gate"),
            "watchdogs": watchset.calibration_summary(cfg), "warnings": cfg.get("warnings", []),
            "recent_alerts": recent_alerts(session, dep.id, limit=10),
            "clients": list_keys(session, name=dep.name),
        })
    return out


def recent_alerts(session: Session, deployment_id: int, *, limit: int = 50) -> list[dict[str, Any]]:
    rows = session.execute(select(Alert).where(Alert.deployment_id == deployment_id)
                           .order_by(Alert.id.desc()).limit(limit)).scalars()
    return [alert_dict(a) for a in rows]


def alert_dict(a: Alert) -> dict[str, Any]:
    return {"id": a.id, "kind": a.kind, "threat_id": a.threat_id, "client": a.client,
            "severity": a.severity, "details": a.details, "window_start": _iso(a.window_start),
            "window_end": _iso(a.window_end), "created_at": _iso(a.created_at)}


# -- evidence for governance (registered in monitor.govern_hooks) -------------------------


def _of_model(session: Session, mv: ModelVersion) -> list[Deployment]:
    return list(session.execute(select(Deployment).where(Deployment.model_id == mv.id)
                                .order_by(Deployment.name)).scalars())


def monitoring_evidence(session: Session, mv: ModelVersion) -> str | None:
    """NIST MEASURE 2.4 / ISO A.6.2.6: the model runs behind the watched gateway."""
    from . import watchset

    parts = []
    for dep in _of_model(session, mv):
        logged = session.execute(select(func.count()).select_from(PredictionLog)
                                 .where(PredictionLog.deployment_id == dep.id)).scalar_one()
        dogs = watchset.calibration_summary(dep.config or {})
        ref = (dep.config or {}).get("reference", {}).get("dataset")
        parts.append(f"deployment {dep.name} ({dep.mode}): {logged} predictions logged, drift "
                     f"profile of {ref}, {len(dogs)} watchdogs calibrated on held-out data")
    return "; ".join(parts) or None


def fallback_evidence(session: Session, mv: ModelVersion) -> str | None:
    """NIST MEASURE 2.6 'fails safely': fallback rules in place, and used."""
    parts = []
    for dep in _of_model(session, mv):
        rules = dep.fallback_rules
        if not rules:
            continue
        served = session.execute(select(func.count()).select_from(PredictionLog).where(
            PredictionLog.deployment_id == dep.id, PredictionLog.served_by == "fallback")).scalar_one()
        parts.append(f"deployment {dep.name}: fallback rules {rules['digest'][:12]} "
                     f"({len(rules['rules'])} rules, default '{rules['default']}'), "
                     f"{served} answers served by them")
    return "; ".join(parts) or None


def defence_fpr_evidence(session: Session, mv: ModelVersion) -> str | None:
    """Table 4 Defence FPR: each watchdog's false-positive rate measured on clean data."""
    from . import watchset

    parts = []
    for dep in _of_model(session, mv):
        for name, cal in watchset.calibration_summary(dep.config or {}).items():
            if cal.get("fpr") is not None:
                parts.append(f"{dep.name}/{name} {float(cal['fpr']):.2%} per {cal['unit']}")
    return ("measured false-positive rates: " + ", ".join(parts)) if parts else None
