"""`riskloop demo` runs the whole bundled scenario end to end, as a user would start it."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_demo_runs_to_the_end_and_prints_the_inventory(tmp_path):
    ws = tmp_path / "demo"
    env = {**os.environ, "RISKLOOP_ACTOR": "demo-tester"}
    env.pop("RISKLOOP_DB_URL", None)
    res = subprocess.run([sys.executable, "-m", "riskloop", "demo", "--workspace", str(ws)],
                         capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Models" in res.stdout and "digits-cnn@1" in res.stdout
    inv = subprocess.run([sys.executable, "-m", "riskloop", "--workspace", str(ws), "inventory",
                          "--json"], capture_output=True, text=True, env=env, timeout=120)
    data = json.loads(inv.stdout)
    model = next(m for m in data["models"] if m["ref"] == "digits-cnn@1")
    assert model["signature_status"] == "signed"
    assert model["trained_on"] == ["digits-train@1"]
    # the monitoring act ends restored: the incident closed, its time to restore in the KPIs
    kpi = subprocess.run([sys.executable, "-m", "riskloop", "--workspace", str(ws), "kpi", "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    mttr = next(k for k in json.loads(kpi.stdout) if k["key"] == "mttr")
    assert mttr["value"] is not None and mttr["value"] > 0, mttr
    assert "redeploy" in res.stdout and "digits-cnn@3" in res.stdout
    audit = subprocess.run([sys.executable, "-m", "riskloop", "--workspace", str(ws), "audit",
                            "verify"], capture_output=True, text=True, env=env, timeout=120)
    assert audit.returncode == 0, audit.stderr


def test_demo_refuses_a_folder_it_did_not_create(tmp_path):
    (tmp_path / "precious.txt").write_text("do not delete")
    res = subprocess.run([sys.executable, "-m", "riskloop", "demo", "--workspace", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "not empty" in res.stderr
    assert (tmp_path / "precious.txt").exists()
