"""``riskloop incident recover`` end to end on a real loopback gateway.

An extraction-style client opens an incident that is contained into fallback; recovery
sanitizes the training data, retrains, re-assesses, gates and redeploys the new version only
when the gate says GO; closing computes the MTTR that ``riskloop kpi`` shows. A strict policy
makes the gate refuse: the new version exists but is not served, the incident stays contained.
"""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from riskloop.cli.app import app
from riskloop.monitor import deployments as deps
from riskloop.monitor.simulate import TrafficSimulator
from riskloop.store.db import transaction
from riskloop.store.models import AuditEvent, Incident

from .test_gateway_support import RELAXED_POLICY, make_world, post, running_server, wait_for

STRICT = """version: 1
name: strict
rules:
  evasion:
    required: true
    min_ars: 0.99
"""


RELAXED = RELAXED_POLICY + """  integrity:
    max_backdoor_flagged_fraction: 1.0
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    saved = dict(os.environ)
    w = make_world(tmp_path_factory.mktemp("recovery"), tmp_path_factory.getbasetemp())
    w.deploy("rec-go", clients=("alice",), rules=True)
    w.deploy("rec-nogo", clients=(), rules=True, like="rec-go")
    (w.path / "strict.yaml").write_text(STRICT)
    # the workspace policy: the gateway tests' relaxed one, with the backdoor screen off:
    # on this small clean MLP activation clustering flags ~98% of the clean training rows
    # (measured on digits@1 and on the retrained digits@2 alike), so no version could pass
    (w.path / "riskloop-policy.yaml").write_text(RELAXED)
    yield w
    os.environ.clear()
    os.environ.update(saved)


def cli(world, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--workspace", str(world.path), *args], env=world.env)


def attack(world, gw, name: str) -> int:  # type: ignore[no-untyped-def]
    out = TrafficSimulator(scenario="extraction", rate=500, duration=60, max_requests=30).run(
        world.settings, deployment=name, url=str(gw.base_url), client=gw)
    [inc] = out.incidents
    assert inc["state"] == "contained" and inc["classification"] == "suspected-attack"
    return int(inc["id"])


def test_recover_redeploys_only_when_the_gate_passes_and_mttr_reaches_kpi(world):  # type: ignore[no-untyped-def]
    with running_server(world.settings) as gw:
        go = attack(world, gw, "rec-go")
        nogo = attack(world, gw, "rec-nogo")
        # the playbook cannot skip a state: a contained incident cannot be closed
        res = cli(world, "incident", "close", str(go))
        assert res.exit_code == 2 and "can only move to recovering" in res.output

        res = cli(world, "incident", "recover", str(go), "--epochs", "15", "--json")
        assert res.exit_code == 0, res.output
        rep = json.loads(res.output)
        assert rep["method"] == "sanitize" and rep["decision"] == "GO" and rep["restored"], rep["mitigation"]
        assert rep["new_model"] == "digits@2" and rep["mode"] == "active"
        assert rep["plan"]["flagged_by"].startswith("label-issue detector")
        rows = {r["metric"]: r for r in rep["mitigation"]["rows"]}
        assert rows["clean_accuracy"]["after"] > 0.85  # validated before it is served
        assert rows["training_rows"]["after"] < rows["training_rows"]["before"]
        with transaction(world.settings) as s:
            dep = deps.get(s, "rec-go")
            assert dep.model.ref == "digits@2" and dep.mode == "active"
            assert dep.model.trained_on[0].dataset.ref == "digits-train@2"  # the sanitized data
        # the running gateway reloads the deployment with the new model and serves it
        key = world.key("rec-go", "alice")

        def served_by_new() -> bool:
            r = post(gw, "rec-go", key, world.parts["X_live"][:2])
            return r.status_code == 200 and r.json()["predictions"][0]["served_by"] == "model"
        assert wait_for(served_by_new, timeout=15)
        assert gw.app.state.runtime.get("rec-go").model == "digits@2"  # type: ignore[attr-defined]

        res = cli(world, "incident", "recover", str(nogo), "--policy", str(world.path / "strict.yaml"),
                  "--epochs", "5", "--json")
        assert res.exit_code == 0, res.output
        rep2 = json.loads(res.output)
        assert rep2["decision"] != "GO" and not rep2["restored"] and rep2["mode"] == "fallback"
        assert rep2["new_model"] == "digits@3" and rep2["failing"]
        with transaction(world.settings) as s:
            dep = deps.get(s, "rec-nogo")
            assert dep.model.ref == "digits@1" and dep.mode == "fallback"
            assert s.get(Incident, nogo).state == "contained"
        # a version that passes later is redeployed without retraining
        res = cli(world, "incident", "recover", str(nogo), "--model", "digits@1")
        assert res.exit_code == 2 and "the version the incident happened on" in res.output
        res = cli(world, "incident", "recover", str(nogo), "--model", "digits@2", "--method", "sanitize")
        assert res.exit_code == 2 and "drop --method" in res.output
        res = cli(world, "incident", "recover", str(nogo), "--model", "digits@2", "--json")
        assert res.exit_code == 0, res.output
        rep3 = json.loads(res.output)
        assert rep3["method"] == "redeploy" and rep3["decision"] == "GO" and rep3["restored"]
        with transaction(world.settings) as s:
            dep = deps.get(s, "rec-nogo")
            assert dep.model.ref == "digits@2" and dep.mode == "active"

    res = cli(world, "incident", "close", str(go), "--note", "validated: sanitized and retrained")
    assert res.exit_code == 0, res.output
    res = cli(world, "kpi", "--json")
    assert res.exit_code == 0, res.output
    mttr = next(k for k in json.loads(res.output) if k["key"] == "mttr")
    with transaction(world.settings) as s:
        inc = s.get(Incident, go)
        # MTTR: the mean over every restored incident (both of them now)
        expected = sum((i.restored_at - i.detected_at).total_seconds() / 3600
                       for i in (inc, s.get(Incident, nogo))) / 2
        assert inc.state == "closed"
        assert mttr["value"] == pytest.approx(expected) and mttr["status"] == "ok"
        # every transition is in the audit trail with its actor, in playbook order
        trail = [(e.action, e.actor) for e in s.query(AuditEvent).order_by(AuditEvent.seq)
                 if e.subject == f"incident:{go}"]
        steps = [a for a, _ in trail if a != "incident.signal"]
        assert steps == ["incident.identify", "incident.contain", "incident.recover",
                         "incident.restore", "incident.close"], trail
        assert dict(trail)["incident.contain"] == "gateway" and dict(trail)["incident.recover"] == "tester"
        actions = [t.action for t in s.get(Incident, nogo).transitions]
        assert actions[:5] == ["identify", "contain", "recover", "recover-refused", "recover"]
        assert s.get(Incident, nogo).state == "restored"
        redeploys = [e for e in s.query(AuditEvent) if e.action == "deployment.redeploy"]
        assert [e.payload["to_model"] for e in redeploys] == ["digits@2", "digits@2"]
    assert cli(world, "audit", "verify").exit_code == 0


def test_recover_refuses_bad_states_and_input(world):  # type: ignore[no-untyped-def]
    res = cli(world, "incident", "recover", "999")
    assert res.exit_code == 2 and "unknown incident 999" in res.output
    res = cli(world, "incident", "recover", "1", "--method", "prayer")
    assert res.exit_code == 2 and "unknown recovery method" in res.output
