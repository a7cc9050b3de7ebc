"""The traffic simulator against a real uvicorn gateway on a free loopback port.

Each attack scenario opens an incident classified as a suspected attack, the drift scenario
one classified as benign drift, clean traffic none; with fallback rules and the policy's
automatic containment the mode switches to fallback within one window.
"""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from riskloop.cli.app import app
from riskloop.errors import InputError
from riskloop.monitor import deployments as deps
from riskloop.monitor.simulate import TrafficSimulator, check_url
from riskloop.store.db import transaction
from riskloop.store.models import AuditEvent

from .test_gateway_support import add_squeezed_model, make_world, running_server


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    saved = dict(os.environ)
    w = make_world(tmp_path_factory.mktemp("simulate"), tmp_path_factory.getbasetemp())
    w.deploy("sim-clean", clients=())
    for name in ("sim-drift", "sim-extraction", "sim-poison"):
        w.deploy(name, clients=(), like="sim-clean", rules=True)
    w.deploy("sim-plain", clients=(), like="sim-clean")  # no fallback rules: nothing to contain into
    w.deploy("sim-evasion", clients=(), model=add_squeezed_model(w), rules=True)
    yield w
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def gw(world):  # type: ignore[no-untyped-def]
    with running_server(world.settings) as client:
        yield client


def simulate(world, gw, name: str, scenario: str, **kw):  # type: ignore[no-untyped-def]
    sim = TrafficSimulator(scenario=scenario, rate=kw.pop("rate", 500), duration=kw.pop("duration", 60),
                           **kw)
    return sim.run(world.settings, deployment=name, url=str(gw.base_url), client=gw)


def mode_of(world, name: str) -> str:  # type: ignore[no-untyped-def]
    with transaction(world.settings) as s:
        return deps.get(s, name).mode


def test_clean_traffic_opens_no_incident(world, gw):  # type: ignore[no-untyped-def]
    out = simulate(world, gw, "sim-clean", "clean", max_requests=80, batch=5)
    assert out.requests == 80 and out.stopped_by == "max_requests"
    assert out.status == {"200": 80} and out.served_by == {"model": out.rows}
    assert out.alerts == [] and out.incidents == []


def test_drift_opens_a_benign_drift_incident_that_is_not_contained(world, gw):  # type: ignore[no-untyped-def]
    out = simulate(world, gw, "sim-drift", "drift", max_requests=120, batch=5)
    assert "drift" in {a["kind"] for a in out.alerts}, out.alerts
    assert [i["classification"] for i in out.incidents] == ["benign-drift"], out.alerts
    assert out.incidents[0]["state"] == "identified"  # the policy contains attacks only
    assert mode_of(world, "sim-drift") == "active"


def test_extraction_client_is_a_suspected_attack_contained_within_one_window(world, gw):  # type: ignore[no-untyped-def]
    out = simulate(world, gw, "sim-extraction", "extraction", max_requests=30)
    kinds = {a["kind"] for a in out.alerts if a["client"] == "sim-extraction"}
    assert kinds, out.alerts
    [inc] = out.incidents
    assert inc["classification"] == "suspected-attack" and "sim-extraction" in inc["summary"]
    assert inc["state"] == "contained" and mode_of(world, "sim-extraction") == "fallback"
    # within one window: the first alert contained it, and the gateway followed at once
    assert "fallback" in out.served_by
    first = min(a["id"] for a in out.alerts)
    with transaction(world.settings) as s:
        ev = [e for e in s.query(AuditEvent).order_by(AuditEvent.seq)
              if e.action == "incident.contain" and e.subject == f"incident:{inc['id']}"]
        assert len(ev) == 1 and ev[0].payload["automatic"] and ev[0].actor == "gateway"
        keys = [e for e in s.query(AuditEvent) if e.action == "client_key.create"
                and e.subject == "deployment:sim-extraction"]
        assert keys and keys[-1].payload["client"] == "sim-extraction"
    assert first > 0


def test_evasion_traffic_is_a_suspected_attack(world, gw):  # type: ignore[no-untyped-def]
    out = simulate(world, gw, "sim-evasion", "evasion", max_requests=40, batch=4)
    # whichever watcher sees it first (the squeezing detector, the confidence CUSUM or the
    # outlier window), the signal is about evasion, and the population did not drift
    assert out.alerts and {a["threat_id"] for a in out.alerts} == {"evasion"}, out.alerts
    assert "drift" not in {a["kind"] for a in out.alerts}
    assert [i["classification"] for i in out.incidents] == ["suspected-attack"]
    assert mode_of(world, "sim-evasion") == "fallback"


def test_poisoned_feed_is_a_suspected_attack_without_input_drift(world, gw):  # type: ignore[no-untyped-def]
    out = simulate(world, gw, "sim-poison", "poisoned-feed", max_requests=15, batch=20)
    kinds = {a["kind"] for a in out.alerts}
    assert "performance-drift" in kinds and "drift" not in kinds, kinds
    assert out.served_by.get("external") == out.rows
    [inc] = out.incidents
    assert inc["classification"] == "suspected-attack"


def test_without_fallback_rules_an_attack_is_identified_but_not_contained(world, gw):  # type: ignore[no-untyped-def]
    out = simulate(world, gw, "sim-plain", "extraction", max_requests=30)
    [inc] = out.incidents
    assert inc["classification"] == "suspected-attack" and inc["state"] == "identified"
    assert mode_of(world, "sim-plain") == "active"


def test_bounds_and_bad_input(world, gw):  # type: ignore[no-untyped-def]
    out = simulate(world, gw, "sim-clean", "clean", rate=20, duration=0.5, max_requests=1000)
    assert out.stopped_by == "duration" and 5 <= out.requests <= 12
    with pytest.raises(InputError, match="loopback"):
        check_url("http://example.com:8000")
    with pytest.raises(InputError, match="unknown scenario"):
        TrafficSimulator(scenario="ddos")
    runner = CliRunner()
    res = runner.invoke(app, ["--workspace", str(world.path), "simulate", "sim-clean",
                              "--scenario", "clean", "--url", str(gw.base_url), "--rate", "200",
                              "--max-requests", "10", "--json"], env=world.env)
    assert res.exit_code == 0, res.output
    import json
    data = json.loads(res.output)
    assert data["requests"] == 10 and data["status"] == {"200": 10}
    res = runner.invoke(app, ["--workspace", str(world.path), "simulate", "nope",
                              "--scenario", "clean", "--url", str(gw.base_url)], env=world.env)
    assert res.exit_code == 2 and "unknown deployment 'nope'" in res.output
    res = runner.invoke(app, ["--workspace", str(world.path), "simulate", "sim-clean",
                              "--scenario", "ddos", "--url", str(gw.base_url)], env=world.env)
    assert res.exit_code == 2 and "unknown scenario" in res.output
