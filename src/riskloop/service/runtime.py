"""The gateway's running state: deployments loaded from the store, keys, the writer, metrics.

Everything durable lives in the store, so a restarted server resumes where it stopped:
deployments and their modes, fallback rules, client keys, the review queue and the watchers'
checkpointed state (``watch_states``). A refresher thread re-reads deployments and keys every
``refresh_s`` seconds, so ``riskloop deployment mode`` or ``riskloop client-key create`` run
from another process take effect without a restart, and checkpoints watcher state every
``checkpoint_s`` seconds (and at shutdown).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..config import Settings
from ..errors import InputError, NotFoundError, RiskloopError
from ..monitor import deployments as deps
from ..monitor import watchset
from ..monitor.fallback import FallbackRules
from ..monitor.guard import LOG_INPUTS, Guard
from ..store.db import check_ready, get_engine
from ..store.models import ClientKey, Deployment, WatchState
from .errors import AuthError
from .metrics import GatewayMetrics
from .pipeline import BatchWorker
from .writer import StoreWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayOptions:
    """Limits and intervals of one gateway process."""

    max_body: int = 1_048_576  # bytes per request body
    max_rows: int = 256  # rows per predict request
    refresh_s: float = 1.0  # how often deployments and keys are re-read
    checkpoint_s: float = 10.0  # how often watcher state is written to the store
    cooldown_s: float = 60.0  # one alert per (kind, client) per cooldown
    writer_batch: int = 256  # log jobs per transaction at most
    sqlite_sync: str = "NORMAL"  # SQLite log commits: NORMAL, or FULL for an fsync per commit
    batch_rows: int = 512  # rows of concurrent requests run through a guard together at most
    log_inputs: str = "review"  # inputs kept in the log: review (routed rows), all or none
    actor: str = "gateway"  # audit actor of alerts the gateway raises
    share_states: bool = True  # with other replicas on the store: pull / write states per batch


@dataclass
class LiveDeployment:
    id: int
    name: str
    model: str
    guard: Guard
    updated_at: datetime
    rules_digest: str | None
    calibration: dict[str, Any]
    input: dict[str, Any]
    keys: dict[str, str] = field(default_factory=dict)
    model_id: int | None = None
    seen_states: dict[tuple[str, str], datetime] = field(default_factory=dict)


class Runtime:
    """State shared by every request of one app."""

    def __init__(self, settings: Settings, options: GatewayOptions | None = None) -> None:
        self.settings = settings
        self.options = options or GatewayOptions()
        if self.options.log_inputs not in LOG_INPUTS:
            raise InputError(f"log_inputs must be one of {', '.join(LOG_INPUTS)}, "
                             f"got {self.options.log_inputs!r}")
        self.metrics = GatewayMetrics(self)
        self.writer = StoreWriter(settings, max_batch=self.options.writer_batch,
                                  actor=self.options.actor, sqlite_sync=self.options.sqlite_sync)
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(6)
        self.worker = BatchWorker(self.writer, max_rows=self.options.batch_rows,
                                  share_states=self.options.share_states, metrics=self.metrics)
        self.replica_window_s = max(5.0, 5 * self.options.refresh_s)
        self.peers: dict[str, int] = {}
        self._live: dict[str, LiveDeployment] = {}
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_refresh = 0.0
        self._factory: sessionmaker[Session] | None = None
        self.load_errors: dict[str, str] = {}
        self.started = False

    def next_request_id(self) -> str:
        """A request id unique across processes and restarts (random prefix, counter)."""
        return f"{self._id_prefix}-{next(self._ids):x}"

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        check_ready(self.settings)
        self._factory = sessionmaker(bind=get_engine(self.settings), expire_on_commit=False)
        self.writer.start()
        self.worker.start()
        self.refresh()
        self._join()
        self._thread = threading.Thread(target=self._background, name="riskloop-refresher",
                                        daemon=True)
        self._thread.start()
        self.started = True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.worker.stop()
        try:
            self.checkpoint()
            if self.options.share_states:
                self.writer.leave(replica=self._id_prefix)
        finally:
            self.writer.stop()
        self.started = False

    def _background(self) -> None:
        last_ckpt = time.monotonic()
        while not self._stop.wait(self.options.refresh_s):
            try:
                self.refresh()
                self._heartbeat()
                if time.monotonic() - last_ckpt >= self.options.checkpoint_s:
                    self.checkpoint()
                    last_ckpt = time.monotonic()
            except Exception:  # keep serving what is loaded; try again next tick
                log.exception("gateway refresh failed")

    def _heartbeat(self) -> None:
        """Look for other gateway processes on this store and tell them about this one.

        When the first other replica appears, this one writes out every watcher state it
        has not checkpointed yet *before* its heartbeat says it sees the other (peers >= 2),
        and from then on shares state batch by batch."""
        if not self.options.share_states:
            return
        ids = [d.id for d in self.live_deployments()]
        self.peers = self.writer.replicas(ids, replica=self._id_prefix,
                                          window_s=self.replica_window_s)
        sharing = bool(self.peers)
        if sharing and not self.worker.sharing:
            self.worker.sharing = True
            self.checkpoint()
            log.info("sharing watcher state with %d other gateway process(es)", len(self.peers))
        elif not sharing and self.worker.sharing:
            self.worker.sharing = False
        self.writer.heartbeat(ids, replica=self._id_prefix, peers=1 + len(self.peers))

    def _join(self) -> None:
        """At start, before serving: when other replicas run, wait (a few refresh periods at
        most) until each has seen this one and flushed its watcher states."""
        self._heartbeat()
        if not self.peers:
            return
        deadline = time.monotonic() + 3 * self.options.refresh_s + 1.0
        while time.monotonic() < deadline:
            seen = self.writer.replicas([d.id for d in self.live_deployments()],
                                        replica=self._id_prefix, window_s=self.replica_window_s)
            if all(n >= 2 for n in seen.values()):
                return
            time.sleep(0.1)
        log.warning("other gateway processes did not acknowledge this one in time; "
                    "their newest watcher states may arrive late")

    # -- deployments ------------------------------------------------------------------------
    def live_deployments(self) -> list[LiveDeployment]:
        return list(self._live.values())

    def get(self, name: str) -> LiveDeployment:
        live = self._live.get(name)
        if live is None and time.monotonic() - self._last_refresh > 0.25:
            self.refresh()  # created since the last refresh?
            live = self._live.get(name)
        if live is None:
            if name in self.load_errors:
                raise NotFoundError(f"deployment '{name}' cannot be served: {self.load_errors[name]}")
            raise NotFoundError(f"unknown deployment '{name}'")
        return live

    def authenticate(self, live: LiveDeployment, key: str | None) -> str:
        """The client name behind an API key of this deployment."""
        if not key:
            raise AuthError(f"missing API key for deployment '{live.name}': send it in the "
                            "X-API-Key header (create one with 'riskloop client-key create')")
        digest = deps.hash_key(key)
        client = live.keys.get(digest)
        if client is None and time.monotonic() - self._last_refresh > 0.25:
            self.refresh()  # a key created since the last refresh?
            client = self._live.get(live.name, live).keys.get(digest)
        if client is None:
            raise AuthError(f"API key is not valid for deployment '{live.name}'")
        return client

    def refresh(self) -> None:
        """Re-read deployments and keys; (re)load what changed.

        Only the light columns are read every time; a deployment's config (the frozen
        profile and calibration, megabytes of JSON) is read when it is first loaded.
        """
        assert self._factory is not None, "runtime not started"
        with self._load_lock:
            self._last_refresh = time.monotonic()
            with self._factory() as session:
                heads = session.execute(
                    select(Deployment.id, Deployment.name, Deployment.mode, Deployment.updated_at,
                           Deployment.model_id)
                ).all()
                keys: dict[int, dict[str, str]] = {}
                for h, c, dep_id in session.execute(
                    select(ClientKey.key_hash, ClientKey.client, ClientKey.deployment_id)
                    .where(ClientKey.revoked_at.is_(None))
                ):
                    keys.setdefault(dep_id, {})[h] = c
                live: dict[str, LiveDeployment] = {}
                for dep_id, name, mode, updated_at, model_id in heads:
                    current = self._live.get(name)
                    try:
                        # a new model version (incident recovery) means a full reload
                        if current is not None and current.id == dep_id and current.model_id == model_id:
                            item = current
                            if current.updated_at != updated_at:
                                self._resync(session, current, dep_id, mode, updated_at)
                        else:
                            item = self._load(session, dep_id)
                    except RiskloopError as exc:
                        if name not in self.load_errors:
                            log.error("deployment %s cannot be served: %s", name, exc)
                        self.load_errors[name] = str(exc)
                        continue
                    self.load_errors.pop(name, None)
                    item.keys = keys.get(dep_id, {})
                    live[name] = item
            self._live = live

    def _resync(self, session: Session, current: LiveDeployment, dep_id: int, mode: str,
                updated_at: datetime) -> None:
        rules = session.execute(select(Deployment.fallback_rules).where(Deployment.id == dep_id)).scalar_one()
        digest = (rules or {}).get("digest")
        if digest != current.rules_digest:
            current.guard.rules = self._bind_rules(rules, current.input)
            current.rules_digest = digest
        current.guard.mode = mode
        current.updated_at = updated_at

    def _load(self, session: Session, dep_id: int) -> LiveDeployment:
        from ..targets.loader import load_target

        dep = session.get(Deployment, dep_id)
        assert dep is not None
        mv = dep.model
        cfg = dep.config
        target = load_target(session, self.settings, mv, trust=bool(cfg.get("trust")))
        guard = watchset.build_guard(
            name=dep.name, deployment_id=dep.id, mode=dep.mode, config=cfg,
            rules=dep.fallback_rules, target=target, model_path=Path(mv.path),
            cooldown_s=self.options.cooldown_s,
        )
        guard.max_rows = self.options.max_rows
        guard.log_inputs = self.options.log_inputs
        states = [(s.watchdog, s.client, s.state) for s in session.execute(
            select(WatchState).where(WatchState.deployment_id == dep.id)).scalars()]
        if states:
            guard.import_states(states)
        log.info("serving deployment %s (%s, mode %s)", dep.name, mv.ref, dep.mode)
        return LiveDeployment(id=dep.id, name=dep.name, model=mv.ref, guard=guard,
                              updated_at=dep.updated_at,
                              rules_digest=(dep.fallback_rules or {}).get("digest"),
                              calibration=watchset.calibration_summary(cfg),
                              input=dict(cfg["input"]), model_id=dep.model_id)

    @staticmethod
    def _bind_rules(rules: dict[str, Any] | None, inp: dict[str, Any]) -> Any:
        if not rules:
            return None
        return FallbackRules.from_dict(rules).bind(
            n_features=inp["n_features"], feature_names=inp.get("feature_names"))

    def checkpoint(self) -> None:
        """Write every watcher's changed state to the store (keyed by watchdog and client).

        While the batch thread runs, it does the writing between two batches, so a state is
        never exported while a batch changes it, and the rows it writes are known as its own
        (a replica's next pull does not read them back over newer state)."""
        lives = self.live_deployments()
        try:
            if self.worker.running:
                self.worker.flush(lives).result(timeout=60)
                return
            for live in lives:
                states = live.guard.export_states()
                if states:
                    stamps = self.writer.submit_states(
                        states, deployment_id=live.id, deployment=live.name).result(timeout=30)
                    live.seen_states.update(stamps or {})
        except Exception as exc:  # noqa: BLE001 - a later checkpoint retries
            log.warning("watcher checkpoint failed: %s", exc)
