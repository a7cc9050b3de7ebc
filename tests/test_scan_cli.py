"""``riskloop scan`` / ``riskloop trust``, the registration scan and the loader gate."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from riskloop.errors import PolicyViolation
from riskloop.inventory.refs import resolve_model
from riskloop.store.db import transaction
from riskloop.store.models import AssessmentRun, AuditEvent
from riskloop.targets.loader import check_loadable
from riskloop.targets.torchspec import save_torch_model
from tests.test_scan_payloads import proto4_call, set_flag, zip_bytes

EVIL = proto4_call("os", "system", "id")


def _clean_pickle(path):  # type: ignore[no-untyped-def]
    X, y = load_breast_cancer(return_X_y=True)
    path.write_bytes(pickle.dumps(LogisticRegression(max_iter=50).fit(X[:100, :3], y[:100])))
    return path


def test_scan_exit_codes_and_table(sqlite_workspace, tmp_path):
    ws = sqlite_workspace
    clean = _clean_pickle(tmp_path / "clean.pkl")
    (tmp_path / "evil.bin").write_bytes(EVIL)
    ok = ws.invoke("scan", str(clean))
    assert ok.exit_code == 0 and "clean" in ok.output
    bad = ws.invoke("scan", str(clean), str(tmp_path / "evil.bin"))
    assert bad.exit_code == 1 and "os.system" in bad.output and "RL-SC001" in bad.output
    missing = ws.invoke("scan", str(tmp_path / "nope.pkl"))
    assert missing.exit_code == 2 and missing.output.count("\n") == 1 and "does not exist" in missing.output
    assert ws.invoke("scan", str(clean), "--format", "xml").exit_code == 2
    assert ws.invoke("scan").exit_code == 2


def test_scan_json_and_sarif(sqlite_workspace, tmp_path):
    ws = sqlite_workspace
    archive = tmp_path / "model.zip"
    archive.write_bytes(set_flag(zip_bytes({"archive/data.pkl": EVIL}), 0x1))
    (tmp_path / "user.pkl").write_bytes(proto4_call("mypkg.models", "Net"))
    res = ws.invoke("scan", str(tmp_path), "--format", "json")
    assert res.exit_code == 1
    data = json.loads(res.output)
    assert data["verdict"] == "malicious"
    assert data["counts"] == {"files": 2, "clean": 0, "needs_trust_files": 1, "malicious_files": 1,
                              "critical": 1, "needs_trust": 2}
    out = tmp_path / "scan.sarif"
    res = ws.invoke("scan", str(tmp_path), "--format", "sarif", "--output", str(out))
    assert res.exit_code == 1 and out.exists()
    sarif = json.loads(out.read_text())
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    run = sarif["runs"][0]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    results = run["results"]
    assert len(results) == 3 and all(r["ruleId"] == rule_ids[r["ruleIndex"]] for r in results)
    levels = {(r["level"], r["ruleId"]) for r in results}
    assert levels == {("error", "RL-SC001"), ("warning", "RL-SC006"), ("warning", "RL-SC002")}
    err = next(r for r in results if r["level"] == "error")
    uri = err["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri.endswith("model.zip")  # reported on the archive ...
    assert "in archive member 'archive/data.pkl'" in err["message"]["text"]  # ... naming the member
    assert {a["location"]["uri"].rsplit("/", 1)[-1] for a in run["artifacts"]} == {"model.zip", "user.pkl"}


def test_scan_policy_file(sqlite_workspace, tmp_path):
    ws = sqlite_workspace
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "user.pkl").write_bytes(proto4_call("mypkg.models", "Net"))
    policy = tmp_path / "policy.toml"
    policy.write_text('allow = ["mypkg.models.*"]\n[budgets]\nmax_seconds = 30\n')
    assert ws.invoke("scan", str(tmp_path / "m")).exit_code == 1
    assert ws.invoke("scan", str(tmp_path / "m"), "--policy", str(policy)).exit_code == 0
    (tmp_path / "deny.yaml").write_text("deny: ['sklearn.*']\n")
    assert ws.invoke("scan", str(_clean_pickle(tmp_path / "c.pkl")), "--policy",
                     str(tmp_path / "deny.yaml")).exit_code == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"allow": ["no dots"], "budgets": {}}')
    res = ws.invoke("scan", str(tmp_path / "m"), "--policy", str(bad))
    assert res.exit_code == 2 and "bad allow entry 'no dots'" in res.output
    bad.write_text('{"budgets": {"max_minutes": 3}}')
    res = ws.invoke("scan", str(tmp_path / "m"), "--policy", str(bad))
    assert res.exit_code == 2 and "unknown budget 'max_minutes'" in res.output


def test_registration_scans_and_trust_is_audited(ready_sqlite, tmp_path):
    ws = ready_sqlite
    (tmp_path / "evil.pkl").write_bytes(EVIL)
    reg = ws.invoke("register", "model", str(tmp_path / "evil.pkl"), "--name", "evil",
                    "--framework", "sklearn", "--domain", "general", "--json")
    assert reg.exit_code == 0, reg.output
    assert json.loads(reg.output)["scan_status"] == "malicious"
    with transaction(ws.settings) as s:
        mv = resolve_model(s, "evil@1")
        run = s.query(AssessmentRun).filter_by(model_id=mv.id, suite="supply-chain").one()
        assert run.metrics == {"files": 1, "critical": 1, "needs_trust": 0, "verdict": "malicious"}
        assert [f.severity for f in run.findings] == ["critical"]
        assert run.findings[0].threat_id == "supply-chain"
        with pytest.raises(PolicyViolation, match="riskloop trust evil@1"):
            check_loadable(mv)
    assert ws.invoke("trust", "evil@1", "--reason", "  ").exit_code == 2
    res = ws.invoke("trust", "evil@1", "--reason", "reviewed by the security team", "--json")
    assert res.exit_code == 0 and json.loads(res.output)["trusted"] is True
    assert ws.invoke("trust", "evil@1", "--reason", "again").exit_code == 2
    with transaction(ws.settings) as s:
        mv = resolve_model(s, "evil@1")
        check_loadable(mv)  # an explicit, audited decision lets it through (nothing is loaded here)
        ev = s.query(AuditEvent).filter_by(action="model.trust").one()
        assert ev.actor == "tester" and ev.payload["reason"] == "reviewed by the security team"
        assert ev.payload["scan_status"] == "malicious"
        assert s.query(AuditEvent).filter_by(action="model.scan").count() == 1
    assert ws.invoke("trust", "evil@1", "--revoke", "--reason", "supplier compromised").exit_code == 0
    with transaction(ws.settings) as s:
        with pytest.raises(PolicyViolation):
            check_loadable(resolve_model(s, "evil@1"))
    rescan = ws.invoke("scan", "--model", "evil@1", "--format", "json")
    assert rescan.exit_code == 1 and json.loads(rescan.output)["verdict"] == "malicious"
    assert ws.invoke("audit", "verify").exit_code == 0


def test_loader_requires_signatures_for_high_risk_tiers(ready_sqlite, tmp_path):
    ws = ready_sqlite
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    folder = save_torch_model(tmp_path / "m", module, {
        "format": "riskloop.torch-sequential/1", "input_shape": [4], "input_range": [0.0, 1.0],
        "classes": ["a", "b"], "layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 4,
                                                                 "out_features": 2}]})
    assert ws.invoke("register", "model", str(folder), "--name", "credit", "--framework", "torch",
                     "--domain", "finance").exit_code == 0
    assert ws.invoke("register", "model", str(folder), "--name", "toy", "--framework", "torch",
                     "--domain", "general").exit_code == 0
    with transaction(ws.settings) as s:
        assert resolve_model(s, "credit@1").scan_status == "clean"
        check_loadable(resolve_model(s, "toy@1"))  # minimal tier: no signature needed
        with pytest.raises(PolicyViolation, match="high risk tier.*riskloop sign credit@1"):
            check_loadable(resolve_model(s, "credit@1"))
    key = tmp_path / "k.pem"
    assert ws.invoke("keygen", "--out", str(key)).exit_code == 0
    assert ws.invoke("sign", "credit@1", "--key", str(key)).exit_code == 0
    with transaction(ws.settings) as s:
        check_loadable(resolve_model(s, "credit@1"))
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    assert ws.invoke("verify", "credit@1").exit_code == 1
    with transaction(ws.settings) as s:
        with pytest.raises(PolicyViolation, match="signature status is 'invalid'.*riskloop verify credit@1"):
            check_loadable(resolve_model(s, "credit@1"))


def test_scan_as_a_real_process(sqlite_workspace, tmp_path):
    (tmp_path / "evil.pt").write_bytes(zip_bytes({"archive/data.pkl": EVIL}))
    proc = sqlite_workspace.run("scan", str(tmp_path / "evil.pt"), "--format", "json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["files"][0]["format"] == "torch-zip"
    assert "Traceback" not in proc.stderr


def test_demo_scan_step(ready_sqlite, tmp_path):
    from riskloop.demo.scenario import DemoContext
    from riskloop.demo.steps_scan import crafted_pickle, step_scan
    from riskloop.inventory import assets

    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    folder = save_torch_model(tmp_path / "m", module, {
        "format": "riskloop.torch-sequential/1", "input_shape": [4], "input_range": [0.0, 1.0],
        "classes": ["a", "b"], "layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 4,
                                                                 "out_features": 2}]})
    with transaction(ready_sqlite.settings) as s:
        ref = assets.register_model(s, path=folder, name="cnn", framework="torch", domain="general",
                                    actor="tester").ref
    ctx = DemoContext(settings=ready_sqlite.settings, refs={"model": ref}, data={"model_dir": folder})
    [(title, data)] = list(step_scan(ctx))
    assert title == "scan" and data["model_scan_status"] == "clean" and data["model_verdict"] == "clean"
    assert data["crafted_verdict"] == "malicious" and data["crafted_format"] == "pickle"
    assert data["crafted_global"] == "posix.system" and data["loader"] == "refused"
    assert crafted_pickle("x")[:2] == b"\x80\x04"
