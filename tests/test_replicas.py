"""Two gateway processes (real ``riskloop serve`` subprocesses, uvicorn inside) on one
PostgreSQL serve one deployment. An extraction-style client whose requests alternate between
the replicas is still caught, because each batch pulls the client's watcher state that the
other replica changed from ``watch_states`` and writes its own back with its outcomes: the
query watcher's count for that client equals every row it sent to either replica.
Skipped unless ``RISKLOOP_TEST_PG_URL`` names a PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from riskloop.monitor import deployments as deps
from riskloop.store import db
from riskloop.store.db import transaction
from riskloop.store.models import Alert, WatchState
from tests.test_gateway import EXTRACTION_KINDS, walks
from tests.test_gateway_support import GatewayWorld, free_socket, make_world, post

PG_URL = os.environ.get("RISKLOOP_TEST_PG_URL")
pytestmark = [pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.skipif(not PG_URL, reason="RISKLOOP_TEST_PG_URL not set: no PostgreSQL")]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayWorld]:
    schema = "t_" + uuid.uuid4().hex[:12]
    eng = sa.create_engine(PG_URL)  # type: ignore[arg-type]
    with eng.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"  # type: ignore[operator]
    saved = dict(os.environ)
    try:
        w = make_world(tmp_path_factory.mktemp("replicas") / "ws", tmp_path_factory.getbasetemp(),
                       db_url=f"{PG_URL}{sep}options=-csearch_path%3D{schema}")
        w.deploy("shared", clients=("mallory", "carol"))
        yield w
    finally:
        db.dispose_engines()
        os.environ.clear()
        os.environ.update(saved)
        with eng.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        eng.dispose()


def _serve(world: GatewayWorld) -> tuple[subprocess.Popen[str], str]:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, **world.env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskloop", "--workspace", str(world.path), "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def replicas(world: GatewayWorld) -> Iterator[list[httpx.Client]]:
    procs = [_serve(world) for _ in range(2)]
    clients = []
    try:
        for proc, url in procs:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read() if proc.stdout else ""
                    raise RuntimeError(f"replica did not start: {out[-2000:]}")
                time.sleep(0.2)
            clients.append(httpx.Client(base_url=url, timeout=60))
        yield clients
    finally:
        for c in clients:
            c.close()
        for proc, _url in procs:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _alerts(world: GatewayWorld) -> list[Alert]:
    with transaction(world.settings) as s:
        dep = deps.get(s, "shared")
        return list(s.execute(select(Alert).where(Alert.deployment_id == dep.id)).scalars())


def _query_total(world: GatewayWorld, client: str) -> int:
    with transaction(world.settings) as s:
        dep = deps.get(s, "shared")
        st = s.execute(select(WatchState.state).where(
            WatchState.deployment_id == dep.id, WatchState.watchdog == "query-pattern",
            WatchState.client == client)).scalar_one()
        return int(st["total"])


def test_a_client_spread_over_two_replicas_is_watched_as_one(world, replicas):
    X, y = world.parts["X_live"], world.parts["y_live"]
    mallory, carol = world.key("shared", "mallory"), world.key("shared", "carol")
    sent = {"mallory": 0, "carol": 0}
    turn = 0
    for step, walk in enumerate(walks(X, y, 6)):
        # each walk in 8 requests of 5 rows, alternating replicas: neither sees a whole walk
        for k in range(0, len(walk), 5):
            r = post(replicas[turn % 2], "shared", mallory, walk[k:k + 5])
            assert r.status_code == 200, r.text
            sent["mallory"] += len(walk[k:k + 5])
            turn += 1
        clean = X[100 + 20 * step:120 + 20 * step]
        for k in range(0, len(clean), 4):
            assert post(replicas[turn % 2], "shared", carol, clean[k:k + 4]).status_code == 200
            sent["carol"] += len(clean[k:k + 4])
            turn += 1
    # Both replicas served mallory; the shared state counts every row of both.
    assert _query_total(world, "mallory") == sent["mallory"] == 240
    assert _query_total(world, "carol") == sent["carol"]
    alerts = _alerts(world)
    kinds = {a.kind for a in alerts if a.client == "mallory"} & EXTRACTION_KINDS
    assert kinds, [(a.kind, a.client) for a in alerts]
    assert not [a for a in alerts if a.client == "carol"]
    ext = next(a for a in alerts if a.client == "mallory" and a.kind in EXTRACTION_KINDS)
    assert ext.details["score"] > ext.details["threshold"]


def test_predictions_of_both_replicas_land_in_one_log(world, replicas):
    X = world.parts["X_live"][:10]
    key = world.key("shared", "carol")
    ids = {post(c, "shared", key, X).json()["request_id"] for c in replicas}
    assert len(ids) == 2  # request ids are unique across processes
    with transaction(world.settings) as s:
        from riskloop.store.models import PredictionLog

        dep = deps.get(s, "shared")
        got = set(s.execute(select(PredictionLog.request_id).where(
            PredictionLog.deployment_id == dep.id, PredictionLog.request_id.in_(ids))).scalars())
    assert got == ids
