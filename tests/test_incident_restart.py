"""Restarting the gateway mid-incident loses nothing: the incident, the mode and the review
queue resume from the store, and new alerts join the open incident."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import func, select

from riskloop.monitor import deployments as deps
from riskloop.monitor.simulate import TrafficSimulator
from riskloop.store.db import transaction
from riskloop.store.models import Incident, ReviewItem

from .test_gateway_support import make_world, post, running_server


@pytest.fixture()
def world(tmp_path, tmp_path_factory):  # type: ignore[no-untyped-def]
    saved = dict(os.environ)
    w = make_world(tmp_path / "restart", tmp_path_factory.getbasetemp())
    w.deploy("restart", clients=("alice",), rules=True)
    yield w
    os.environ.clear()
    os.environ.update(saved)


def extraction(world, gw, n: int):  # type: ignore[no-untyped-def]
    return TrafficSimulator(scenario="extraction", rate=500, duration=60, max_requests=n).run(
        world.settings, deployment="restart", url=str(gw.base_url), client=gw)


def open_reviews(world) -> int:  # type: ignore[no-untyped-def]
    with transaction(world.settings) as s:
        return int(s.execute(select(func.count()).select_from(ReviewItem)
                             .where(ReviewItem.status == "open")).scalar_one())


def test_restart_mid_incident_resumes_from_the_store(world):  # type: ignore[no-untyped-def]
    with running_server(world.settings) as gw:
        out = extraction(world, gw, 30)
        [inc] = out.incidents
        assert inc["state"] == "contained" and inc["mode"] == "fallback"
        reviews = open_reviews(world)
        signals = len(out.alerts)
    with running_server(world.settings) as gw:  # a fresh process state, the same store
        r = post(gw, "restart", world.key("restart", "alice"), world.parts["X_live"][:3])
        assert r.status_code == 200 and r.json()["mode"] == "fallback"
        assert {p["served_by"] for p in r.json()["predictions"]} == {"fallback"}
        assert open_reviews(world) >= reviews  # the queue is still there
        again = extraction(world, gw, 60)
    with transaction(world.settings) as s:
        rows = list(s.execute(select(Incident)).scalars())
        assert [i.id for i in rows] == [inc["id"]]  # joined, not a second incident
        assert rows[0].state == "contained" and deps.get(s, "restart").mode == "fallback"
        assert len(rows[0].signals) >= signals
        assert [t.action for t in rows[0].transitions] == ["identify", "contain"]
    assert all(i["id"] == inc["id"] for i in again.incidents)
