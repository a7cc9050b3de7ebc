"""The safe-loading gate's records: scan results and explicit trust decisions in the store.

Registering a model scans its files (bytes only) and stores the scan as an assessment run of
suite ``supply-chain``; the model version's ``scan_status`` becomes the verdict. A person
may then record that they trust a version with findings (``riskloop trust``): the decision,
its reason and the actor go to the audit trail. The target loader
(:func:`riskloop.targets.loader.check_loadable`) reads both.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ...errors import ConflictError, InputError
from ...store import audit
from ...store.models import AssessmentRun, ModelVersion
from ..runs import record_run
from .engine import scan_paths
from .policy import ScanPolicy
from .report import ScanReport


def record_scan(session: Session, model: ModelVersion, *, actor: str,
                policy: ScanPolicy | None = None) -> tuple[AssessmentRun, ScanReport]:
    """Scan a registered model's files, store the run and set ``scan_status``."""
    report = scan_paths([model.path], policy)
    result = report.as_result()
    result.params["path"] = model.path
    run = record_run(session, actor=actor, model=model, dataset=None, result=result)
    before = model.scan_status
    model.scan_status = report.verdict
    session.flush()
    counts = report.counts()
    audit.append(
        session, actor=actor, action="model.scan", subject=f"model:{model.ref}",
        payload={"run": run.id, "verdict": report.verdict, "previous": before,
                 "critical": counts["critical"], "needs_trust": counts["needs_trust"],
                 "files": counts["files"], "digest": model.digest, "policy": report.policy},
    )
    return run, report


def set_trust(session: Session, model: ModelVersion, *, actor: str, reason: str,
              revoke: bool = False) -> dict[str, Any]:
    """Record (or revoke) an explicit trust decision for one model version, audited."""
    reason = (reason or "").strip()
    if not reason:
        raise InputError("--reason is empty: say why this model version can be trusted "
                         "(who reviewed what, where it came from)")
    if revoke and not model.trusted:
        raise ConflictError(f"model '{model.ref}' is not marked trusted: nothing to revoke")
    if not revoke and model.trusted:
        raise ConflictError(f"model '{model.ref}' is already marked trusted: "
                            "revoke it first (--revoke) to record a new decision")
    model.trusted = not revoke
    session.flush()
    payload = {"reason": reason, "trusted": model.trusted, "scan_status": model.scan_status,
               "signature_status": model.signature_status, "digest": model.digest}
    audit.append(session, actor=actor, action="model.untrust" if revoke else "model.trust",
                 subject=f"model:{model.ref}", payload=payload)
    return {"model": model.ref, **payload, "actor": actor}
