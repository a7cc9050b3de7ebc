"""The audit trail: every change appends an event; any edit, deletion, reordering or
truncation is detected and the first bad event is named."""

from __future__ import annotations

import json

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskloop.store import audit, db
from riskloop.store.db import transaction
from riskloop.store.models import AuditEvent
from tests.helpers import write_csv


def _populate(ws, n: int) -> None:
    with transaction(ws.settings) as s:
        for i in range(n):
            audit.append(s, actor="t", action="test.event", subject=f"thing:{i}", payload={"i": i})


def _verify(ws):
    with transaction(ws.settings) as s:
        return audit.verify_chain(s, head_file=ws.settings.state_dir / audit.HEAD_FILE)


def test_commands_append_events_with_actor(ready, tmp_path):
    ready.invoke("register", "dataset", str(write_csv(tmp_path / "c.csv")), "--name", "d")
    events = json.loads(ready.invoke("audit", "--json").output)
    assert [e["action"] for e in events] == ["dataset.register"]
    assert events[0]["actor"] == "tester" and events[0]["subject"] == "dataset:d@1"
    res = ready.invoke("audit", "verify")
    assert res.exit_code == 0 and "intact" in res.output


def test_edit_is_detected(ready):
    _populate(ready, 5)
    eng = db.get_engine(ready.settings)
    with eng.begin() as conn:
        conn.execute(sa.update(AuditEvent).where(AuditEvent.seq == 3).values(actor="mallory"))
    rep = _verify(ready)
    assert not rep.ok and rep.bad_seq == 3 and "edited" in rep.problem
    res = ready.run("audit", "verify")
    assert res.returncode == 1 and "event #3" in res.stderr


def test_delete_in_middle_is_detected(ready):
    _populate(ready, 5)
    eng = db.get_engine(ready.settings)
    with eng.begin() as conn:
        conn.execute(sa.delete(AuditEvent).where(AuditEvent.seq == 2))
    rep = _verify(ready)
    assert not rep.ok and rep.bad_seq == 2


def test_truncation_of_newest_events_is_detected(ready):
    _populate(ready, 6)
    eng = db.get_engine(ready.settings)
    with eng.begin() as conn:
        conn.execute(sa.delete(AuditEvent).where(AuditEvent.seq >= 5))
    rep = _verify(ready)
    assert not rep.ok and "cut off the end" in rep.problem and rep.bad_seq == 5


def test_truncation_with_forged_db_checkpoint_is_caught_by_file(ready):
    _populate(ready, 6)
    eng = db.get_engine(ready.settings)
    with eng.begin() as conn:
        last = conn.execute(sa.select(AuditEvent.hash).where(AuditEvent.seq == 4)).scalar()
        conn.execute(sa.delete(AuditEvent).where(AuditEvent.seq >= 5))
        conn.exec_driver_sql(f"UPDATE audit_head SET seq = 4, hash = '{last}'")
    rep = _verify(ready)
    assert not rep.ok and "checkpoint file" in rep.problem


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_tampering_is_detected(ready_sqlite, data):
    ws = ready_sqlite
    eng = db.get_engine(ws.settings)
    with eng.begin() as conn:
        conn.execute(sa.delete(AuditEvent))
        conn.exec_driver_sql("DELETE FROM audit_head")
    (ws.settings.state_dir / audit.HEAD_FILE).unlink(missing_ok=True)
    n = data.draw(st.integers(3, 8))
    _populate(ws, n)
    assert _verify(ws).ok
    kind = data.draw(st.sampled_from(["edit-payload", "edit-actor", "delete", "swap", "truncate"]))
    i = data.draw(st.integers(1, n - 1))
    with eng.begin() as conn:
        if kind == "edit-payload":
            conn.execute(sa.update(AuditEvent).where(AuditEvent.seq == i).values(payload={"i": -1}))
        elif kind == "edit-actor":
            conn.execute(sa.update(AuditEvent).where(AuditEvent.seq == i).values(actor="x"))
        elif kind == "delete":
            conn.execute(sa.delete(AuditEvent).where(AuditEvent.seq == i))
        elif kind == "swap":
            a = conn.execute(sa.select(AuditEvent).where(AuditEvent.seq == i)).one()
            b = conn.execute(sa.select(AuditEvent).where(AuditEvent.seq == i + 1)).one()
            cols = ["ts", "actor", "action", "subject", "payload", "prev_hash", "hash"]
            conn.execute(sa.update(AuditEvent).where(AuditEvent.seq == i)
                         .values(**{c: getattr(b, c) for c in cols}))
            conn.execute(sa.update(AuditEvent).where(AuditEvent.seq == i + 1)
                         .values(**{c: getattr(a, c) for c in cols}))
        else:
            conn.execute(sa.delete(AuditEvent).where(AuditEvent.seq > i))
    rep = _verify(ws)
    assert not rep.ok
    assert rep.bad_seq is not None and rep.bad_seq <= i + 1
