"""Incidents: classification, the playbook state machine, auto-containment, deadlines, MTTR."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from riskloop.errors import ConflictError
from riskloop.inventory import assets
from riskloop.monitor import incidents
from riskloop.monitor.incident_report import render_markdown
from riskloop.store.db import transaction
from riskloop.store.models import Alert, AuditEvent, Deployment
from tests.helpers import write_model_folder


@pytest.mark.parametrize(
    ("kinds", "clients", "expected"),
    [
        (["near-duplicate-queries"], ["c1"], "suspected-attack"),
        (["boundary-probing"], ["c1"], "suspected-attack"),
        (["input-space-sweep", "drift"], ["c1", None], "suspected-attack"),
        (["extraction-budget", "drift"], ["c1", None], "suspected-attack"),
        (["adversarial-input"], [None], "suspected-attack"),
        (["low-confidence-spike"], [None], "suspected-attack"),
        (["performance-drift"], [None], "suspected-attack"),
        (["drift"], [None], "benign-drift"),
        (["drift", "low-confidence-spike", "prediction-drift"], [None] * 3, "benign-drift"),
    ],
)
def test_classify(kinds, clients, expected):
    assert incidents.classify(kinds, clients=clients)[0] == expected


def test_the_reason_names_only_the_clients_whose_queries_looked_like_an_attack():
    _, reason = incidents.classify(["near-duplicate-queries", "input-outliers", "input-outliers"],
                                   clients=["mallory", "alice", None])
    assert "mallory" in reason and "alice" not in reason


def _deployment(s, tmp_path, *, domain="finance", name="dep"):
    mv = assets.register_model(s, path=write_model_folder(tmp_path / name), name=name,
                               framework="torch", domain=domain, actor="t")
    dep = Deployment(name=name, model_id=mv.id, mode="active", config={}, created_by="t")
    s.add(dep)
    s.flush()
    return dep


def _alert(s, dep, kind, *, client=None, severity="high"):
    a = Alert(deployment_id=dep.id, kind=kind, client=client, severity=severity, details={},
              threat_id=None)
    s.add(a)
    s.flush()
    return a


def test_attack_opens_incident_and_auto_contains(ready, tmp_path):
    with transaction(ready.settings) as s:
        dep = _deployment(s, tmp_path)
        inc = incidents.ingest_alerts(s, deployment=dep, actor="gateway",
                                      alerts=[_alert(s, dep, "near-duplicate-queries", client="c9")])
        assert inc.classification == "suspected-attack" and inc.state == "contained"
        assert dep.mode == "fallback" and inc.previous_mode == "active"
        assert inc.report_deadline is not None and "Art. 73(2)" in inc.report_basis
        # A later drift alert joins the same incident and never downgrades it.
        again = incidents.ingest_alerts(s, deployment=dep, actor="gateway",
                                        alerts=[_alert(s, dep, "drift", severity="medium")])
        assert again.id == inc.id and again.classification == "suspected-attack"
        actions = [e.action for e in s.query(AuditEvent).order_by(AuditEvent.seq)]
        assert "incident.identify" in actions and "incident.contain" in actions
        assert "incident.signal" in actions


def test_benign_drift_is_not_auto_contained_and_cannot_skip(ready, tmp_path):
    with transaction(ready.settings) as s:
        dep = _deployment(s, tmp_path, domain="general")
        inc = incidents.ingest_alerts(s, deployment=dep, actor="gateway",
                                      alerts=[_alert(s, dep, "drift", severity="medium")])
        assert inc.classification == "benign-drift" and inc.state == "identified"
        assert inc.report_deadline is None  # minimal tier
        with pytest.raises(ConflictError, match="does not skip"):
            incidents.close(s, inc, actor="officer")
        with pytest.raises(ConflictError):
            incidents.begin_recovery(s, inc, actor="officer", plan={})


def test_full_playbook_and_mttr(ready, tmp_path):
    with transaction(ready.settings) as s:
        dep = _deployment(s, tmp_path, domain="critical-infrastructure")
        inc = incidents.ingest_alerts(
            s, deployment=dep, actor="gateway",
            alerts=[_alert(s, dep, "adversarial-input")],
            policy=incidents.IncidentPolicy(auto_contain=False),
        )
        assert inc.state == "identified" and "Art. 73(3)" in inc.report_basis
        incidents.contain(s, inc, actor="officer", mode="shadow")
        assert dep.mode == "shadow"
        incidents.begin_recovery(s, inc, actor="officer", plan={"steps": ["retrain"]})
        incidents.finish_recovery(s, inc, actor="officer", outcome={"gate": "NO-GO"},
                                  restored=False)
        assert inc.state == "contained"
        incidents.begin_recovery(s, inc, actor="officer", plan={"steps": ["retrain"]})
        inc.detected_at = datetime.now(UTC) - timedelta(hours=2)
        incidents.finish_recovery(s, inc, actor="officer", outcome={"gate": "GO"}, restored=True,
                                  new_model_id=dep.model_id)
        incidents.close(s, inc, actor="officer", note="validated")
        assert inc.state == "closed"
        ttr = incidents.time_to_restore(inc)
        assert 7100 < ttr < 7300
        m = incidents.mttr(s)
        assert m["incidents"] == 1 and abs(m["mttr_seconds"] - ttr) < 1
        d = incidents.incident_dict(inc)
        assert [t["to"] for t in d["transitions"]] == [
            "identified", "contained", "recovering", "contained", "recovering", "restored",
            "closed"]
        assert all(t["actor"] for t in d["transitions"])
        md = render_markdown(d, model=assets.model_dict(inc.model))
        assert "within 2 days" in md and "[TO BE COMPLETED]" in md and "recover-refused" in md


def test_mttr_without_incidents_is_no_data(ready):
    with transaction(ready.settings) as s:
        assert incidents.mttr(s) == {"mttr_seconds": None, "incidents": 0}


def test_incident_cli_and_mttr_kpi(ready, tmp_path):
    import json

    with transaction(ready.settings) as s:
        dep = _deployment(s, tmp_path)
        inc = incidents.ingest_alerts(s, deployment=dep, actor="gateway",
                                      alerts=[_alert(s, dep, "drift", severity="high")])
        iid = inc.id
    rows = json.loads(ready.invoke("incident", "list", "--json").output)
    assert [r["id"] for r in rows] == [iid] and rows[0]["state"] == "identified"
    skip = ready.run("incident", "close", str(iid))
    assert skip.returncode == 2 and "does not skip" in skip.stderr
    res = ready.invoke("incident", "contain", str(iid), "--mode", "shadow", "--json")
    assert json.loads(res.output)["mode"] == "shadow"
    bad = ready.run("incident", "contain", "999")
    assert bad.returncode == 2 and "unknown incident 999" in bad.stderr
    with transaction(ready.settings) as s:
        inc = incidents.get_incident(s, iid)
        incidents.begin_recovery(s, inc, actor="officer", plan={})
        incidents.finish_recovery(s, inc, actor="officer", outcome={}, restored=True)
    assert ready.invoke("incident", "close", str(iid), "--note", "ok").exit_code == 0
    kpis = {k["key"]: k for k in json.loads(ready.invoke("kpi", "--json").output)}
    assert kpis["mttr"]["value"] is not None and kpis["mttr"]["status"] == "ok"
    md = ready.invoke("incident", "report", str(iid)).output
    assert f"# Incident {iid}" in md and "Timeline" in md
    events = json.loads(ready.invoke("audit", "--json", "--limit", "0").output)
    steps = [e for e in events if e["action"].startswith("incident.")]
    assert {e["action"] for e in steps} >= {"incident.identify", "incident.contain",
                                             "incident.recover", "incident.restore",
                                             "incident.close"}
    assert all(e["actor"] for e in steps)


def test_every_client_watchdog_kind_counts_as_an_attack_signal():
    from riskloop.monitor.query_watch import _KIND

    assert set(_KIND.values()) <= incidents.CLIENT_ATTACK_KINDS
