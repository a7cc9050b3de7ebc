"""`riskloop serve` as a real process: it follows mode changes made from another process,
shuts down cleanly, and a new process resumes modes, keys and per-client watchdog state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from riskloop.monitor import deployments as deps
from riskloop.store.db import transaction
from riskloop.store.models import WatchState

from .test_gateway_support import free_socket, make_world, post, wait_for


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    saved = dict(os.environ)
    w = make_world(tmp_path_factory.mktemp("restart"), tmp_path_factory.getbasetemp())
    w.deploy("r1", rules=True, clients=("alice", "mallory"))
    yield w
    os.environ.clear()
    os.environ.update(saved)


class Served:
    def __init__(self, world) -> None:  # type: ignore[no-untyped-def]
        sock = free_socket()
        self.port = sock.getsockname()[1]
        sock.close()
        env = {**os.environ, **world.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "riskloop", "--workspace", str(world.path), "serve",
             "--port", str(self.port)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out, err = self.proc.communicate(timeout=10)
                raise AssertionError(f"riskloop serve did not start: {err[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> tuple[int, str]:
        self.client.close()
        self.proc.send_signal(signal.SIGINT)
        _out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


def states(world, client: str) -> dict:  # type: ignore[no-untyped-def]
    with transaction(world.settings) as s:
        dep = deps.get(s, "r1")
        rows = s.execute(select(WatchState).where(WatchState.deployment_id == dep.id,
                                                  WatchState.client == client)).scalars().all()
        return {r.watchdog: r.state for r in rows}


def test_serve_follows_the_store_and_resumes_after_a_restart(world):  # type: ignore[no-untyped-def]
    X = world.parts["X_live"]
    mallory, alice = world.key("r1", "mallory"), world.key("r1", "alice")
    served = Served(world)
    try:
        gw = served.client
        assert post(gw, "r1", mallory, X[:30]).status_code == 200
        assert post(gw, "r1", alice, X[30:35]).status_code == 200
        # a mode change made by another process reaches the running gateway
        res = subprocess.run([sys.executable, "-m", "riskloop", "--workspace", str(world.path),
                              "deployment", "mode", "r1", "shadow", "--reason", "drill"],
                             env={**os.environ, **world.env}, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert wait_for(lambda: gw.get("/healthz").json()["deployments"]["r1"]["mode"] == "shadow")
        r = post(gw, "r1", alice, X[35:40]).json()
        assert {p["served_by"] for p in r["predictions"]} == {"fallback"}
        # a key created by another process is accepted without a restart (within a second)
        with transaction(world.settings) as s:
            _, new_key = deps.create_key(s, name="r1", client="carol", actor="tester")
        assert wait_for(lambda: post(gw, "r1", new_key, X[40:41]).status_code == 200, timeout=5)
    finally:
        code, err = served.stop()
    assert code == 0, err
    # shutdown checkpointed each client's watchdog state, keyed by (deployment, watchdog, client)
    before = states(world, "mallory")
    assert before["query-pattern"]["total"] == 30
    assert {"confidence-spike", "input-outlier"} <= set(before)

    served = Served(world)
    try:
        gw = served.client
        health = gw.get("/healthz").json()
        assert health["deployments"]["r1"]["mode"] == "shadow"  # the mode survived
        assert post(gw, "r1", new_key, X[41:42]).status_code == 200  # and the keys
        assert post(gw, "r1", mallory, X[50:60]).status_code == 200
    finally:
        code, err = served.stop()
    assert code == 0, err
    after = states(world, "mallory")
    # the query history continued from the checkpoint instead of starting over
    assert after["query-pattern"]["total"] == 40
    assert np.isfinite(after["confidence-spike"]["statistic"])
