"""The hash-chained audit trail.

Each event stores ``prev_hash`` and ``hash = sha256(canonical(seq, ts, actor, action, subject,
payload, prev_hash))``. Editing, deleting or reordering any event breaks the chain at that
event. Cutting events off the end leaves a valid but shorter chain, so the head (sequence
number and hash) is also checkpointed twice: in the ``audit_head`` table, updated in the same
transaction as every append, and in ``<workspace>/.riskloop/audit.head`` after each commit.
Verification compares the chain against both checkpoints.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AuditEvent, AuditHead

GENESIS = "0" * 64
HEAD_FILE = "audit.head"


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)


def event_hash(
    *, seq: int, ts: str, actor: str, action: str, subject: str, payload: Any, prev_hash: str
) -> str:
    body = canonical(
        {
            "seq": seq,
            "ts": ts,
            "actor": actor,
            "action": action,
            "subject": subject,
            "payload": payload,
            "prev": prev_hash,
        }
    )
    return hashlib.sha256(body.encode()).hexdigest()


def append(
    session: Session, *, actor: str, action: str, subject: str, payload: dict[str, Any] | None = None
) -> AuditEvent:
    """Append one event in the caller's transaction; the head row is locked while we do."""
    payload = json.loads(canonical(payload or {}))
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, seq=0, hash=GENESIS)
        session.add(head)
    seq = head.seq + 1
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    digest = event_hash(
        seq=seq, ts=ts, actor=actor, action=action, subject=subject, payload=payload,
        prev_hash=head.hash,
    )
    ev = AuditEvent(
        seq=seq, ts=ts, actor=actor, action=action, subject=subject, payload=payload,
        prev_hash=head.hash, hash=digest,
    )
    session.add(ev)
    head.seq, head.hash = seq, digest
    session.flush()
    session.info["audit_head"] = (seq, digest)
    return ev


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    events: int
    head_seq: int
    head_hash: str
    problem: str | None = None
    bad_seq: int | None = None


def verify_chain(session: Session, *, head_file: Path | None = None) -> ChainReport:
    """Walk the chain from the genesis; report the first event that does not fit."""
    events = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
    prev = GENESIS
    expected_seq = 1
    for ev in events:
        if ev.seq != expected_seq:
            return ChainReport(
                ok=False, events=len(events), head_seq=ev.seq, head_hash=ev.hash, bad_seq=expected_seq,
                problem=f"event #{expected_seq} is missing (next stored event is #{ev.seq})",
            )
        if ev.prev_hash != prev:
            return ChainReport(
                ok=False, events=len(events), head_seq=ev.seq, head_hash=ev.hash, bad_seq=ev.seq,
                problem=f"event #{ev.seq} does not link to the event before it (deleted or reordered)",
            )
        recomputed = event_hash(
            seq=ev.seq, ts=ev.ts, actor=ev.actor, action=ev.action, subject=ev.subject,
            payload=ev.payload, prev_hash=ev.prev_hash,
        )
        if recomputed != ev.hash:
            return ChainReport(
                ok=False, events=len(events), head_seq=ev.seq, head_hash=ev.hash, bad_seq=ev.seq,
                problem=f"event #{ev.seq} ({ev.action} {ev.subject}) was edited after it was written",
            )
        prev = ev.hash
        expected_seq += 1
    last_seq = expected_seq - 1
    checkpoints: list[tuple[str, int, str]] = []
    head = session.get(AuditHead, 1)
    if head is not None:
        checkpoints.append(("database checkpoint", head.seq, head.hash))
    if head_file is not None and head_file.exists():
        try:
            data = json.loads(head_file.read_text())
            checkpoints.append(("checkpoint file", int(data["seq"]), str(data["hash"])))
        except (ValueError, KeyError, TypeError):
            return ChainReport(
                ok=False, events=len(events), head_seq=last_seq, head_hash=prev,
                problem=f"checkpoint file {head_file} is unreadable",
            )
    hashes = {ev.seq: ev.hash for ev in events}
    for where, seq, digest in checkpoints:
        if seq < last_seq and hashes.get(seq) != digest:
            return ChainReport(
                ok=False, events=len(events), head_seq=last_seq, head_hash=prev, bad_seq=seq,
                problem=f"event #{seq} does not match the {where}",
            )
        if seq > last_seq:
            return ChainReport(
                ok=False, events=len(events), head_seq=last_seq, head_hash=prev, bad_seq=last_seq + 1,
                problem=f"events #{last_seq + 1}..#{seq} were cut off the end ({where} says #{seq})",
            )
        if seq == last_seq and digest != prev:
            return ChainReport(
                ok=False, events=len(events), head_seq=last_seq, head_hash=prev, bad_seq=last_seq,
                problem=f"event #{last_seq} does not match the {where}",
            )
    return ChainReport(ok=True, events=len(events), head_seq=last_seq, head_hash=prev)


def write_head_file(path: Path, seq: int, digest: str) -> None:
    """Persist the chain head outside the database (after the transaction committed).

    Only moves forward: a concurrent writer that committed a later head is never overwritten.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        try:
            if int(json.loads(path.read_text())["seq"]) >= seq:
                return
        except (ValueError, KeyError, TypeError):
            pass
    tmp = path.with_suffix(f".{seq}.tmp")
    tmp.write_text(canonical({"seq": seq, "hash": digest}))
    tmp.replace(path)
