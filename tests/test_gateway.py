"""The guarded inference gateway against a real uvicorn server on a free loopback port.

One workspace per module: a small MLP trained on scikit-learn's digits, the training data as
the drift reference, 400 clean held-out rows for calibration and 497 other clean rows as live
traffic. Each scenario has its own deployment (``like`` reuses the first one's calibration).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import func, select, text

from riskloop.monitor import deployments as deps
from riskloop.monitor.fallback import FallbackRules
from riskloop.store.db import transaction
from riskloop.store.models import Alert, AuditEvent, Incident, PredictionLog, ReviewItem
from riskloop.targets.torchspec import load_torch_model

from .test_gateway_support import (
    RULES,
    add_squeezed_model,
    make_world,
    post,
    running_server,
    wait_for,
)

EXTRACTION_KINDS = {"near-duplicate-queries", "boundary-probing", "input-space-sweep",
                    "query-volume", "extraction-budget"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    saved = dict(os.environ)
    w = make_world(tmp_path_factory.mktemp("gateway"), tmp_path_factory.getbasetemp())
    w.deploy("clean", clients=("alice",))
    w.deploy("drifted", clients=("bob",), like="clean")
    w.deploy("extraction", clients=("mallory", "carol"), like="clean")
    w.deploy("adversarial", clients=("eve", "carol"), model=add_squeezed_model(w))
    w.deploy("review", clients=("alice",), like="clean")
    w.deploy("routed", rules=True, clients=("alice",), like="clean")
    w.deploy("contain", rules=True, clients=("mallory",), like="clean")
    w.deploy("strict", clients=("alice", "bob"), like="clean")
    w.deploy("busy", clients=tuple(f"c{i}" for i in range(6)), like="clean")
    w.deploy("events", clients=("batch",), like="clean")
    yield w
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def gw(world):  # type: ignore[no-untyped-def]
    with running_server(world.settings) as client:
        yield client


def alerts_of(world, name: str) -> list[Alert]:  # type: ignore[no-untyped-def]
    with transaction(world.settings) as s:
        dep = deps.get(s, name)
        return list(s.execute(select(Alert).where(Alert.deployment_id == dep.id)
                              .order_by(Alert.id)).scalars())


def logged(world, name: str, client: str | None = None) -> int:  # type: ignore[no-untyped-def]
    with transaction(world.settings) as s:
        dep = deps.get(s, name)
        stmt = select(func.count()).select_from(PredictionLog).where(PredictionLog.deployment_id == dep.id)
        if client is not None:
            stmt = stmt.where(PredictionLog.client == client)
        return int(s.execute(stmt).scalar_one())


def send_in_batches(gw, name: str, key: str, X: np.ndarray, *, seed: int = 0, most: int = 5) -> int:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    i = served = 0
    while i < len(X):
        k = int(rng.integers(1, most + 1))
        r = post(gw, name, key, X[i:i + k])
        assert r.status_code == 200, r.text
        served += len(r.json()["predictions"])
        i += k
    return served


def blends(X: np.ndarray, y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Half of one digit plus half of a different one: inputs the model is unsure about."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        i, j = rng.integers(0, len(X), 2)
        if y[i] != y[j]:
            out.append(0.5 * X[i] + 0.5 * X[j])
    return np.asarray(out, dtype=np.float32)


def test_clean_traffic_raises_no_alert(world, gw):  # type: ignore[no-untyped-def]
    X = world.parts["X_live"]
    served = send_in_batches(gw, "clean", world.key("clean", "alice"), X)
    assert served == len(X) == logged(world, "clean")
    assert alerts_of(world, "clean") == []
    metrics = gw.get("/metrics").text
    assert 'riskloop_drift_mean_psi{deployment="clean"}' in metrics  # two windows were scored


def test_drifted_traffic_raises_a_drift_alert(world, gw):  # type: ignore[no-untyped-def]
    X = world.parts["X_live"][:300]
    rng = np.random.default_rng(1)
    shifted = np.clip(X * 0.7 + 0.2 + rng.normal(0, 0.05, X.shape), 0, 1).astype(np.float32)
    send_in_batches(gw, "drifted", world.key("drifted", "bob"), shifted)
    drift = [a for a in alerts_of(world, "drifted") if a.kind == "drift"]
    assert drift, [a.kind for a in alerts_of(world, "drifted")]
    d = drift[0].details
    assert d["share_drifted"] >= 0.5 and d["mean_psi"] >= d["alert_psi"]
    assert drift[0].client is None and drift[0].window_start is not None
    assert 'riskloop_alerts_total{deployment="drifted",kind="drift"' in gw.get("/metrics").text


def walks(X: np.ndarray, y: np.ndarray, n: int, steps: int = 40) -> list[np.ndarray]:
    """Straight lines in small steps from one digit to another of a different class."""
    pairs = [(i, j) for i in range(40) for j in range(40, 80) if y[i] != y[j]][:n]
    t = np.linspace(0, 1, steps, dtype=np.float32)[:, None, None, None]
    return [(1 - t) * X[i] + t * X[j] for i, j in pairs]


def test_extraction_style_client_raises_an_extraction_alert_for_that_client(world, gw):  # type: ignore[no-untyped-def]
    X, y = world.parts["X_live"], world.parts["y_live"]
    mallory, carol = world.key("extraction", "mallory"), world.key("extraction", "carol")
    # mallory walks from one digit to another of a different class in small steps, the way
    # decision-based attacks and active-learning extraction hug the boundary; carol is a
    # clean client in the same window
    for step, walk in enumerate(walks(X, y, 6)):
        assert post(gw, "extraction", mallory, walk).status_code == 200
        send_in_batches(gw, "extraction", carol, X[100 + 20 * step:120 + 20 * step], seed=step)
    alerts = alerts_of(world, "extraction")
    assert {a.kind for a in alerts if a.client == "mallory"} & EXTRACTION_KINDS, [(a.kind, a.client) for a in alerts]
    assert not [a for a in alerts if a.client == "carol"]
    ext = next(a for a in alerts if a.client == "mallory" and a.kind in EXTRACTION_KINDS)
    assert ext.threat_id in ("model-extraction", "evasion")
    assert ext.details["score"] > ext.details["threshold"]


def fgsm(model_dir, X: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    module, _ = load_torch_model(model_dir)
    x = torch.from_numpy(X).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(module(x), torch.from_numpy(y))
    (g,) = torch.autograd.grad(loss, x)
    return np.clip(X + eps * np.sign(g.numpy()), 0, 1).astype(np.float32)


def test_adversarial_inputs_raise_an_adversarial_alert(world, gw):  # type: ignore[no-untyped-def]
    X, y = world.parts["X_live"], world.parts["y_live"]
    with transaction(world.settings) as s:
        dep = deps.get(s, "adversarial")
        model_dir = Path(dep.model.path)
        assert "adversarial-detector" in dep.config["watchdogs"]  # the model carries a defence
    # a clean client of the same deployment first: the detector flags a few clean rows
    # (its calibrated false-positive rate) but raises no alert
    send_in_batches(gw, "adversarial", world.key("adversarial", "carol"), X[200:350], most=3)
    assert not [a for a in alerts_of(world, "adversarial") if a.client == "carol"]
    X_adv = fgsm(model_dir, X[:60], y[:60], eps=0.1)
    r = post(gw, "adversarial", world.key("adversarial", "eve"), X_adv[:30])
    flagged = [p for p in r.json()["predictions"] if "flagged by" in p.get("review", {}).get("reason", "")]
    assert flagged  # flagged rows go to a human, whatever their confidence
    send_in_batches(gw, "adversarial", world.key("adversarial", "eve"), X_adv[30:], most=3)
    eve = [a for a in alerts_of(world, "adversarial") if a.client == "eve"]
    assert "adversarial-input" in {a.kind for a in eve}, [a.kind for a in eve]
    adv = next(a for a in eve if a.kind == "adversarial-input")
    assert adv.details["detector"] == "feature-squeezing" and adv.threat_id == "evasion"


def test_low_confidence_predictions_land_in_the_review_queue(world, gw):  # type: ignore[no-untyped-def]
    X, y = world.parts["X_live"], world.parts["y_live"]
    rows = np.concatenate([blends(X, y, 20), X[:20]])
    r = post(gw, "review", world.key("review", "alice"), rows)
    assert r.status_code == 200
    preds = r.json()["predictions"]
    with transaction(world.settings) as s:
        below = deps.get(s, "review").config["policy"]["review_below"]
        items = {i.prediction_log_id: i for i in s.execute(select(ReviewItem)).scalars()}
    pending = [p for p in preds if p["status"] == "pending-review"]
    assert 0 < len(pending) < len(preds)
    for p in preds:
        if p["confidence"] < below:
            assert p["status"] == "pending-review" and p["review"]["id"] > 0
            assert "below" in p["review"]["reason"]
            assert items[p["id"]].status == "open"
        else:
            assert p["status"] == "final" and "review" not in p and p["id"] not in items


def _mode(world, gw, name: str, mode: str) -> None:  # type: ignore[no-untyped-def]
    res = world_invoke(world, "deployment", "mode", name, mode, "--reason", "test")
    assert res.exit_code == 0, res.output
    assert wait_for(lambda: gw.get("/healthz").json()["deployments"][name]["mode"] == mode)


def world_invoke(world, *args: str):  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from riskloop.cli.app import app

    return CliRunner().invoke(app, ["--workspace", str(world.path), *args], env=world.env)


def test_shadow_and_fallback_modes_change_what_the_endpoint_answers(world, gw):  # type: ignore[no-untyped-def]
    X = world.parts["X_live"]
    key = world.key("routed", "alice")
    rules = FallbackRules.from_text(RULES).bind(n_features=64)
    with transaction(world.settings) as s:
        module, _ = load_torch_model(Path(deps.get(s, "routed").model.path))
    with torch.no_grad():
        model_answers = [str(int(v)) for v in module(torch.from_numpy(X)).argmax(1)]
    batches = iter(range(0, 400, 40))  # fresh rows for every request: repeats look like probing

    def ask(request_id: str) -> tuple[dict, list[str], list[str]]:
        k = next(batches)
        r = post(gw, "routed", key, X[k:k + 40], request_id=request_id)
        assert r.status_code == 200, r.text
        return r.json(), rules.answer(X[k:k + 40])[0], model_answers[k:k + 40]

    body, by_rules, by_model = ask("active-1")
    assert body["mode"] == "active" and {p["served_by"] for p in body["predictions"]} == {"model"}
    assert [p["answer"] for p in body["predictions"]] == by_model != by_rules

    _mode(world, gw, "routed", "shadow")
    body, by_rules, by_model = ask("shadow-1")
    assert body["mode"] == "shadow"
    assert [p["answer"] for p in body["predictions"]] == by_rules
    assert {p["served_by"] for p in body["predictions"]} == {"fallback"}
    assert all("confidence" not in p for p in body["predictions"])
    with transaction(world.settings) as s:
        rows = s.execute(select(PredictionLog).where(PredictionLog.request_id == "shadow-1")
                         .order_by(PredictionLog.row)).scalars().all()
        # the model ran and was logged, the rules answered
        assert [row.output["label"] for row in rows] == by_model
        assert [row.answer for row in rows] == by_rules

    _mode(world, gw, "routed", "fallback")
    body, by_rules, _ = ask("fallback-1")
    assert [p["answer"] for p in body["predictions"]] == by_rules
    with transaction(world.settings) as s:
        rows = s.execute(select(PredictionLog).where(PredictionLog.request_id == "fallback-1")).scalars().all()
        assert rows and all("label" not in row.output and row.confidence is None for row in rows)

    _mode(world, gw, "routed", "off")
    before = logged(world, "routed")
    off = post(gw, "routed", key, X[:2])
    assert off.status_code == 503 and "is off" in off.json()["detail"]
    assert logged(world, "routed") == before

    _mode(world, gw, "routed", "active")  # the relaxed policy's gate says GO
    body, _, by_model = ask("active-2")
    assert [p["answer"] for p in body["predictions"]] == by_model
    assert not [a.kind for a in alerts_of(world, "routed")]


def test_an_extraction_client_is_contained_by_an_incident(world, gw):  # type: ignore[no-untyped-def]
    X, y = world.parts["X_live"], world.parts["y_live"]
    key = world.key("contain", "mallory")
    served_by = []
    for walk in walks(X, y, 6):
        r = post(gw, "contain", key, walk)
        assert r.status_code == 200
        served_by.append({p["served_by"] for p in r.json()["predictions"]})
    assert served_by[0] == {"model"} and served_by[-1] == {"fallback"}
    with transaction(world.settings) as s:
        dep = deps.get(s, "contain")
        assert dep.mode == "fallback"
        inc = s.execute(select(Incident).where(Incident.deployment_id == dep.id)).scalar_one()
        assert inc.classification == "suspected-attack" and inc.state == "contained"
        assert s.execute(select(AuditEvent).where(AuditEvent.action == "deployment.mode",
                                                  AuditEvent.subject == "deployment:contain")).first()


KEY = object()  # stands for the client's valid key
BAD = [
    # (API key, body (JSON value or raw bytes), extra headers, status, words in the message)
    (None, {"inputs": [[0.0] * 64]}, {}, 401, "missing API key"),
    ("rk_wrong", {"inputs": [[0.0] * 64]}, {}, 401, "not valid"),
    (KEY, {"inputs": [[0.0] * 10]}, {}, 422, "shape"),
    (KEY, {"inputs": [[0.5] * 63 + ["x"]]}, {}, 422, "numbers only"),
    (KEY, {"inputs": [[True] * 64]}, {}, 422, "numbers only"),
    (KEY, {"inputs": [[0.0] * 64, [0.0] * 3]}, {}, 422, "different lengths"),
    (KEY, {"inputs": []}, {}, 422, "non-empty"),
    (KEY, {"inputs": [0.0] * 64}, {}, 422, "list of rows"),
    (KEY, {"inputs": [[2.0] * 64]}, {}, 422, "valid range"),
    (KEY, {"inputs": [[0.0] * 64] * 300}, {}, 422, "at most 256"),
    (KEY, {"inputs": [[0.0] * 64], "rows": [{}]}, {}, 422, "either"),
    (KEY, {"inputs": [[0.0] * 64], "extra": 1}, {}, 422, "unknown field"),
    (KEY, {"inputs": [[0.0] * 64], "request_id": "x" * 65}, {}, 422, "request_id"),
    (KEY, b'{"inputs": [[NaN' + b", 0.0" * 63 + b"]]}", {}, 422, "NaN"),
    (KEY, b'{"inputs": [[Infinity' + b", 0.0" * 63 + b"]]}", {}, 422, "Infinity"),
    (KEY, b'{"inputs": [[1e999' + b", 0.0" * 63 + b"]]}", {}, 422, "NaN or infinite"),
    (KEY, b'{"inputs": [[0.0,', {}, 400, "not valid JSON"),
    (KEY, b"[1, 2, 3]", {}, 400, "JSON object"),
    (KEY, b"", {}, 400, "empty"),
    (KEY, b'{"inputs": []}', {"Content-Type": "text/plain"}, 415, "not JSON"),
    (KEY, b"[" * 100_000, {}, 400, "not valid JSON"),
    (KEY, b" " * 1_100_000, {}, 413, "limit"),
]


def test_bad_requests_get_a_clear_4xx_and_are_never_logged(world, gw):  # type: ignore[no-untyped-def]
    key = world.key("strict", "alice")
    good = world.parts["X_live"][:3]
    assert post(gw, "strict", key, good).status_code == 200
    before = logged(world, "strict")
    for auth, body, extra, status, words in BAD:
        headers = {"Content-Type": "application/json"}
        if auth is not None:
            headers["X-API-Key"] = key if auth is KEY else auth
        headers.update(extra)
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = gw.post("/v1/deployments/strict/predict", content=content, headers=headers)
        assert r.status_code == status, (words, r.status_code, r.text)
        detail = r.json()["detail"]
        assert words in detail and "\n" not in detail, (words, detail)
    # a chunked body with no Content-Length is cut off at the limit too
    chunks = (b" " * 65536 for _ in range(20))
    r = gw.post("/v1/deployments/strict/predict", content=chunks,
                headers={"X-API-Key": key, "Content-Type": "application/json"})
    assert r.status_code == 413
    r = gw.post("/v1/deployments/nowhere/predict", json={"inputs": [[0.0] * 64]}, headers={"X-API-Key": key})
    assert r.status_code == 404 and "unknown deployment 'nowhere'" in r.json()["detail"]
    r = gw.post("/v1/deployments/strict/predict", json={"inputs": [[0.0] * 64]},
                headers={"X-API-Key": world.key("clean", "alice")})  # a key of another deployment
    assert r.status_code == 401
    assert logged(world, "strict") == before  # nothing refused was logged
    assert post(gw, "strict", key, good).status_code == 200  # and the server keeps serving
    assert logged(world, "strict") == before + 3
    metrics = gw.get("/metrics").text
    for code in ("400", "401", "413", "415", "422"):
        assert f'code="{code}",deployment="strict"' in metrics


def test_every_prediction_served_is_logged_exactly_once(world, gw):  # type: ignore[no-untyped-def]
    X = world.parts["X_live"]
    served: list[tuple[str, int, int]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        import httpx

        rng = np.random.default_rng(n)
        with httpx.Client(base_url=str(gw.base_url), timeout=60) as c:
            for k in range(25):
                rows = int(rng.integers(1, 4))
                start = int(rng.integers(0, len(X) - rows))
                rid = f"c{n}-{k}"
                r = post(c, "busy", world.key("busy", f"c{n}"), X[start:start + rows], request_id=rid)
                with lock:
                    if r.status_code != 200:
                        errors.append(r.text)
                        continue
                    for row, p in enumerate(r.json()["predictions"]):
                        served.append((rid, row, p["id"]))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = [i for _, _, i in served]
    assert len(ids) == len(set(ids))
    with transaction(world.settings) as s:
        dep = deps.get(s, "busy")
        rows = s.execute(select(PredictionLog.id, PredictionLog.request_id, PredictionLog.row)
                         .where(PredictionLog.deployment_id == dep.id)).all()
    assert sorted((rid, row, i) for i, rid, row in rows) == sorted(served)
    with transaction(world.settings) as s:
        # the writer's fast SQLite path stores values exactly as SQLAlchemy's own inserts do
        stored = s.execute(text("SELECT created_at, output, routed_to_review FROM prediction_logs "
                                "WHERE id = :i"), {"i": ids[0]}).one()
        log = s.get(PredictionLog, ids[0])
        assert "+" not in stored[0] and json.loads(stored[1]) == log.output and stored[2] in (0, 1)
        assert log.created_at.tzinfo is None or log.created_at.utcoffset().total_seconds() == 0


def test_events_from_a_model_served_elsewhere_are_logged_and_watched(world, gw):  # type: ignore[no-untyped-def]
    X, y = world.parts["X_live"][:200], world.parts["y_live"][:200]
    key = {"X-API-Key": world.key("events", "batch")}
    with transaction(world.settings) as s:
        classes = deps.get(s, "events").config["classes"]
    # the model elsewhere predicts y, but the labels that arrive later disagree on 40%:
    # concept drift (or poisoned feedback)
    labels = [str((v + 1) % 10) if k % 5 < 2 else str(v) for k, v in enumerate(y)]
    events = [{"inputs": X[k].tolist(), "prediction": classes[int(y[k])], "confidence": 0.9,
               "label": labels[k]} for k in range(len(X))]
    bad = gw.post("/v1/deployments/events/events", headers=key,
                  json={"events": [{"inputs": X[0].tolist(), "prediction": "ten"}]})
    assert bad.status_code == 422 and "not a class" in bad.json()["detail"]
    assert logged(world, "events") == 0
    r = gw.post("/v1/deployments/events/events", headers=key, json={"events": events})
    assert r.status_code == 200 and r.json()["logged"] == 200
    assert logged(world, "events") == 200
    kinds = {a.kind for a in alerts_of(world, "events")}
    assert "performance-drift" in kinds


def test_metrics_are_prometheus_text_with_riskloop_names(world, gw):  # type: ignore[no-untyped-def]
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name for f in text_string_to_metric_families(gw.get("/metrics").text)}
    for name in ("riskloop_requests", "riskloop_request_latency_seconds", "riskloop_alerts",
                 "riskloop_predictions", "riskloop_feature_drift_psi", "riskloop_deployment_mode",
                 "riskloop_watchdog_calibrated_fpr", "riskloop_stage_latency_seconds"):
        assert name in families, name
    assert all(n.startswith("riskloop_") for n in families)
    health = gw.get("/healthz").json()
    assert health["status"] == "ok" and health["deployments"]["clean"]["mode"] == "active"
