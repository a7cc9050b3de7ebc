"""Micro-batching of concurrent predict requests.

Request handlers validate their rows on the event loop and hand them to one worker thread.
The worker takes everything queued (up to ``max_rows`` rows), groups it by deployment and
runs each group through :meth:`Guard.run_batch`: one model call, one defence call, one pass
of each watcher per client. It then writes every outcome of the batch in one transaction
(:meth:`StoreWriter.write`) and answers each request's future once its rows are committed.
Under load, the model's per-call cost and the watchers' per-call cost are shared by every
request of a batch; alone, a request is its own batch and waits for nothing. With other
gateway replicas on the same store, watcher states are pulled and written per batch (see
:class:`BatchWorker`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..monitor.guard import Request

if TYPE_CHECKING:
    from .runtime import LiveDeployment
    from .writer import StoreWriter

log = logging.getLogger(__name__)
_STOP = object()


@dataclass
class PredictJob:
    live: LiveDeployment
    request: Request
    future: Future[Any] = field(default_factory=Future)
    outcome: Any = None


@dataclass
class _Flush:
    lives: list[LiveDeployment]
    future: Future[None] = field(default_factory=Future)


class BatchWorker:
    """The thread that runs guards on batches of queued requests.

    Replicas: while other gateway processes serve the same store (``sharing``, kept up to date
    by the runtime from their heartbeats), every batch first pulls the watcher states of its
    clients that another replica changed and writes its own changed states with its
    outcomes, so the replicas watch each client as one. Alone, a process does neither and
    checkpoints its states periodically instead.
    """

    def __init__(self, writer: StoreWriter, *, max_rows: int = 512, share_states: bool = True,
                 metrics: Any = None) -> None:
        self.writer = writer
        self.share_states = share_states
        self.sharing = False  # set by the runtime when other replicas are alive
        self.metrics = metrics
        self.sync_seconds = 0.0  # time spent pulling other replicas' watcher states
        self.max_rows = int(max_rows)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.requests = 0
        self.shared_batches = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="riskloop-guard", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, live: LiveDeployment, X: np.ndarray, *, client: str, request_id: str,
               started: float) -> PredictJob:
        job = PredictJob(live, Request(X, client, request_id, started))
        self._queue.put(job)
        return job

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def flush(self, lives: list[LiveDeployment]) -> Future[None]:
        """Write the deployments' changed watcher states between two batches."""
        job = _Flush(lives)
        self._queue.put(job)
        return job.future

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            if isinstance(first, _Flush):
                self._flush(first)
                continue
            batch = [first]
            rows = len(first.request.X)
            while rows < self.max_rows:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                if isinstance(nxt, _Flush):
                    self._run(batch)
                    batch = []
                    self._flush(nxt)
                    break
                batch.append(nxt)
                rows += len(nxt.request.X)
            if batch:
                self._run(batch)

    def _flush(self, job: _Flush) -> None:
        try:
            writes = []
            for live in job.lives:
                states = live.guard.export_states()
                if states:
                    done: Future[Any] = Future()
                    done.add_done_callback(lambda f, live=live: self._written(live, f))
                    writes.append(self.writer.states_job(states, done, deployment_id=live.id,
                                                         deployment=live.name))
            if writes:
                self.writer.write(writes)
                for w in writes:
                    w.future.result()
            job.future.set_result(None)
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            job.future.set_exception(exc)

    def _pull(self, live: LiveDeployment, clients: set[str]) -> bool:
        """Import the watcher states of these clients that another replica changed; False
        when no other replica serves this store (nothing to share)."""
        if not (self.share_states and self.sharing):
            return False
        t = time.perf_counter()
        try:
            rows = self.writer.pull_states(live.id, clients, live.seen_states)
        except Exception as exc:  # noqa: BLE001 - serve on this replica's own state
            log.warning("could not read shared watcher state of %s: %s", live.name, exc)
            return True
        if rows:
            live.guard.import_states(rows)
        self.sync_seconds += time.perf_counter() - t
        return True

    @staticmethod
    def _written(live: LiveDeployment, future: Future[Any]) -> None:
        if future.exception() is None and future.result():
            live.seen_states.update(future.result())

    def _run(self, batch: list[PredictJob]) -> None:
        groups: dict[int, list[PredictJob]] = {}
        for job in batch:
            groups.setdefault(id(job.live), []).append(job)
        writes = []
        for jobs in groups.values():
            live = jobs[0].live
            t = time.perf_counter()
            clients = {j.request.client for j in jobs} | {""}
            try:
                shared = self._pull(live, clients)
                outcomes = live.guard.run_batch([j.request for j in jobs])
            except Exception as exc:  # noqa: BLE001 - every request of the group fails alike
                log.exception("guard of %s failed on a batch of %d requests", live.name, len(jobs))
                for j in jobs:
                    j.future.set_exception(exc)
                continue
            self.batches += 1
            self.requests += len(jobs)
            timings = outcomes[0].timings
            timings["batch"] = time.perf_counter() - t
            if self.metrics is not None:  # once per batch: every request in it shares them
                for stage, seconds in timings.items():
                    self.metrics.stage_child(live.name, stage).observe(seconds)
                self.metrics.batch_size.observe(len(jobs))
            for j, outcome in zip(jobs, outcomes, strict=True):
                j.outcome = outcome
                writes.append(self.writer.job(outcome, j.future, deployment_id=live.id,
                                              deployment=live.name))
            states = live.guard.export_states() if shared else []
            if states:
                self.shared_batches += 1
                done: Future[Any] = Future()
                done.add_done_callback(lambda f, live=live: self._written(live, f))
                writes.append(self.writer.states_job(states, done, deployment_id=live.id,
                                                     deployment=live.name))
        if writes:
            # written here, in the same thread: one hand-over per request each way, as in a
            # plain endpoint; the commit releases the GIL while SQLite or the server works
            self.writer.write(writes)
