"""`riskloop deploy`, `deployment`, `client-key`: gate checks, rules, keys, one-line errors."""

from __future__ import annotations

import json
import os

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from riskloop.cli.app import app
from riskloop.store.db import transaction
from riskloop.store.models import AuditEvent, ClientKey, Deployment

from .test_gateway_support import make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    saved = dict(os.environ)
    yield make_world(tmp_path_factory.mktemp("deploy"), tmp_path_factory.getbasetemp())
    os.environ.clear()
    os.environ.update(saved)


def cli(world, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--workspace", str(world.path), *args], env=world.env)


def refused(res, *words: str) -> str:  # type: ignore[no-untyped-def]
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert line.startswith("error: ") and "\n" not in line and "Traceback" not in line, line
    for w in words:
        assert w in line, (w, line)
    return line


def count(world, cls) -> int:  # type: ignore[no-untyped-def]
    with transaction(world.settings) as s:
        return int(s.execute(select(func.count()).select_from(cls)).scalar_one())


def test_the_gate_decides_whether_a_model_may_be_deployed_active(world, tmp_path):  # type: ignore[no-untyped-def]
    strict = tmp_path / "strict.yaml"
    strict.write_text("version: 1\nname: strict\n")  # the defaults: evasion and scan required
    events = count(world, AuditEvent)
    line = refused(cli(world, "deploy", "digits@1", "--name", "d0", "--holdout", "digits-holdout@1",
                       "--policy", str(strict)), "NO-GO", "riskloop gate digits@1", "--mode shadow")
    assert "evasion" in line
    assert count(world, Deployment) == 0 and count(world, AuditEvent) == events  # nothing written
    # shadow does not serve the model's answers, so it needs no GO, only rules
    refused(cli(world, "deploy", "digits@1", "--name", "d0", "--mode", "shadow",
                "--policy", str(strict)), "--fallback")
    res = cli(world, "deploy", "digits@1", "--name", "d0", "--mode", "shadow", "--policy", str(strict),
              "--holdout", "digits-holdout@1", "--fallback", str(world.path / "rules.yaml"), "--json")
    assert res.exit_code == 0, res.output
    # and it may not be switched to active while the gate says NO-GO
    refused(cli(world, "deployment", "mode", "d0", "active", "--policy", str(strict)), "NO-GO")
    # the workspace policy (evasion and scan not required) says GO
    res = cli(world, "deployment", "mode", "d0", "active")
    assert res.exit_code == 0 and "now in mode active" in res.output


def test_deploy_freezes_references_and_calibrated_watchdogs(world):  # type: ignore[no-untyped-def]
    res = cli(world, "deploy", "digits@1", "--name", "d1", "--holdout", "digits-holdout@1", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["mode"] == "active" and out["model"] == "digits@1"
    assert out["reference"]["dataset"] == "digits-train@1" and out["holdout"]["rows"] == 400
    assert out["gate"]["decision"] == "GO"
    dogs = out["watchdogs"]
    assert {"input-outlier", "confidence-spike", "query-pattern"} <= set(dogs)
    for cal in dogs.values():
        # each watchdog's measured false-positive rate on clean held-out traffic is stored
        assert 0.0 <= cal["fpr"] <= 0.1 and cal["target_fpr"] == pytest.approx(0.05 / 4)
    with transaction(world.settings) as s:
        dep = s.execute(select(Deployment).where(Deployment.name == "d1")).scalar_one()
        cfg = dep.config
        assert len(cfg["reference"]["profile"]["columns"]) == 64  # one per input feature
        assert 0.8 < cfg["outcomes"]["accuracy"] <= 1.0
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "deployment.create",
                                                AuditEvent.subject == "deployment:d1")).scalar_one()
        assert ev.payload["gate"]["decision"] == "GO"
    refused(cli(world, "deploy", "digits@1", "--name", "d1"), "already exists")
    # --like copies the calibration of the same model version
    res = cli(world, "deploy", "digits@1", "--name", "d1b", "--like", "d1", "--json")
    assert res.exit_code == 0 and json.loads(res.output)["watchdogs"] == dogs
    refused(cli(world, "deploy", "digits@1", "--name", "d1c", "--like", "d1", "--window", "100"), "--like")
    listing = cli(world, "deployment", "list", "--json")
    assert {d["name"] for d in json.loads(listing.output)} >= {"d1", "d1b"}
    show = cli(world, "deployment", "show", "d1")
    assert show.exit_code == 0 and "watchdog query-pattern" in show.output


def test_without_a_holdout_the_reference_is_split_and_a_warning_is_kept(world):  # type: ignore[no-untyped-def]
    res = cli(world, "deploy", "digits@1", "--name", "d2", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert "held-out split" in out["holdout"]["dataset"] and out["holdout"]["rows"] == 225
    assert any("no --holdout" in w for w in out["warnings"])


@pytest.mark.parametrize("rules, words", [
    ("version: 1\ndefault: a\nrules:\n  - when: 'x99 > 1'\n    answer: b\n", ["x99", "not an input"]),
    ("version: 1\ndefault: a\nrules:\n  - when: 'x3 >> 1'\n    answer: b\n", [":4:", "cannot read condition"]),
    ("version: 1\nrules: []\n", [":1:", "default"]),
    ("version: 1\ndefault: a\nrules:\n  - when: [{feature: x1, op: '<', value: nan}]\n    answer: b\n",
     [":4:", "finite number"]),
    ("version: 1\ndefault: a\nrule: []\n", [":3:", "unknown key"]),
    ("version: 1\ndefault: [a\n", ["not valid YAML"]),
])
def test_bad_fallback_rules_are_one_line_errors_with_file_and_line(world, tmp_path, rules, words):  # type: ignore[no-untyped-def]
    path = tmp_path / "rules.yaml"
    path.write_text(rules)
    refused(cli(world, "deploy", "digits@1", "--name", "bad-rules", "--mode", "fallback",
                "--fallback", str(path)), str(path), *words)
    assert count(world, Deployment) == len(json.loads(cli(world, "deployment", "list", "--json").output))


def test_modes_and_rules_can_change(world, tmp_path):  # type: ignore[no-untyped-def]
    assert cli(world, "deploy", "digits@1", "--name", "d3", "--like", "d1").exit_code == 0
    refused(cli(world, "deployment", "mode", "d3", "sideways"), "unknown mode", "active, shadow, fallback, off")
    refused(cli(world, "deployment", "mode", "d3", "fallback"), "no fallback rules", "deployment rules d3")
    refused(cli(world, "deployment", "mode", "nowhere", "off"), "unknown deployment 'nowhere'")
    refused(cli(world, "deployment", "mode", "d3", "active"), "already in mode active")
    res = cli(world, "deployment", "rules", "d3", str(world.path / "rules.yaml"))
    assert res.exit_code == 0, res.output
    for mode in ("shadow", "fallback", "off", "active"):
        res = cli(world, "deployment", "mode", "d3", mode, "--reason", "drill")
        assert res.exit_code == 0, res.output
    with transaction(world.settings) as s:
        moves = [e.payload for e in s.execute(
            select(AuditEvent).where(AuditEvent.action == "deployment.mode",
                                     AuditEvent.subject == "deployment:d3").order_by(AuditEvent.seq)).scalars()]
    assert [(m["from"], m["to"]) for m in moves] == [
        ("active", "shadow"), ("shadow", "fallback"), ("fallback", "off"), ("off", "active")]
    assert all(m["reason"] == "drill" for m in moves)


def test_client_keys_are_shown_once_and_stored_hashed(world):  # type: ignore[no-untyped-def]
    assert cli(world, "deploy", "digits@1", "--name", "d4", "--like", "d1").exit_code == 0
    res = cli(world, "client-key", "create", "d4", "--client", "alice", "--json")
    assert res.exit_code == 0
    key = json.loads(res.output)["key"]
    assert key.startswith("rk_") and len(key) > 40
    listing = cli(world, "client-key", "list", "d4")
    assert key not in listing.output and key[:10] in listing.output and "alice" in listing.output
    with transaction(world.settings) as s:
        rec = s.execute(select(ClientKey).where(ClientKey.client == "alice")).scalars().all()[-1]
        assert rec.key_hash != key and key not in json.dumps([e.payload for e in s.execute(
            select(AuditEvent)).scalars()])
    refused(cli(world, "client-key", "create", "d4", "--client", "bad name!"), "bad name")
    refused(cli(world, "client-key", "create", "nowhere", "--client", "bob"), "unknown deployment")
    assert cli(world, "client-key", "revoke", str(rec.id)).exit_code == 0
    refused(cli(world, "client-key", "revoke", str(rec.id)), "already revoked")
    refused(cli(world, "client-key", "revoke", "9999"), "unknown client key")
    refused(cli(world, "serve", "--port", "70000"), "--port")
    verify = cli(world, "audit", "verify")
    assert verify.exit_code == 0, verify.output


def test_the_policy_sets_the_review_threshold_and_the_watchdogs_budget():
    from riskloop.govern import policy
    from riskloop.monitor.watchset import policy_thresholds

    pol = policy.parse("version: 1\nmonitoring:\n  review_confidence: 0.9\n  max_defence_fpr: 0.02\n")
    got = policy_thresholds(pol.resolve(tier="minimal", domain="general"))
    assert got["review_below"] == 0.9 and got["max_defence_fpr"] == 0.02
    assert policy_thresholds(policy.load(None).resolve(tier="high", domain="finance"))["review_below"] == 0.6


def test_deployments_are_compliance_evidence(world):  # type: ignore[no-untyped-def]
    from riskloop.govern.hooks import runtime_evidence
    from riskloop.inventory.refs import resolve_model

    assert cli(world, "deploy", "digits@1", "--name", "d5", "--like", "d1").exit_code == 0
    assert cli(world, "deployment", "rules", "d5", str(world.path / "rules.yaml")).exit_code == 0
    with transaction(world.settings) as s:
        found = runtime_evidence(s, resolve_model(s, "digits@1"))
    assert "deployment d5 (active)" in found["monitoring"] and "watchdogs calibrated" in found["monitoring"]
    assert "deployment d5: fallback rules" in found["fallback"]
    assert "d1/query-pattern" in found["defence_fpr"]
