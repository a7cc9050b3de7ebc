"""The REST API under /api/v1 (in-process, on a real seeded workspace): every route × role
(allowed, 401 without or with a bad token, 403 for a role without the permission), then each
action through the library with the token's owner as the audit actor."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from riskloop.assess.runs import runs_for
from riskloop.inventory.refs import resolve_model
from riskloop.service import create_app, tokens
from riskloop.service.api import PREFIX
from riskloop.service.api import router as api_router
from riskloop.store import db
from riskloop.store.db import transaction
from riskloop.store.models import AuditEvent
from tests.test_dashboard_support import DEPLOYMENT, POLICY, ROLES, ConsoleWorld, seeded

SAMPLE = {"ref": "digits@1", "name": DEPLOYMENT, "incident_id": "999999", "item_id": "999999",
          "key_id": "999999", "prefix": "ffffffff", "approval_id": "999999"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleWorld]:
    with pytest.MonkeyPatch.context() as mp:
        for var in ("RISKLOOP_DB_URL", "RISKLOOP_POLICY"):
            mp.delenv(var, raising=False)
        mp.setenv("RISKLOOP_ACTOR", "tester")
        root = tmp_path_factory.mktemp("api") / "ws"
        yield seeded(root, tmp_path_factory.getbasetemp() / "api-models")
    db.dispose_engines()


@pytest.fixture(scope="module")
def client(world: ConsoleWorld) -> Iterator[TestClient]:
    with TestClient(create_app(world.settings)) as c:
        yield c


def auth(world: ConsoleWorld, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.tokens[role]}"}


def _walk(router: Any) -> Iterator[APIRoute]:
    for r in router.routes:
        if isinstance(r, APIRoute):
            yield r
        elif hasattr(r, "original_router"):  # an included router (its routes have no prefix)
            yield from _walk(r.original_router)


def api_routes(app: Any) -> list[tuple[str, str, str]]:
    """(method, path, permission) of every /api/v1 route, the permission read from its guard;
    checked against the served OpenAPI schema so that no route is missed."""
    names = {f"require_{p.replace(':', '_').replace('-', '_')}": p for p in tokens.PERMISSIONS}
    out = []
    for r in _walk(api_router):
        perms = [names[d.call.__name__] for d in r.dependant.dependencies
                 if getattr(d.call, "__name__", "") in names]
        assert len(perms) == 1, f"{r.path} must have exactly one permission guard"
        out.extend((m, PREFIX + r.path if not r.path.startswith(PREFIX) else r.path, perms[0])
                   for m in sorted(r.methods))
    served = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() if p.startswith(PREFIX)
              for m in ops}
    assert served == {(m, p) for m, p, _ in out}
    return out


def fill(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path)


def test_every_route_refuses_without_token_and_for_the_wrong_role(client, world):
    routes = api_routes(client.app)
    assert len(routes) >= 30
    assert {p for _m, _p, p in routes} == set(tokens.PERMISSIONS)
    with transaction(world.settings) as s:
        audit_before = s.execute(select(AuditEvent.seq).order_by(AuditEvent.seq.desc())).first()
    for method, path, perm in routes:
        url = fill(path)
        for headers in ({}, {"Authorization": "Bearer rlk_00000000_forged"},
                        {"Authorization": "Basic dXNlcjpwdw=="}):
            r = client.request(method, url, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert set(r.json()) == {"detail"} and "token" in r.json()["detail"]
        for role in ROLES:
            r = client.request(method, url, headers=auth(world, role))
            if tokens.allowed(role, perm):
                assert r.status_code not in (401, 403), (method, path, role, r.text)
                assert r.status_code < 500, (method, path, role, r.text)
            else:
                assert r.status_code == 403, (method, path, role, r.text)
                assert f"role '{role}' may not" in r.json()["detail"]
    with transaction(world.settings) as s:
        new = s.execute(select(AuditEvent).where(AuditEvent.seq > audit_before[0])).scalars().all()
        # Refused and body-less requests change nothing, except the gate (no body needed),
        # recorded once for each allowed role, by its token's owner.
        assert sorted((e.action, e.actor) for e in new if e.action != "policy.store") == [
            ("gate.decide", "ada"), ("gate.decide", "eric")]


@pytest.mark.parametrize("role", list(ROLES))
def test_every_read_route_answers_each_role(client, world, role):
    reads = [p for m, p, perm in api_routes(client.app) if m == "GET" and perm == "read"]
    for path in reads:
        path = path.replace("{incident_id}", "1").replace("/datasets/{ref}", "/datasets/digits-train@1")
        r = client.get(fill(path), headers=auth(world, role))
        assert r.status_code == 200, (path, r.text)
    me = client.get(f"{PREFIX}/whoami", headers=auth(world, role)).json()
    assert me == {"owner": ROLES[role], "role": role, "prefix": world.tokens[role].split("_")[1]}


def test_reads_match_the_library(client, world):
    h = auth(world, "viewer")
    inv = client.get(f"{PREFIX}/inventory", headers=h).json()
    assert {m["ref"] for m in inv["models"]} >= {"digits@1", "scorer@1", "legacy@1"}
    runs = client.get(f"{PREFIX}/models/legacy@1/runs?suite=evasion", headers=h).json()["runs"]
    assert runs[0]["metrics"]["ars"] == pytest.approx(world.facts["legacy"]["ars"])
    with transaction(world.settings) as s:
        n_findings = sum(len(r.findings) for r in runs_for(s, resolve_model(s, "legacy@1"), None))
    assert len(client.get(f"{PREFIX}/models/legacy@1/findings", headers=h).json()["findings"]) == n_findings
    kpis = {k["key"]: k for k in client.get(f"{PREFIX}/kpis", headers=h).json()["kpis"]}
    assert kpis["ars"]["value"] == pytest.approx(world.facts["legacy"]["ars"])
    assert client.get(f"{PREFIX}/models/legacy@1/gate", headers=h).json()["decision"] == world.facts["legacy"]["gate"]
    assert client.get(f"{PREFIX}/audit/verify", headers=h).json()["ok"] is True
    assert client.get(f"{PREFIX}/models/nope@1", headers=h).status_code == 404
    assert client.get(f"{PREFIX}/models/bad%20ref", headers=h).status_code == 422
    assert client.get(f"{PREFIX}/deployments/{DEPLOYMENT}", headers=h).json()["name"] == DEPLOYMENT


def _actor_of(world: ConsoleWorld, action: str) -> str:
    with transaction(world.settings) as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == action)
                       .order_by(AuditEvent.seq.desc())).scalars().first()
        assert ev is not None, action
        return ev.actor


def test_engineer_registers_assesses_gates_and_deploys(client, world):
    h = auth(world, "engineer")
    r = client.post(f"{PREFIX}/datasets", headers=h,
                    json={"path": "data/holdout.npz", "name": "api-holdout", "target": "y"})
    assert r.status_code == 201, r.text
    assert _actor_of(world, "dataset.register") == "eric"
    r = client.post(f"{PREFIX}/datasets", headers=h, json={"path": "/etc/passwd", "name": "x"})
    assert r.status_code == 422 and "outside the workspace" in r.json()["detail"]
    r = client.post(f"{PREFIX}/models", headers=h, json={
        "path": "models/legacy", "name": "api-legacy", "framework": "torch", "domain": "general",
        "trained_on": ["digits-train@1"]})
    assert r.status_code == 201 and r.json()["ref"] == "api-legacy@1", r.text
    assert _actor_of(world, "model.register") == "eric"
    r = client.post(f"{PREFIX}/assessments", headers=h, json={
        "model": "api-legacy@1", "data": "api-holdout@1", "suite": "evasion", "attacks": ["fgsm"],
        "eps": [0.05], "standard_eps": 0.05, "limit": 60, "seed": 3})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["params"]["limit"] == 60 and 0.0 <= run["metrics"]["ars"] <= 1.0
    assert _actor_of(world, "assessment.record") == "eric"
    assert client.post(f"{PREFIX}/assessments", headers=h, json={
        "model": "api-legacy@1", "data": "api-holdout@1", "limit": 100_000}).status_code == 422
    assert client.post(f"{PREFIX}/assessments", headers=h, json={
        "model": "api-legacy@1", "data": "api-holdout@1", "suite": "nope"}).status_code == 422
    r = client.post(f"{PREFIX}/models/api-legacy@1/gate", headers=h)
    assert r.status_code == 200 and r.json()["decision_id"] >= 1
    assert _actor_of(world, "gate.decide") == "eric"
    # Client keys of the gateway: created (returned once), used, listed by prefix, revoked.
    r = client.post(f"{PREFIX}/deployments/{DEPLOYMENT}/keys", headers=h, json={"client": "api-app"})
    assert r.status_code == 201
    key, key_id = r.json()["key"], r.json()["id"]
    row = world.facts["X_live"][:2].tolist()
    for _ in range(50):  # the gateway picks up a new key within its refresh interval
        ok = client.post(f"/v1/deployments/{DEPLOYMENT}/predict", json={"inputs": row},
                         headers={"X-API-Key": key})
        if ok.status_code != 401:
            break
        time.sleep(0.1)
    assert ok.status_code == 200, ok.text
    listed = client.get(f"{PREFIX}/deployments/{DEPLOYMENT}/keys", headers=h).json()
    assert any(k["id"] == key_id for k in listed) and key not in str(listed)
    assert client.delete(f"{PREFIX}/deployments/{DEPLOYMENT}/keys/{key_id}", headers=h).status_code == 200
    assert client.delete(f"{PREFIX}/deployments/{DEPLOYMENT}/keys/{key_id}", headers=h).status_code == 409
    assert _actor_of(world, "client_key.revoke") == "eric"


def test_deployment_create_and_mode(client, world):
    h = auth(world, "engineer")
    r = client.post(f"{PREFIX}/deployments", headers=h, json={
        "model": "digits@1", "name": "api-live", "holdout": "digits-holdout@1", "window": 100})
    assert r.status_code == 201, r.text
    assert r.json()["mode"] == "active"
    assert client.post(f"{PREFIX}/deployments", headers=h, json={
        "model": "legacy@1", "name": "api-legacy-live", "holdout": "digits-holdout@1"}).status_code == 403
    r = client.post(f"{PREFIX}/deployments/api-live/mode", headers=h, json={"mode": "off", "reason": "api test"})
    assert r.status_code == 200 and r.json() == {"name": "api-live", "mode": "off"}
    assert client.post(f"{PREFIX}/deployments/api-live/mode", headers=h, json={"mode": "off"}).status_code == 409
    assert _actor_of(world, "deployment.mode") == "eric"


def test_risk_officer_policy_approval_promotion_incident(client, world):
    h = auth(world, "risk-officer")
    bad = client.put(f"{PREFIX}/policy", headers=h, json={"text": "version: 1\nrules: {evasion: {min_ars: 7}}\n"})
    assert bad.status_code == 422, bad.text
    r = client.put(f"{PREFIX}/policy", headers=h, json={"text": POLICY})
    assert r.status_code == 200 and r.json()["name"] == "console-tests"
    assert client.get(f"{PREFIX}/policy?model=scorer@1", headers=h).json()["resolved"]["approval"]["required"] is True
    r = client.post(f"{PREFIX}/models/scorer@1/approve", headers=h, json={"reason": "curve reviewed"})
    assert r.status_code == 200, r.text
    assert r.json()["approved_by"] == "rita" and _actor_of(world, "model.approve") == "rita"
    # a sign-off can be withdrawn (and re-given): the revocation is audited, by its token's owner
    first = r.json()["approval_id"]
    r = client.post(f"{PREFIX}/models/scorer@1/approvals/{first}/revoke", headers=h,
                    json={"reason": "curve re-run on new data"})
    assert r.status_code == 200 and r.json()["gate"] != "GO", r.text
    assert _actor_of(world, "model.approval-revoke") == "rita"
    again = client.post(f"{PREFIX}/models/scorer@1/approvals/{first}/revoke", headers=h,
                        json={"reason": "twice"})
    assert again.status_code == 409 and "already revoked" in again.json()["detail"]
    hist = client.get(f"{PREFIX}/models/scorer@1/history", headers=h).json()["approvals"]
    assert next(a for a in hist if a["id"] == first)["revoked_by"] == "rita"
    r = client.post(f"{PREFIX}/models/scorer@1/approve", headers=h, json={"reason": "curve reviewed again"})
    assert r.status_code == 200, r.text
    refused = client.post(f"{PREFIX}/models/legacy@1/promote", headers=h, json={"to": "production"})
    assert refused.status_code == 403 and "cannot go to production" in refused.json()["detail"]
    assert _actor_of(world, "model.promote.refused") == "rita"  # recorded although refused
    r = client.post(f"{PREFIX}/models/scorer@1/promote", headers=h, json={"to": "staging", "reason": "api"})
    assert r.status_code == 200 and r.json()["stage"] == "staging"
    inc = client.get(f"{PREFIX}/incidents?open=true", headers=h).json()
    assert inc, "the seeded traffic opened an incident"
    iid = inc[0]["id"]
    r = client.post(f"{PREFIX}/incidents/{iid}/contain", headers=h, json={"mode": "fallback"})
    assert r.status_code == 200 and r.json()["state"] == "contained" and r.json()["mode"] == "fallback"
    assert r.json()["transitions"][-1]["actor"] == "rita"
    assert client.post(f"{PREFIX}/incidents/{iid}/close", headers=h, json={"note": "x"}).status_code == 409


def test_review_decision_and_tokens(client, world):
    items = client.get(f"{PREFIX}/review", headers=auth(world, "viewer")).json()
    assert items and all(i["status"] == "open" for i in items)
    r = client.post(f"{PREFIX}/review/{items[0]['id']}/decide", headers=auth(world, "engineer"),
                    json={"label": "3", "note": "checked"})
    assert r.status_code == 200 and r.json()["reviewer"] == "eric" and r.json()["label"] == "3"
    h = auth(world, "admin")
    r = client.post(f"{PREFIX}/tokens", headers=h, json={"owner": "newbie", "role": "viewer"})
    assert r.status_code == 201
    secret, prefix = r.json()["token"], r.json()["prefix"]
    assert _actor_of(world, "token.create") == "ada"
    assert secret not in str(client.get(f"{PREFIX}/tokens", headers=h).json())
    me = client.get(f"{PREFIX}/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert me.json()["owner"] == "newbie"
    assert client.post(f"{PREFIX}/tokens", headers=h, json={"owner": "x", "role": "root"}).status_code == 422
    assert client.delete(f"{PREFIX}/tokens/{prefix}", headers=h).status_code == 200
    assert client.get(f"{PREFIX}/whoami", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert client.get(f"{PREFIX}/audit/verify", headers=h).json()["ok"] is True
