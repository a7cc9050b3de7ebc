"""Compliance evidence per model, the Model Compliance Rate and the KPIs of paper Table 4."""

from __future__ import annotations

import json

from sqlalchemy import select

from riskloop.govern import compliance, hooks, kpi, policy
from riskloop.inventory import assets
from riskloop.store.db import transaction
from riskloop.store.models import ModelVersion
from tests.helpers import write_npz
from tests.test_govern_support import GOOD, add_run, register


def _items(out):
    return {(i["framework"], i["id"]): i for i in out["items"]}


def test_compliance_map_follows_the_evidence(ready):
    ws = ready
    with transaction(ws.settings) as s:
        ds = assets.register_dataset(s, path=write_npz(ws.path / "train.npz"), name="train",
                                     actor="alice")
        mv = register(s, ws.path.parent, owner="team-a", intended_use="read digits",
                      trained_on=[ds.ref])
        ref = mv.ref
    before = _items(json.loads(ws.invoke("compliance", ref, "--json").stdout))
    # (registration may already have scanned the files: MEASURE 2.7 is then partial)
    assert before[("NIST AI RMF 1.0", "MEASURE 2.7")]["status"] in ("missing", "partial")
    assert before[("NIST AI RMF 1.0", "MEASURE 2.3")]["status"] in ("missing", "partial")
    assert before[("NIST AI RMF 1.0", "MANAGE 1.1")]["status"] == "missing"
    assert before[("EU AI Act Art. 15(5)", "adversarial examples or model evasion")]["status"] == "missing"
    assert before[("ISO/IEC 42001 Annex A", "A.7.5")]["status"] == "evidenced"
    assert "train@1" in before[("ISO/IEC 42001 Annex A", "A.7.5")]["evidence"]
    assert before[("EU AI Act Annex IV", "8")]["status"] == "human"
    assert before[("NIST AI RMF 1.0", "MEASURE 2.4")]["status"] == "missing"

    with transaction(ws.settings) as s:
        mv = s.execute(select(ModelVersion)).scalar_one()
        add_run(s, mv, "evasion", GOOD["evasion"])
        add_run(s, mv, "supply-chain", GOOD["supply-chain"])
    assert ws.invoke("gate", ref).exit_code == 0
    assert ws.invoke("promote", ref, "--to", "staging").exit_code == 0
    res = ws.invoke("compliance", ref, "--json")
    out = json.loads(res.stdout)
    after = _items(out)
    assert after[("NIST AI RMF 1.0", "MEASURE 2.7")]["status"] == "evidenced"
    assert "evasion run #" in after[("NIST AI RMF 1.0", "MEASURE 2.7")]["evidence"]
    assert after[("NIST AI RMF 1.0", "MANAGE 1.1")]["status"] == "evidenced"
    assert after[("NIST AI RMF 1.0", "MANAGE 2.4")]["status"] == "evidenced"
    assert after[("EU AI Act Art. 15(5)", "adversarial examples or model evasion")]["status"] == "evidenced"
    assert after[("EU AI Act Art. 15(5)", "confidentiality attacks")]["status"] == "missing"
    assert out["red_team_passed"] is True and out["privacy_audit_passed"] is False
    assert out["summary"]["NIST AI RMF 1.0"]["evidenced"] > 0
    table = ws.invoke("compliance", ref)
    assert table.exit_code == 0 and "MEASURE 2.7" in table.output


def test_runtime_evidence_plugs_in(ready_sqlite, monkeypatch):
    ws = ready_sqlite
    with transaction(ws.settings) as s:
        ref = register(s, ws.path.parent).ref
    monkeypatch.setitem(hooks._EVIDENCE, "monitoring", lambda session, mv: f"drift watch on {mv.ref}")
    out = _items(json.loads(ws.invoke("compliance", ref, "--json").stdout))
    assert out[("NIST AI RMF 1.0", "MEASURE 2.4")]["status"] == "evidenced"
    assert out[("NIST AI RMF 1.0", "MEASURE 2.4")]["evidence"] == "drift watch on m@1"


def test_kpis_say_no_data_until_something_is_measured(ready):
    res = ready.invoke("kpi", "--json")
    assert res.exit_code == 0
    values = {v["key"]: v for v in json.loads(res.stdout)}
    assert list(values) == ["ars", "drift_magnitude", "mttr", "defence_fpr", "model_compliance_rate"]
    assert all(v["value"] is None and v["status"] == "no data" for v in values.values())
    assert values["mttr"]["threshold"] == "<= 48"
    table = ready.invoke("kpi")
    assert table.exit_code == 0 and "no data" in table.output


def test_ars_per_model_and_model_compliance_rate(ready):
    ws = ready
    with transaction(ws.settings) as s:
        a = register(s, ws.path.parent, name="a", payload=b"a")
        b = register(s, ws.path.parent, name="b", payload=b"b")
        register(s, ws.path.parent, name="c", payload=b"c")
        for mv in (a, b):
            add_run(s, mv, "evasion", GOOD["evasion"])
            add_run(s, mv, "supply-chain", GOOD["supply-chain"])
        add_run(s, a, "privacy", GOOD["privacy"])
        add_run(s, b, "evasion", {"ars": 0.86, "eps": 0.1})
    assert ws.invoke("promote", "a@1", "--to", "production").exit_code == 0
    assert ws.invoke("promote", "b@1", "--to", "production").exit_code == 0
    values = {v["key"]: v for v in json.loads(ws.invoke("kpi", "--json").stdout)}
    ars = values["ars"]
    assert ars["value"] == 0.86 and ars["status"] == "ok"  # the lowest model's score
    per = {r["model"]: r for r in ars["detail"]}
    assert per["a@1"]["ars"] == 0.9 and per["c@1"]["ars"] is None and per["c@1"]["status"] == "no data"
    rate = values["model_compliance_rate"]
    assert rate["value"] == 0.5 and rate["status"] == "breach"  # b has no privacy audit
    with transaction(ws.settings) as s:
        assert compliance.compliance_rate(s, policy.load(None))["compliant"] == 1


def test_a_monitoring_kpi_plugs_in_with_one_function(ready_sqlite, monkeypatch):
    def drift(session, pol):
        limit = pol.data["monitoring"]["drift_block_psi"]
        return kpi.KpiValue("drift_magnitude", "Drift Magnitude", "Technical", 0.31, "PSI",
                            f"<= {limit:g}", "breach", "PSI over 24 h")

    monkeypatch.setitem(kpi._PROVIDERS, "drift_magnitude", kpi._PROVIDERS["drift_magnitude"])
    kpi.register_kpi("drift_magnitude", drift)
    values = {v["key"]: v for v in json.loads(ready_sqlite.invoke("kpi", "--json").stdout)}
    assert values["drift_magnitude"]["value"] == 0.31 and values["drift_magnitude"]["status"] == "breach"
