"""The gateway on each store backend (SQLite and, with RISKLOOP_TEST_PG_URL, PostgreSQL):
serving, review routing, exactly-once logging under concurrency, a reviewer's decision."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
from sqlalchemy import func, select
from typer.testing import CliRunner

from riskloop.cli.app import app
from riskloop.store.db import transaction
from riskloop.store.models import Alert, PredictionLog, ReviewItem

from .test_gateway_support import make_world, post, running_server


def test_gateway_serves_and_logs_on_each_backend(workspace, tmp_path_factory):  # type: ignore[no-untyped-def]
    saved = dict(os.environ)
    try:
        world = make_world(workspace.path, tmp_path_factory.getbasetemp(),
                           db_url=workspace.env.get("RISKLOOP_DB_URL"))
        world.deploy("b", clients=("alice", "bob", "carol"))
        X, y = world.parts["X_live"], world.parts["y_live"]
        rng = np.random.default_rng(0)
        pairs = [(i, j) for i, j in rng.integers(0, len(X), (60, 2)) if y[i] != y[j]][:10]
        blends = np.asarray([0.5 * X[i] + 0.5 * X[j] for i, j in pairs], dtype=np.float32)
        served: list[int] = []
        reviews: list[int] = []
        lock = threading.Lock()
        with running_server(world.settings) as gw:
            first = post(gw, "b", world.key("b", "alice"), np.concatenate([blends, X[:10]])).json()
            queued = [p for p in first["predictions"] if p["status"] == "pending-review"]
            assert queued and all(p["review"]["id"] for p in queued)
            served += [p["id"] for p in first["predictions"]]
            reviews += [p["review"]["id"] for p in queued]

            def client(name: str, start: int) -> None:
                import httpx

                with httpx.Client(base_url=str(gw.base_url), timeout=60) as c:
                    for k in range(12):
                        r = post(c, "b", world.key("b", name), X[start + 2 * k:start + 2 * k + 2])
                        assert r.status_code == 200, r.text
                        with lock:
                            for p in r.json()["predictions"]:
                                served.append(p["id"])
                                if "review" in p:
                                    reviews.append(p["review"]["id"])

            threads = [threading.Thread(target=client, args=(n, 40 + 30 * k))
                       for k, n in enumerate(("bob", "carol"))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert len(served) == len(set(served)) == 20 + 2 * 12 * 2
        with transaction(world.settings) as s:
            assert s.execute(select(func.count()).select_from(PredictionLog)).scalar_one() == len(served)
            assert set(s.execute(select(PredictionLog.id)).scalars()) == set(served)
            assert set(s.execute(select(ReviewItem.id)).scalars()) == set(reviews)
            assert s.execute(select(func.count()).select_from(Alert)).scalar_one() == 0
        runner = CliRunner()
        item = str(queued[0]["review"]["id"])
        res = runner.invoke(app, ["--workspace", str(world.path), "review", "decide", item,
                                  "--label", "4", "--json"], env=world.env)
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["label"] == "4"
        res = runner.invoke(app, ["--workspace", str(world.path), "audit", "verify"], env=world.env)
        assert res.exit_code == 0, res.output
    finally:
        os.environ.clear()
        os.environ.update(saved)
