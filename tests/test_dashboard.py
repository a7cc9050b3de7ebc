"""The risk console over HTTP (in-process): sign-in, what each role sees and may do, the
indicators against the library, form actions through the library with the right actor,
CSRF, one-line refusals, the downloadable report and the local plotly bundle."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from riskloop.govern import kpi
from riskloop.govern import policy as policy_mod
from riskloop.service import create_app, tokens
from riskloop.service.dashboard import trends, web
from riskloop.store import db
from riskloop.store.db import transaction
from riskloop.store.models import Alert, Approval, AuditEvent, Deployment, Incident, ReviewItem
from tests.test_dashboard_support import DEPLOYMENT, ROLES, ConsoleWorld, seeded

PAGES = ("/", "/inventory", "/models/scorer@1", "/deployments", "/incidents", "/incidents/1",
         "/review")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleWorld]:
    with pytest.MonkeyPatch.context() as mp:
        for var in ("RISKLOOP_DB_URL", "RISKLOOP_POLICY"):
            mp.delenv(var, raising=False)
        mp.setenv("RISKLOOP_ACTOR", "tester")
        root = tmp_path_factory.mktemp("console") / "ws"
        yield seeded(root, tmp_path_factory.getbasetemp() / "console-models")
    db.dispose_engines()


@pytest.fixture(scope="module")
def app(world: ConsoleWorld) -> Iterator[Any]:
    application = create_app(world.settings)
    with TestClient(application):  # runs the lifespan (the gateway runtime) once
        yield application


def sign_in(app: Any, token: str) -> TestClient:
    """A browser-like client signed in through the form."""
    c = TestClient(app, base_url="http://testserver", follow_redirects=False)
    form = c.get("/signin?next=/review")
    nonce = re.search(r'name="signin" value="([0-9a-f]+)"', form.text).group(1)  # type: ignore[union-attr]
    r = c.post("/signin", data={"signin": nonce, "next": "/review", "token": token})
    assert r.status_code == 303 and r.headers["location"] == "/review", r.text
    return c


def csrf(c: TestClient, path: str = "/") -> str:
    html = c.get(path).text
    return re.search(r'name="csrf" value="([0-9a-f]{64})"', html).group(1)  # type: ignore[union-attr]


def counts(world: ConsoleWorld) -> dict[str, int]:
    with transaction(world.settings) as s:
        return {
            "approvals": s.execute(select(func.count()).select_from(Approval)).scalar_one(),
            "audit": s.execute(select(func.count()).select_from(AuditEvent)).scalar_one(),
            "decided": s.execute(select(func.count()).select_from(ReviewItem)
                                 .where(ReviewItem.status == "decided")).scalar_one(),
            "contained": s.execute(select(func.count()).select_from(Incident)
                                   .where(Incident.state != "identified")).scalar_one(),
        }


def test_pages_need_a_token(app):
    c = TestClient(app, follow_redirects=False)
    for path in (*PAGES, "/models/digits@1/report.html"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=%2F"), path
    for path in ("/models/scorer@1/approve", "/models/scorer@1/approvals/1/revoke", "/incidents/1/contain",
                 "/review/1/decide"):
        r = c.post(path, data={"csrf": "x"})
        assert r.status_code == 303 and r.headers["location"].startswith("/signin"), path
    assert c.get("/signin").status_code == 200
    # The console stays out of the OpenAPI schema (programs use the API, fuzzers skip pages).
    paths = c.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith(
        ("/signin", "/signout", "/inventory", "/models", "/deployments", "/incidents", "/review",
         "/static"))]


def test_sign_in_cookies_and_refusals(app, world):
    c = TestClient(app, follow_redirects=False)
    page = c.get("/signin?next=//evil.example/x")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert 'value="/"' in page.text  # an off-site "next" is dropped
    nonce = c.cookies.get("riskloop_signin")
    bad = c.post("/signin", data={"signin": nonce, "next": "/", "token": "rlk_0000_nope"})
    assert bad.status_code == 401 and "unknown or revoked" in bad.text
    nonce = re.search(r'name="signin" value="([0-9a-f]+)"', bad.text).group(1)  # type: ignore[union-attr]
    # A sign-in form posted from elsewhere lacks the sign-in cookie (login CSRF).
    other = TestClient(app, follow_redirects=False)
    assert other.post("/signin", data={"signin": nonce, "token": world.tokens["viewer"]}).status_code == 403
    ok = c.post("/signin", data={"signin": nonce, "next": "/", "token": world.tokens["viewer"]})
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    cookies = ok.headers.get_list("set-cookie")
    tok = next(h for h in cookies if h.startswith("riskloop_token="))
    assert "HttpOnly" in tok and "samesite=strict" in tok.lower() and "Path=/" in tok
    home = c.get("/")
    assert home.status_code == 200 and "vera · viewer" in home.text and "signed in as vera" in home.text
    assert world.tokens["viewer"] not in home.text
    out = c.post("/signout", data={"csrf": csrf(c)})
    assert out.status_code == 303 and c.get("/").status_code == 303


def test_revoked_token_returns_to_sign_in(app, world):
    with transaction(world.settings) as s:
        rec, secret = tokens.create_token(s, owner="temp", role="viewer", actor="ada")
    c = sign_in(app, secret)
    with transaction(world.settings) as s:
        tokens.revoke(s, prefix=rec.prefix, actor="ada")
    r = c.get("/")
    assert r.status_code == 303 and r.headers["location"].startswith("/signin")
    assert "unknown or revoked" in c.get(r.headers["location"]).text


@pytest.mark.parametrize("role", list(ROLES))
def test_each_role_sees_every_page_and_only_its_actions(app, world, role):
    c = sign_in(app, world.tokens[role])
    for path in PAGES:
        r = c.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["cache-control"] == "no-store"
        srcs = re.findall(r'<script[^>]*\bsrc="([^"]+)"', r.text)
        assert srcs and all(s.startswith("/static/") for s in srcs), srcs
        assert "cdn" not in r.text.lower()
    offered = {
        "approve": 'id="approve-form"' in c.get("/models/scorer@1").text,
        "incident": 'id="contain-form"' in c.get("/incidents/1").text,
        "review": 'action="/review/' in c.get("/review").text,
    }
    assert offered == {p: tokens.allowed(role, p) for p in offered}, role


def test_overview_shows_the_library_indicators(app, world):
    c = sign_in(app, world.tokens["viewer"])
    html = c.get("/").text
    with transaction(world.settings) as s:
        values = {v.key: v for v in kpi.compute(s, policy_mod.load(workspace=world.path))}
    assert len(values) >= 5
    for key, v in values.items():
        m = re.search(rf'id="kpi-{key}" data-status="([^"]*)">.*?data-value="([^"]*)"', html, re.S)
        assert m is not None and m.group(1) == v.status, key
        shown = m.group(2)
        assert (shown == "") if v.value is None else float(shown) == pytest.approx(v.value), key
    # The lowest ARS is the barely trained model's, measured by FGSM when seeding.
    assert values["ars"].value == pytest.approx(world.facts["legacy"]["ars"])
    # The portfolio heat map counts every applicable (model, threat) pair once.
    fig = re.search(r'id="fig-heatmap">(.*?)</script>', html, re.S).group(1)  # type: ignore[union-attr]
    cells = json.loads(fig)["data"][0]["text"]
    assert sum(int(t) for row in cells for t in row if t) == 3 * 9  # 9 threats apply outside chat
    for name in ("digits@1", "scorer@1", "legacy@1"):
        assert f'data-model="{name}"' in html


def test_trends_replay_the_records(world):
    with transaction(world.settings) as s:
        pol = policy_mod.load(workspace=world.path)
        tr = trends.all_trends(s, pol)
        drift_psi = [a.details["mean_psi"] for a in s.execute(select(Alert).where(Alert.kind == "drift")).scalars()]
        kpis = {v.key: v.value for v in kpi.compute(s, pol)}
    ars = {series.name: series.y for series in tr["ars"].series}
    assert ars == {f"{m}@1": [pytest.approx(world.facts[m]["ars"])] for m in ("digits", "scorer", "legacy")}
    assert tr["ars"].limit == 0.6
    dep = next(x for x in tr["drift_magnitude"].series if x.name == DEPLOYMENT)
    assert drift_psi and all(any(v == pytest.approx(p) for v in dep.y) for p in drift_psi)
    assert tr["mttr"].empty  # nothing restored yet: no point is invented
    fpr = tr["defence_fpr"].series[0]
    assert fpr.name == DEPLOYMENT and 0 <= fpr.y[0] <= 0.05 + 0.05
    # digits@1 went to production; its latest gate lacks a privacy audit, as the KPI says.
    assert tr["model_compliance_rate"].series[0].y[-1] == kpis["model_compliance_rate"]


def test_forbidden_and_cross_site_actions_write_nothing(app, world):
    before = counts(world)
    viewer = sign_in(app, world.tokens["viewer"])
    engineer = sign_in(app, world.tokens["engineer"])
    officer = sign_in(app, world.tokens["risk-officer"])
    reason = {"reason": "reviewed the robustness curve", "kind": "sign-off"}
    cases = [
        (viewer, "/models/scorer@1/approve", {**reason, "csrf": csrf(viewer)}, "may not approve models"),
        (engineer, "/models/scorer@1/approve", {**reason, "csrf": csrf(engineer)}, "may not approve models"),
        (engineer, "/incidents/1/contain", {"mode": "fallback", "csrf": csrf(engineer)}, "may not contain or recover incidents"),
        (viewer, "/review/1/decide", {"label": "3", "csrf": csrf(viewer)}, "may not decide review items"),
        (engineer, "/models/scorer@1/approvals/1/revoke", {"reason": "x", "csrf": csrf(engineer)},
         "may not approve models"),
        (officer, "/models/scorer@1/approve", reason, "out of date"),
        (officer, "/models/scorer@1/approve", {**reason, "csrf": "0" * 64}, "out of date"),
        (officer, "/incidents/1/contain", {"mode": "fallback", "csrf": csrf(viewer)}, "out of date"),
    ]
    for client, path, data, message in cases:
        r = client.post(path, data=data)
        assert r.status_code == 403 and message in r.text, (path, r.status_code, r.text[-600:])
    r = officer.post("/incidents/1/contain", data={"mode": "fallback", "csrf": csrf(officer)},
                     headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "not from this console" in r.text
    assert counts(world) == before


def test_refusals_are_one_line_with_their_status(app, world):
    officer = sign_in(app, world.tokens["risk-officer"])
    token = csrf(officer)
    r = officer.post("/review/1/decide", content=b'{"label": "3"}',
                     headers={"content-type": "application/json"})
    assert r.status_code == 415 and "is not a form" in r.text
    r = officer.post("/review/1/decide", data={"csrf": token, "note": "x" * 70_000})
    assert r.status_code == 413
    r = officer.get("/models/nope@1")
    assert r.status_code == 404 and "unknown model 'nope@1'" in r.text.replace("&#39;", "'")
    assert officer.get("/incidents/999").status_code == 404
    r = officer.get("/incidents/abc")
    assert r.status_code == 404 and "ids are whole numbers" in r.text and "<html" in r.text
    with transaction(world.settings) as s:
        item = s.execute(select(ReviewItem).where(ReviewItem.status == "open")).scalars().first()
        assert item is not None
    r = officer.post(f"/review/{item.id}/decide", data={"csrf": token, "label": "cat"})
    assert r.status_code == 422 and "is not an answer of deployment" in r.text
    # The registrant cannot sign off their own model, whatever their role.
    with transaction(world.settings) as s:
        _rec, own = tokens.create_token(s, owner="tester", role="risk-officer", actor="ada")
    registrant = sign_in(app, own)
    page = registrant.get("/models/scorer@1").text
    assert 'id="approve-form"' not in page and "separation of duties" in page
    r = registrant.post("/models/scorer@1/approve",
                        data={"csrf": csrf(registrant), "reason": "mine", "kind": "sign-off"})
    assert r.status_code == 403 and "separation of duties" in r.text


def test_actions_go_through_the_library_as_the_token_owner(app, world):
    officer = sign_in(app, world.tokens["risk-officer"])
    r = officer.post("/models/scorer@1/approve", data={
        "csrf": csrf(officer, "/models/scorer@1"), "kind": "sign-off",
        "reason": "FGSM curve above the policy minimum; intended use reviewed"})
    assert r.status_code == 303 and r.headers["location"] == "/models/scorer@1"
    page = officer.get("/models/scorer@1").text
    assert "recorded sign-off" in page and "gate now GO" in page
    assert 'id="decision"><span class="badge s-GO">GO' in page and 'id="approve-form"' not in page

    r = officer.post("/incidents/1/contain", data={"csrf": csrf(officer), "mode": "shadow"})
    assert r.status_code == 303
    assert "now in shadow mode" in officer.get("/incidents/1").text
    again = officer.post("/incidents/1/contain", data={"csrf": csrf(officer), "mode": "fallback"})
    assert again.status_code == 409 and "can only move to" in again.text

    engineer = sign_in(app, world.tokens["engineer"])
    with transaction(world.settings) as s:
        item = s.execute(select(ReviewItem).where(ReviewItem.status == "open")).scalars().first()
        item_id = item.id  # type: ignore[union-attr]
    r = engineer.post(f"/review/{item_id}/decide",
                      data={"csrf": csrf(engineer), "label": "7", "note": "clearly a seven"})
    assert r.status_code == 303 and r.headers["location"] == "/review"
    assert f'id="decided-{item_id}"' in engineer.get("/review").text

    with transaction(world.settings) as s:
        appr = s.execute(select(Approval)).scalars().one()
        assert appr.approved_by == "rita" and appr.kind == "sign-off"
        inc = s.get(Incident, 1)
        assert inc.state == "contained" and inc.transitions[-1].actor == "rita"  # type: ignore[union-attr]
        assert s.execute(select(Deployment.mode).where(Deployment.name == DEPLOYMENT)).scalar_one() == "shadow"
        decided = s.get(ReviewItem, item_id)
        assert decided.reviewer == "eric" and decided.label == "7" and decided.prediction.label == "7"  # type: ignore[union-attr]
        actors = {e.action: e.actor for e in s.execute(select(AuditEvent).where(AuditEvent.action.in_(
            ["model.approve", "incident.contain", "review.decide"]))).scalars()}
    assert actors == {"model.approve": "rita", "incident.contain": "rita", "review.decide": "eric"}


def test_report_download_is_the_audited_library_report(app, world):
    c = sign_in(app, world.tokens["engineer"])
    r = c.get("/models/digits@1/report.html")
    assert r.status_code == 200 and r.headers["content-disposition"].startswith("attachment;")
    assert r.text.lower().startswith("<!doctype html") and "digits@1" in r.text
    digest = hashlib.sha256(r.content).hexdigest()
    assert r.headers["x-report-sha256"] == digest
    with transaction(world.settings) as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "report.write")
                       .order_by(AuditEvent.seq.desc())).scalars().first()
    assert ev is not None and ev.actor == "eric" and ev.payload["sha256"] == digest


def test_plotly_is_served_locally_from_the_installed_package(app, world):
    from plotly.offline import get_plotlyjs

    c = sign_in(app, world.tokens["viewer"])
    src = re.search(r'<script src="(/static/plotly-[0-9a-f]{12}\.js)"', c.get("/").text).group(1)  # type: ignore[union-attr]
    raw = TestClient(app).get(src, headers={"accept-encoding": "gzip"})
    assert raw.status_code == 200 and "immutable" in raw.headers["cache-control"]
    assert raw.headers["content-encoding"] == "gzip" and raw.num_bytes_downloaded < len(raw.content) / 2
    assert raw.text == get_plotlyjs()  # httpx undid the gzip
    plain = TestClient(app).get(src, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == gzip.decompress(
        gzip.compress(plain.content))
    assert TestClient(app).get("/static/plotly-000000000000.js").status_code == 404


def test_sign_off_through_the_console_on_each_store(ready, tmp_path):
    """The same form action on SQLite and PostgreSQL: one transaction, the owner as actor."""
    from tests.test_dashboard_support import POLICY
    from tests.test_govern_support import GOOD, add_run, register

    (ready.path / "riskloop-policy.yaml").write_text(POLICY)
    with transaction(ready.settings) as s:
        mv = register(s, tmp_path, name="scorer", domain="finance", actor="tester")
        add_run(s, mv, "evasion", GOOD["evasion"])
        _rec, token = tokens.create_token(s, owner="rita", role="risk-officer", actor="tester")
    app = create_app(ready.settings)
    c = sign_in(app, token)
    page = c.get("/models/scorer@1").text
    assert "NEEDS-APPROVAL" in page and 'id="approve-form"' in page
    r = c.post("/models/scorer@1/approve", data={"csrf": csrf(c), "kind": "sign-off",
                                                 "reason": "curve reviewed"})
    assert r.status_code == 303
    assert '<td><span class="badge s-GO">GO</span></td>' in c.get("/").text
    with transaction(ready.settings) as s:
        assert s.execute(select(Approval.approved_by)).scalars().all() == ["rita"]
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "model.approve")).scalar_one()
        assert ev.actor == "rita" and ev.payload["gate_before"] == "NEEDS-APPROVAL"
        appr_id = s.execute(select(Approval.id)).scalar_one()
    # ... and withdrawn again: kept on record, no longer counted, audited
    page = c.get("/models/scorer@1").text
    assert f'id="revoke-{appr_id}"' in page
    path = f"/models/scorer@1/approvals/{appr_id}/revoke"
    r = c.post(path, data={"csrf": csrf(c), "reason": " "})
    assert r.status_code == 422 and "--reason is empty" in r.text
    r = c.post(path, data={"csrf": csrf(c), "reason": "the curve was read at the wrong eps"})
    assert r.status_code == 303
    page = c.get("/models/scorer@1").text
    assert "NEEDS-APPROVAL" in page and f'id="revoke-{appr_id}"' not in page and "revoked" in page
    r = c.post(path, data={"csrf": csrf(c), "reason": "again"})
    assert r.status_code == 409 and "already revoked by rita" in r.text
    assert c.post("/models/scorer@1/approvals/999/revoke",
                  data={"csrf": csrf(c), "reason": "x"}).status_code == 422
    with transaction(ready.settings) as s:
        appr = s.get(Approval, appr_id)
        assert appr.revoked_by == "rita" and appr.revoke_reason == "the curve was read at the wrong eps"
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "model.approval-revoke")).scalar_one()
        assert ev.actor == "rita" and ev.payload["gate_now"] == "NEEDS-APPROVAL"


@given(st.text(max_size=60))
def test_sign_in_never_sends_anyone_off_site(target):
    out = web.safe_next(target)
    assert out.startswith("/") and not out.startswith("//") and "\\" not in out
    assert all(ord(c) >= 32 for c in out)
    assert out in ("/", target)


@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=40),
       st.text(min_size=1, max_size=40))
def test_form_tokens_are_bound_to_token_and_session(token, nonce, other):
    mine = web.csrf_token(token, nonce)
    assert len(mine) == 64 and mine == web.csrf_token(token, nonce)
    if other != nonce:
        assert web.csrf_token(token, other) != mine
    if other != token:
        assert web.csrf_token(other, nonce) != mine


def test_lineage_and_untrusted_text_are_shown_escaped(ready_sqlite, tmp_path):
    """A derived model's lineage on the inventory; markup in stored text stays text."""
    from tests.test_govern_support import XSS, rich_model

    with transaction(ready_sqlite.settings) as s:
        mv = rich_model(s, tmp_path)
        ref, parent = mv.ref, mv.derived_from.ref  # type: ignore[union-attr]
        _rec, token = tokens.create_token(s, owner="ada", role="admin", actor="tester")
    c = sign_in(create_app(ready_sqlite.settings), token)
    inv = c.get("/inventory").text
    tree = inv.split('id="lineage"', 1)[1]
    assert f'<a href="/models/{ref}">{ref}</a>' in tree and "derived from" in tree
    assert f'<a href="/models/{parent}">{parent}</a>' in tree and "adversarial-training" in tree
    for page in (c.get("/inventory").text, c.get(f"/models/{parent}").text, c.get(f"/models/{ref}").text):
        assert XSS not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in c.get(f"/models/{ref}").text  # the finding title
