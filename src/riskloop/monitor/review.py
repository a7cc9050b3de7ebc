"""The human review queue: low-confidence decisions go to a person (paper 2.3.3, 5.1(4)).

The gateway opens an item for every prediction whose confidence is below the policy's
review threshold (and for inputs a defence flagged); the response tells the caller its
answer is provisional. A reviewer lists open items and decides each with the correct label.
Decisions are audited, and the label is written back onto the prediction log so that
performance (concept) drift can be measured from reviewed traffic
(:func:`labelled_predictions`).

Opening an item is part of logging the prediction (same transaction, no audit event: it
is data, like the log row); deciding one is a state change and is audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import ConflictError, InputError, NotFoundError
from ..store import audit
from ..store.models import Deployment, PredictionLog, ReviewItem

STATUSES = ("open", "decided")
MAX_NOTE = 2000


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.isoformat()


def review_dict(item: ReviewItem, deployment: Deployment | None = None) -> dict[str, Any]:
    log = item.prediction
    return {
        "id": item.id, "deployment": deployment.name if deployment else item.deployment_id,
        "status": item.status, "reason": item.reason,
        "prediction_id": item.prediction_log_id, "request_id": log.request_id,
        "client": log.client, "model_answer": (log.output or {}).get("label"),
        "answer": log.answer, "confidence": log.confidence, "mode": log.mode,
        "inputs_digest": log.inputs_digest, "label": item.label, "reviewer": item.reviewer,
        "note": item.note, "created_at": _iso(item.created_at), "decided_at": _iso(item.decided_at),
    }


def list_items(
    session: Session, *, deployment: str | None = None, status: str | None = "open",
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Review items, oldest first; ``status`` None lists every item."""
    if status is not None and status not in STATUSES:
        raise InputError(f"unknown review status '{status}': choose open, decided or all")
    if limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    stmt = select(ReviewItem, Deployment).join(Deployment, Deployment.id == ReviewItem.deployment_id)
    if deployment is not None:
        dep = session.execute(select(Deployment).where(Deployment.name == deployment)).scalar_one_or_none()
        if dep is None:
            raise NotFoundError(
                f"unknown deployment '{deployment}': run 'riskloop deployment list' to see them"
            )
        stmt = stmt.where(ReviewItem.deployment_id == dep.id)
    if status is not None:
        stmt = stmt.where(ReviewItem.status == status)
    rows = session.execute(stmt.order_by(ReviewItem.id).limit(limit)).all()
    return [review_dict(item, dep) for item, dep in rows]


def counts(session: Session, deployment_id: int) -> dict[str, int]:
    rows = session.execute(
        select(ReviewItem.status, func.count()).where(ReviewItem.deployment_id == deployment_id)
        .group_by(ReviewItem.status)
    ).all()
    out = dict.fromkeys(STATUSES, 0)
    out.update({str(s): int(n) for s, n in rows})
    return out


def decide(
    session: Session, *, item_id: int, label: str, actor: str, note: str | None = None
) -> ReviewItem:
    """Record a reviewer's decision; the label also lands on the prediction log."""
    item = session.get(ReviewItem, item_id)
    if item is None:
        raise NotFoundError(f"unknown review item {item_id}: run 'riskloop review list' to see open items")
    if item.status == "decided":
        raise ConflictError(
            f"review item {item_id} was already decided by {item.reviewer} as '{item.label}': "
            "decisions are final (they are in the audit trail)"
        )
    label = (label or "").strip()
    dep = session.get(Deployment, item.deployment_id)
    assert dep is not None
    allowed = [str(c) for c in (dep.config or {}).get("classes", [])]
    fallback_answers = [str(a) for a in ((dep.fallback_rules or {}).get("answers") or [])]
    choices = allowed + [a for a in fallback_answers if a not in allowed]
    if not label:
        raise InputError("--label is empty: give the correct answer for this input")
    if choices and label not in choices:
        shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
        raise InputError(f"label '{label}' is not an answer of deployment '{dep.name}' ({shown})")
    if note is not None and len(note) > MAX_NOTE:
        raise InputError(f"--note is {len(note)} characters long: keep it under {MAX_NOTE}")
    now = datetime.now(UTC)
    item.status, item.label, item.reviewer, item.note, item.decided_at = "decided", label, actor, note, now
    log = item.prediction
    log.label = label
    session.flush()
    audit.append(
        session, actor=actor, action="review.decide", subject=f"deployment:{dep.name}",
        payload={"item_id": item.id, "prediction_id": log.id, "label": label,
                 "model_answer": (log.output or {}).get("label"), "answer": log.answer,
                 "confidence": log.confidence, "note": note},
    )
    return item


def labelled_predictions(
    session: Session, deployment_id: int, *, since: datetime | None = None
) -> dict[str, np.ndarray]:
    """Model answers, true labels, confidences and times of every labelled prediction.

    Labels come from reviewer decisions and from events ingested with a label; this is what
    performance (concept) drift is measured on.
    """
    stmt = select(PredictionLog.output, PredictionLog.label, PredictionLog.confidence,
                  PredictionLog.created_at).where(
        PredictionLog.deployment_id == deployment_id, PredictionLog.label.is_not(None)
    )
    if since is not None:
        stmt = stmt.where(PredictionLog.created_at >= since)
    rows = session.execute(stmt.order_by(PredictionLog.id)).all()
    predicted = np.array([str((o or {}).get("label")) for o, *_ in rows], dtype=object)
    labels = np.array([str(lab) for _, lab, *_ in rows], dtype=object)
    conf = np.array([np.nan if c is None else float(c) for *_, c, _t in rows], dtype=np.float64)
    times = np.array([t for *_, t in rows], dtype=object)
    return {"predicted": predicted, "label": labels, "confidence": conf, "time": times}
