"""Group-commit writer: every prediction is logged before it is answered, in batches.

Request handlers hand their :class:`~riskloop.monitor.guard.Outcome` to one writer thread and
wait for its future; the thread takes whatever is queued (up to ``max_batch`` jobs), writes
all of it in one transaction (prediction logs, review items, alerts with their audit events,
the incidents the alerts open or join, with automatic containment when the policy says so,
watcher states) and resolves the futures after the commit. A prediction is answered only
once its log row is committed, so what was served and what was logged cannot disagree; under
concurrency, many requests share one commit. When a batch fails, each job is retried alone so
one bad job cannot sink the others; a job that still fails makes its request fail with 503
and nothing of it is served.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, delete, event, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..config import Settings
from ..errors import InputError
from ..monitor import incidents
from ..monitor.guard import Outcome
from ..store import audit
from ..store.audit import HEAD_FILE, write_head_file
from ..store.db import _sqlite_begin, _sqlite_pragmas, get_engine
from ..store.models import Alert, Deployment, PredictionLog, ReviewItem, WatchState

log = logging.getLogger(__name__)


@dataclass
class Written:
    """Ids given to one outcome's records, and the mode an incident contained it in."""

    log_ids: list[int]
    review_ids: list[int | None]
    alert_ids: list[int]
    incident_id: int | None = None
    contained_mode: str | None = None


@dataclass
class _Job:
    kind: str  # "outcome" | "states"
    deployment_id: int
    deployment: str
    payload: Any
    future: Future[Any] = field(default_factory=Future)


_STOP = object()
SQLITE_SYNC = ("NORMAL", "FULL")
REPLICA = "gateway-replica"  # watch_states rows that are heartbeats of gateway processes


def _engine(settings: Settings, sqlite_sync: str) -> Engine:
    """The writer's engine. On SQLite it has its own connections, whose ``synchronous``
    level is ``sqlite_sync``: NORMAL (WAL's usual setting: a commit survives a crash of the
    process, the newest commits may be lost if the machine loses power) or FULL (an fsync
    per commit). PostgreSQL commits are durable either way."""
    if not settings.db_url.startswith("sqlite"):
        return get_engine(settings)
    if sqlite_sync not in SQLITE_SYNC:
        raise InputError(f"bad SQLite synchronous level '{sqlite_sync}': use NORMAL or FULL")
    get_engine(settings)  # creates the folder and the shared engine first
    engine = create_engine(settings.db_url, connect_args={"timeout": 30})

    def pragmas(dbapi_conn: Any, record: Any) -> None:
        _sqlite_pragmas(dbapi_conn, record)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA synchronous={sqlite_sync}")
        cur.close()

    event.listen(engine, "connect", pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _insert(session: Session, table: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows, returning their ids in order.

    On SQLite the writer holds the database's write lock for the whole transaction
    (``BEGIN IMMEDIATE``), so the ids are the next ones after the current maximum: the rows
    go in with one ``executemany``, values converted by the columns' own SQLAlchemy bind
    processors (the same stored form as any other insert), which costs about half of a Core
    ``INSERT ... RETURNING`` per row. Elsewhere: Core with ``RETURNING``.
    """
    conn = session.connection()
    dialect = conn.dialect
    if dialect.name != "sqlite":
        return list(conn.execute(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars())
    cols = list(rows[0])
    procs = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in cols]
    start = int(conn.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {table.name}").scalar_one())
    params = [
        (start + i + 1, *[(p(r[c]) if p is not None else r[c]) for c, p in zip(cols, procs, strict=True)])
        for i, r in enumerate(rows)
    ]
    marks = ", ".join("?" * (len(cols) + 1))
    conn.exec_driver_sql(f"INSERT INTO {table.name} (id, {', '.join(cols)}) VALUES ({marks})", params)
    return list(range(start + 1, start + 1 + len(rows)))


class StoreWriter:
    """One thread that owns every write the gateway makes to the store."""

    def __init__(self, settings: Settings, *, max_batch: int = 256, actor: str = "gateway",
                 sqlite_sync: str = "NORMAL") -> None:
        self.settings = settings
        self.max_batch = int(max_batch)
        self.actor = actor
        self._factory = sessionmaker(bind=_engine(settings, sqlite_sync), expire_on_commit=False)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.rows_written = 0
        self.batches = 0
        self.failures = 0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="riskloop-store-writer",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything queued so far, then stop."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        bind = self._factory.kw.get("bind")
        if bind is not None and bind is not get_engine(self.settings):
            bind.dispose()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    # -- submitting -------------------------------------------------------------------------
    def submit(self, outcome: Outcome, *, deployment_id: int, deployment: str) -> Future[Written]:
        job = _Job("outcome", deployment_id, deployment, outcome)
        self._queue.put(job)
        return job.future

    @staticmethod
    def job(outcome: Outcome, future: Future[Any], *, deployment_id: int, deployment: str) -> _Job:
        """An outcome to :meth:`write`, answering ``future`` when committed."""
        return _Job("outcome", deployment_id, deployment, outcome, future)

    def write(self, jobs: list[_Job]) -> None:
        """Write jobs now, in the calling thread, in one transaction (the batch worker's path)."""
        self._write(jobs)

    @staticmethod
    def states_job(states: list[tuple[str, str, dict[str, Any]]], future: Future[Any], *,
                   deployment_id: int, deployment: str) -> _Job:
        """Watcher states to :meth:`write` with a batch's outcomes."""
        return _Job("states", deployment_id, deployment, states, future)

    def submit_states(
        self, states: list[tuple[str, str, dict[str, Any]]], *, deployment_id: int, deployment: str
    ) -> Future[None]:
        job = _Job("states", deployment_id, deployment, states)
        self._queue.put(job)
        return job.future

    # -- the thread -------------------------------------------------------------------------
    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
            self._write(batch)

    def _write(self, batch: list[_Job]) -> None:
        try:
            with self._unit() as session:
                results = self._apply(session, batch)
        except Exception as exc:  # noqa: BLE001 - retried job by job below
            if len(batch) == 1:
                self.failures += 1
                log.error("could not log %s for %s: %s", batch[0].kind, batch[0].deployment, exc)
                batch[0].future.set_exception(exc)
                return
            for job in batch:
                self._write([job])
            return
        self.batches += 1
        for job, res in zip(batch, results, strict=True):
            if job.kind == "outcome":
                self.rows_written += len(job.payload.rows)
            job.future.set_result(res)

    @contextmanager
    def _unit(self) -> Iterator[Session]:
        session = self._factory()
        try:
            with session.begin():
                yield session
            head = session.info.pop("audit_head", None)
            if head is not None:
                write_head_file(self.settings.state_dir / HEAD_FILE, *head)
        finally:
            session.close()

    def _apply(self, session: Session, batch: list[_Job]) -> list[Any]:
        outcomes = [j for j in batch if j.kind == "outcome"]
        rows = [r for j in outcomes for r in j.payload.rows]
        ids: list[int] = []
        if rows:
            ids = _insert(session, PredictionLog.__table__, rows)
        review_rows: list[dict[str, Any]] = []
        review_slots: list[tuple[int, int]] = []  # (job index, row index)
        pos = 0
        per_job_ids: list[list[int]] = []
        for k, job in enumerate(outcomes):
            n = len(job.payload.rows)
            job_ids = ids[pos:pos + n]
            per_job_ids.append(job_ids)
            for i, reason in enumerate(job.payload.review):
                if reason:
                    review_rows.append({"deployment_id": job.deployment_id,
                                        "prediction_log_id": job_ids[i], "status": "open",
                                        "reason": reason,
                                        "created_at": job.payload.rows[i]["created_at"]})
                    review_slots.append((k, i))
            pos += n
        review_ids: list[int] = []
        if review_rows:
            review_ids = _insert(session, ReviewItem.__table__, review_rows)
        per_job_review: list[list[int | None]] = [[None] * len(j.payload.rows) for j in outcomes]
        for (k, i), rid in zip(review_slots, review_ids, strict=True):
            per_job_review[k][i] = rid
        results: dict[int, Any] = {}
        for k, job in enumerate(outcomes):
            alerts = [self._alert(session, job, a) for a in job.payload.alerts]
            written = Written(per_job_ids[k], per_job_review[k], [a.id for a in alerts])
            if alerts:
                self._incident(session, job, alerts, written)
            results[id(job)] = written
        for job in batch:
            if job.kind == "states":
                results[id(job)] = self._states(session, job)
        return [results[id(j)] for j in batch]

    def _incident(self, session: Session, job: _Job, alerts: list[Alert], written: Written) -> None:
        """Identify (open or join an incident) and, when the policy says so, contain."""
        dep = session.get(Deployment, job.deployment_id)
        if dep is None:
            return
        before = dep.mode
        pol = (dep.config or {}).get("policy", {})
        policy = incidents.IncidentPolicy(
            auto_contain=bool(pol.get("auto_contain", True)) and bool(dep.fallback_rules),
            contain_mode=str(pol.get("contain_mode", "fallback")),
        )
        inc = incidents.ingest_alerts(session, deployment=dep, alerts=alerts, actor=self.actor,
                                      policy=policy)
        if inc is not None:
            written.incident_id = inc.id
            if dep.mode != before:
                written.contained_mode = dep.mode

    def _alert(self, session: Session, job: _Job, a: Any) -> Alert:
        rec = Alert(deployment_id=job.deployment_id, kind=a.kind, threat_id=a.threat_id,
                    client=a.client, severity=a.severity, details=a.details,
                    window_start=a.window_start, window_end=a.window_end,
                    created_at=datetime.now(UTC))
        session.add(rec)
        session.flush()
        audit.append(session, actor=self.actor, action="alert.raise",
                     subject=f"deployment:{job.deployment}",
                     payload={"alert_id": rec.id, "kind": a.kind, "threat_id": a.threat_id,
                              "client": a.client, "severity": a.severity, "details": a.details})
        return rec

    def _states(self, session: Session, job: _Job) -> dict[tuple[str, str], datetime]:
        """Upsert (watchdog, client) states; returns the ``updated_at`` each row now has.

        Existing rows are found by their light columns only (a state can be tens of kB)."""
        clients = sorted({client for _w, client, _s in job.payload})
        existing = {(w, c): i for i, w, c in session.execute(
            select(WatchState.id, WatchState.watchdog, WatchState.client).where(
                WatchState.deployment_id == job.deployment_id, WatchState.client.in_(clients)))}
        now = datetime.now(UTC)
        stamps: dict[tuple[str, str], datetime] = {}
        table = WatchState.__table__
        for watchdog, client, state in job.payload:
            rid = existing.get((watchdog, client))
            if rid is None:
                session.execute(insert(table).values(
                    deployment_id=job.deployment_id, watchdog=watchdog, client=client,
                    state=state, updated_at=now))
            else:
                session.execute(update(table).where(table.c.id == rid).values(
                    state=state, updated_at=now))
            stamps[(watchdog, client)] = now
        return stamps

    # -- replicas ---------------------------------------------------------------------------
    def heartbeat(self, deployment_ids: list[int], *, replica: str, peers: int) -> None:
        """Say that this process (``replica``) serves these deployments now and sees ``peers``
        gateway processes in all (itself included)."""
        if not deployment_ids:
            return
        info = {"pid": os.getpid(), "host": socket.gethostname(), "peers": int(peers)}
        with self._unit() as session:
            for dep_id in deployment_ids:
                self._states(session, _Job("states", dep_id, "", [(REPLICA, replica, info)]))

    def replicas(self, deployment_ids: list[int], *, replica: str, window_s: float) -> dict[str, int]:
        """Other gateway processes serving any of these deployments (heartbeat within
        ``window_s``) and how many processes each of them sees."""
        if not deployment_ids:
            return {}
        cutoff = datetime.now(UTC) - timedelta(seconds=window_s)
        with self._factory() as session:
            rows = session.execute(
                select(WatchState.client, WatchState.state, WatchState.updated_at).where(
                    WatchState.deployment_id.in_(deployment_ids), WatchState.watchdog == REPLICA,
                    WatchState.client != replica)).all()
        out: dict[str, int] = {}
        for client, state, updated in rows:
            if (_aware(updated) or cutoff) >= cutoff:
                out[client] = min(out.get(client, 1 << 30), int((state or {}).get("peers", 1)))
        return out

    def leave(self, *, replica: str) -> None:
        """This process stops serving: drop its heartbeat rows."""
        with self._unit() as session:
            session.execute(delete(WatchState).where(WatchState.watchdog == REPLICA,
                                                     WatchState.client == replica))

    def pull_states(
        self, deployment_id: int, clients: set[str], seen: dict[tuple[str, str], datetime]
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """Watcher states of ``clients`` written since ``seen`` (whoever wrote them)."""
        with self._factory() as session:
            heads = session.execute(
                select(WatchState.id, WatchState.watchdog, WatchState.client, WatchState.updated_at)
                .where(WatchState.deployment_id == deployment_id,
                       WatchState.client.in_(sorted(clients)))).all()
            changed = [(i, w, c, _aware(u)) for i, w, c, u in heads
                       if w != REPLICA and seen.get((w, c)) != _aware(u)]
            if not changed:
                return []
            states = dict(session.execute(select(WatchState.id, WatchState.state).where(
                WatchState.id.in_([i for i, *_ in changed]))).all())
        for _i, w, c, u in changed:
            seen[(w, c)] = u  # type: ignore[assignment]
        return [(w, c, states[i]) for i, w, c, _u in changed if i in states]


def _aware(ts: datetime | None) -> datetime | None:
    """SQLite hands back naive UTC timestamps, PostgreSQL aware ones: compare them alike."""
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts
