"""Drift Magnitude and Defence FPR indicators computed from deployments, alerts and watchers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from riskloop.inventory import assets
from riskloop.store.db import transaction
from riskloop.store.models import Alert, Deployment, WatchState
from tests.helpers import write_model_folder


def _kpis(ws):
    return {k["key"]: k for k in json.loads(ws.invoke("kpi", "--json").output)}


def test_no_deployments_means_no_data(ready):
    k = _kpis(ready)
    assert k["drift_magnitude"]["value"] is None and k["drift_magnitude"]["status"] == "no data"
    assert k["defence_fpr"]["value"] is None and k["defence_fpr"]["status"] == "no data"


def test_drift_and_fpr_from_the_store(ready, tmp_path):
    with transaction(ready.settings) as s:
        mv = assets.register_model(s, path=write_model_folder(tmp_path / "m"), name="m",
                                   framework="torch", domain="general", actor="t")
        config = {"watchdogs": {"outliers": {"state": {"fpr": 0.01, "threshold": 3.0}},
                                "confidence": {"state": {"fpr": 0.02}}}}
        a = Deployment(name="a", model_id=mv.id, mode="active", config=config, created_by="t")
        b = Deployment(name="b", model_id=mv.id, mode="active",
                       config={"watchdogs": {"outliers": {"state": {"fpr": 0.001}}}},
                       created_by="t")
        s.add_all([a, b])
        s.flush()
        now = datetime.now(UTC)
        s.add(Alert(deployment_id=a.id, kind="drift", severity="high",
                    details={"mean_psi": 0.31}, created_at=now))
        s.add(Alert(deployment_id=b.id, kind="drift", severity="high",
                    details={"mean_psi": 0.9}, created_at=now - timedelta(days=3)))
        s.add(WatchState(deployment_id=b.id, watchdog="input-drift", client="",
                         state={"last": {"mean_psi": 0.05, "at": now.isoformat()}}))
    k = _kpis(ready)
    assert abs(k["drift_magnitude"]["value"] - 0.31) < 1e-9  # the 3-day-old alert is outside 24 h
    assert k["drift_magnitude"]["status"] == "breach"  # above the 0.25 block line
    assert abs(k["defence_fpr"]["value"] - 0.03) < 1e-9
    assert k["defence_fpr"]["status"] == "ok"
