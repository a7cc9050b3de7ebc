"""The gate, approvals and promotion against a real store: every outcome and exit code, stale
evidence, missing approval, promotion refusal, the CI formats."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import select

from riskloop import Finding
from riskloop.govern import approvals, policy
from riskloop.store.audit import HEAD_FILE, verify_chain
from riskloop.store.db import transaction
from riskloop.store.models import (
    Approval,
    AssessmentRun,
    AuditEvent,
    GateDecision,
    ModelVersion,
    StageChange,
)
from tests.test_govern_support import GOOD, add_run, register


def _setup(ws, *, domain="general", suites=("evasion", "supply-chain"), metrics=None, name="m",
           payload=b"w1"):
    with transaction(ws.settings) as s:
        mv = register(s, ws.path.parent, name=name, domain=domain, payload=payload)
        for suite in suites:
            add_run(s, mv, suite, (metrics or {}).get(suite, GOOD[suite]))
        return mv.ref


def _gate(ws, ref, *args):
    res = ws.invoke("gate", ref, "--format", "json", *args)
    return res, json.loads(res.stdout)


def _rule(out, rid):
    return next(r for r in out["rules"] if r["id"] == rid)


def test_go_exit_0_and_decision_recorded(ready):
    ref = _setup(ready)
    res, out = _gate(ready, ref)
    assert res.exit_code == 0 and out["decision"] == "GO" and out["exit_code"] == 0
    row = _rule(out, "evasion.ars")
    assert row["status"] == "pass" and row["value"] == 0.9
    with transaction(ready.settings) as s:
        assert s.get(AssessmentRun, row["run_id"]).suite == "evasion"
        d = s.execute(select(GateDecision)).scalar_one()
        assert d.decision == "GO" and d.policy.name == "default"
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "gate.decide")).scalar_one()
        assert ev.payload["decision_id"] == d.id


def test_no_go_exit_1_below_the_robustness_score(ready):
    ref = _setup(ready, metrics={"evasion": {"ars": 0.5, "eps": 0.1}})
    res, out = _gate(ready, ref)
    assert res.exit_code == 1 and out["decision"] == "NO-GO"
    row = _rule(out, "evasion.ars")
    assert row["status"] == "fail" and row["value"] == 0.5 and row["threshold"] == ">= 0.85"
    table = ready.invoke("gate", ref)
    assert table.exit_code == 1 and "NO-GO" in table.output


def test_needs_approval_exit_3_for_high_risk_then_go_after_sign_off(ready):
    with transaction(ready.settings) as s:
        mv = register(s, ready.path.parent, domain="finance")  # tier high
        for suite in ("evasion", "supply-chain", "privacy"):
            add_run(s, mv, suite, GOOD[suite])
        ref = mv.ref
    res, out = _gate(ready, ref)
    assert res.exit_code == 1, "high tier requires a signature too"
    assert _rule(out, "signature.valid")["status"] == "fail"
    with transaction(ready.settings) as s:  # a valid signature over the registered digest
        mv = s.execute(select(ModelVersion)).scalar_one()
        from riskloop.inventory import signing

        key, _ = signing.keygen(ready.path / "k.pem")
        signing.sign_model(s, ready.settings, mv, key_path=key)
    res, out = _gate(ready, ref)
    assert res.exit_code == 3 and out["decision"] == "NEEDS-APPROVAL"
    assert _rule(out, "approval.sign-off")["status"] == "pending"

    # The registrant cannot approve (separation of duties); nothing is written.
    ready.env["RISKLOOP_ACTOR"] = "alice"
    refused = ready.invoke("approve", ref, "--reason", "looked fine")
    assert refused.exit_code == 2 and "separation of duties" in refused.stderr
    with transaction(ready.settings) as s:
        assert s.execute(select(Approval)).first() is None

    ready.env["RISKLOOP_ACTOR"] = "risk-officer"
    ok = ready.invoke("approve", ref, "--reason", "reviewed the red-team report", "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["gate_now"] == "GO"
    res, out = _gate(ready, ref)
    assert res.exit_code == 0 and out["approval_id"] == 1
    assert _rule(out, "approval.sign-off")["status"] == "approved"

    # A sign-off can be withdrawn: it stays on record, no longer counts, and is audited.
    bad = ready.invoke("approve", ref, "--revoke", "99", "--reason", "mistake")
    assert bad.exit_code == 2 and "approval #99 is not one of" in bad.stderr
    gone = ready.invoke("approve", ref, "--revoke", "1", "--reason", "new red-team findings", "--json")
    assert gone.exit_code == 0, gone.output
    assert json.loads(gone.stdout)["gate_now"] == "NEEDS-APPROVAL"
    twice = ready.invoke("approve", ref, "--revoke", "1", "--reason", "again")
    assert twice.exit_code == 2 and "already revoked" in twice.stderr
    res, out = _gate(ready, ref)
    assert res.exit_code == 3 and "approval #1 was revoked by risk-officer" in out["notes"]
    with transaction(ready.settings) as s:
        assert s.get(Approval, 1).revoke_reason == "new red-team findings"
        assert s.query(AuditEvent).filter_by(action="model.approval-revoke").count() == 1


def test_stale_and_untrustworthy_evidence_does_not_count(ready):
    with transaction(ready.settings) as s:
        mv = register(s, ready.path.parent)
        add_run(s, mv, "supply-chain", GOOD["supply-chain"])
        add_run(s, mv, "evasion", GOOD["evasion"], digest="0" * 64)  # another digest
        add_run(s, mv, "evasion", GOOD["evasion"], age_days=120)  # older than 90 days
        add_run(s, mv, "evasion", GOOD["evasion"], trustworthy=False,
                warnings=["gradient masking suspected"])
        ref = mv.ref
    res, out = _gate(ready, ref)
    assert res.exit_code == 1
    row = _rule(out, "evasion.ars")
    assert row["status"] == "missing"
    assert "untrustworthy (gradient masking suspected)" in row["detail"]
    assert "120 days old" in row["detail"] and "stale: it measured digest 000000000000" in row["detail"]
    # A fresh run counts again.
    with transaction(ready.settings) as s:
        fresh = add_run(s, s.execute(select(ModelVersion)).scalar_one(), "evasion", GOOD["evasion"]).id
    res, out = _gate(ready, ref)
    assert res.exit_code == 0 and _rule(out, "evasion.ars")["run_id"] == fresh


def test_policy_age_and_on_missing(ready, tmp_path):
    with transaction(ready.settings) as s:
        mv = register(s, ready.path.parent)
        add_run(s, mv, "supply-chain", GOOD["supply-chain"])
        add_run(s, mv, "evasion", GOOD["evasion"], age_days=20)
        ref = mv.ref
    strict = tmp_path / "strict.yaml"
    strict.write_text("evidence:\n  max_age_days: 10\n  on_missing: needs-approval\n")
    res, out = _gate(ready, ref, "--policy", str(strict))
    assert res.exit_code == 3 and _rule(out, "evasion.ars")["status"] == "missing"
    assert _gate(ready, ref)[0].exit_code == 0


def test_missing_required_evidence_is_no_go(ready):
    ref = _setup(ready, suites=("supply-chain",))
    res, out = _gate(ready, ref)
    assert res.exit_code == 1 and _rule(out, "evasion.ars")["status"] == "missing"
    assert "no evasion run recorded" in _rule(out, "evasion.ars")["detail"]


def test_supply_chain_verdicts(ready):
    ref = _setup(ready, metrics={"supply-chain": {"files": 1, "critical": 0, "needs_trust": 1,
                                                  "verdict": "needs-trust"}})
    res, out = _gate(ready, ref)
    assert res.exit_code == 1 and _rule(out, "supply-chain.verdict")["status"] == "fail"
    with transaction(ready.settings) as s:
        s.execute(select(ModelVersion)).scalar_one().trusted = True
    assert _gate(ready, ref)[0].exit_code == 0
    with transaction(ready.settings) as s:
        add_run(s, s.execute(select(ModelVersion)).scalar_one(), "supply-chain",
                {"files": 1, "critical": 2, "needs_trust": 0, "verdict": "malicious"},
                findings=[Finding("supply-chain", "critical", "os.system in pickle")])
    res, out = _gate(ready, ref)
    assert res.exit_code == 1
    assert _rule(out, "supply-chain.critical")["value"] == 2
    assert out["risk"]["score"] > 0


def test_junit_and_sarif_formats(ready, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("rules:\n  evasion:\n    min_ars: 0.95\n")
    ref = _setup(ready)
    junit = ready.invoke("gate", ref, "--policy", str(f), "--format", "junit",
                         "--output", str(tmp_path / "gate.xml"))
    assert junit.exit_code == 1
    root = ET.fromstring((tmp_path / "gate.xml").read_text())
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["evasion.ars: Adversarial Robustness Score"]
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["decision"] == "NO-GO"
    sarif = ready.invoke("gate", ref, "--policy", str(f), "--format", "sarif")
    assert sarif.exit_code == 1
    doc = json.loads(sarif.stdout)
    assert doc["version"] == "2.1.0"
    run = doc["runs"][0]
    assert run["properties"]["decision"] == "NO-GO"
    errors = [r for r in run["results"] if r["level"] == "error"]
    assert [r["ruleId"] for r in errors] == ["evasion.ars"]
    loc = errors[0]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"].endswith("p.yaml") and loc["region"]["startLine"] == 3
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} >= {r["ruleId"] for r in run["results"]}
    bad = ready.invoke("gate", ref, "--format", "xml")
    assert bad.exit_code == 2 and "choose table, json, junit or sarif" in bad.stderr


def test_promotion_refused_without_go_and_allowed_with_it(ready):
    ref = _setup(ready, metrics={"evasion": {"ars": 0.7, "eps": 0.1}})
    res = ready.invoke("promote", ref, "--to", "production")
    assert res.exit_code == 2 and "cannot go to production: the gate says NO-GO (evasion.ars)" in res.stderr
    with transaction(ready.settings) as s:
        mv = s.execute(select(ModelVersion)).scalar_one()
        assert mv.stage == "registered"
        refusal = s.execute(select(AuditEvent).where(AuditEvent.action == "model.promote.refused")).scalar_one()
        assert refusal.payload["decision"] == "NO-GO"  # the refused attempt stays on record
        assert s.execute(select(StageChange)).first() is None
    # A sign-off cannot override a NO-GO, and risk acceptance is off by default.
    ready.env["RISKLOOP_ACTOR"] = "risk-officer"
    no = ready.invoke("approve", ref, "--reason", "ship it")
    assert no.exit_code == 2 and "a sign-off cannot override it" in no.stderr
    no = ready.invoke("approve", ref, "--reason", "ship it", "--accept-risk")
    assert no.exit_code == 2 and "does not allow risk acceptance" in no.stderr
    assert ready.invoke("promote", ref, "--to", "staging").exit_code == 0

    # A better model version goes to production; a later one supersedes it.
    ref2 = _setup(ready, payload=b"w2")
    ok = ready.invoke("promote", ref2, "--to", "production", "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["gate"] == "GO"
    ref3 = _setup(ready, payload=b"w3")
    assert ready.invoke("promote", ref3, "--to", "production").exit_code == 0
    with transaction(ready.settings) as s:
        stages = {m.ref: m.stage for m in s.execute(select(ModelVersion)).scalars()}
        assert stages == {"m@1": "staging", "m@2": "superseded", "m@3": "production"}
        report = verify_chain(s, head_file=ready.settings.state_dir / HEAD_FILE)
        assert report.ok, report.problem
    again = ready.invoke("promote", ref3, "--to", "production")
    assert again.exit_code == 2 and "already in stage" in again.stderr
    unknown = ready.invoke("promote", ref3, "--to", "moon")
    assert unknown.exit_code == 2 and "unknown stage" in unknown.stderr


def test_risk_acceptance_when_the_policy_allows_it(ready, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("approval:\n  allow_risk_acceptance: true\n")
    ref = _setup(ready, metrics={"evasion": {"ars": 0.8, "eps": 0.1}})
    ready.env["RISKLOOP_ACTOR"] = "ciso"
    res = ready.invoke("approve", ref, "--reason", "compensating input filter", "--accept-risk",
                       "--policy", str(f), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["kind"] == "risk-acceptance" and out["accepted_rules"] == ["evasion.ars"]
    res, gate = _gate(ready, ref, "--policy", str(f))
    assert res.exit_code == 0 and _rule(gate, "evasion.ars")["status"] == "accepted"
    # A newly failing rule is not covered by the earlier acceptance.
    with transaction(ready.settings) as s:
        add_run(s, s.execute(select(ModelVersion)).scalar_one(), "privacy",
                {"membership_advantage": 0.4, "tpr_at_1pct_fpr": 0.3})
    res, gate = _gate(ready, ref, "--policy", str(f))
    assert res.exit_code == 1 and _rule(gate, "privacy.membership-advantage")["status"] == "fail"
    # Under the default policy (no risk acceptance) the acceptance does not count.
    assert _gate(ready, ref)[0].exit_code == 1


def test_approval_expires_and_is_bound_to_the_digest(ready_sqlite):
    from datetime import UTC, datetime, timedelta

    ws = ready_sqlite
    with transaction(ws.settings) as s:
        mv = register(s, ws.path.parent, domain="employment")  # high tier
        for suite in ("evasion", "supply-chain", "privacy"):
            add_run(s, mv, suite, GOOD[suite])
        add_run(s, mv, "fairness", {"demographic_parity_difference": 0.02,
                                    "equalized_odds_difference": 0.03})
        mv.signature_status = "signed"
    pol = policy.parse("approval:\n  max_age_days: 10\n")
    with transaction(ws.settings) as s:
        mv = s.execute(select(ModelVersion)).scalar_one()
        from riskloop.store.models import Signature

        s.add(Signature(model_id=mv.id, signature_path="x", public_key_pem="k", key_fingerprint="f",
                        digest=mv.digest, signed_by="alice"))
        s.flush()
        assert approvals.evaluate(s, mv, pol).decision == "NEEDS-APPROVAL"
        appr, after = approvals.approve(s, actor="bob", mv=mv, policy=pol, reason="ok")
        assert after.decision == "GO"
        assert approvals.evaluate(s, mv, pol, now=datetime.now(UTC) + timedelta(days=9)).decision == "GO"
        later = datetime.now(UTC) + timedelta(days=11)  # evidence still young (30 days, high tier)
        result = approvals.evaluate(s, mv, pol, now=later)
        assert result.decision == "NEEDS-APPROVAL"
        assert any("older than 10 days" in n for n in result.notes)
        # At 31 days the evidence itself is stale for the high tier: NO-GO.
        assert approvals.evaluate(s, mv, pol, now=datetime.now(UTC) + timedelta(days=31)).decision == "NO-GO"
        appr.model_digest = "f" * 64
        s.flush()
        result = approvals.evaluate(s, mv, pol)
        assert result.decision == "NEEDS-APPROVAL" and any("another digest" in n for n in result.notes)


def test_unknown_model_and_empty_reason(ready):
    res = ready.invoke("gate", "nope@1")
    assert res.exit_code == 2 and "unknown model 'nope@1'" in res.stderr
    ref = _setup(ready)
    ready.env["RISKLOOP_ACTOR"] = "bob"
    res = ready.invoke("approve", ref, "--reason", "  ")
    assert res.exit_code == 2 and "--reason is empty" in res.stderr


def test_gate_exit_codes_from_a_real_process(ready_sqlite):
    """CI runs the command as a process: the exit code is the decision."""
    ref = _setup(ready_sqlite, metrics={"evasion": {"ars": 0.5, "eps": 0.1}})
    proc = ready_sqlite.run("gate", ref, "--format", "junit")
    assert proc.returncode == 1, proc.stderr
    assert ET.fromstring(proc.stdout).find("testsuite").get("failures") == "1"


@pytest.mark.parametrize("eps,code", [(None, 0), (0.05, 0), (0.15, 1), (0.5, 1)])
def test_policy_epsilon_reads_the_curve(ready_sqlite, tmp_path, eps, code):
    f = tmp_path / "p.yaml"
    f.write_text(f"rules:\n  evasion:\n    eps: {'null' if eps is None else eps}\n")
    ref = _setup(ready_sqlite)
    res, out = _gate(ready_sqlite, ref, "--policy", str(f))
    assert res.exit_code == code
    if eps == 0.5:
        assert _rule(out, "evasion.ars")["status"] == "missing"
        assert "measured up to eps 0.2" in _rule(out, "evasion.ars")["detail"]
