"""The human review queue: routing by confidence, `riskloop review list | decide`, labels
fed back for performance drift, and a queue that survives a restart of the gateway."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from riskloop.cli.app import app
from riskloop.monitor import deployments as deps
from riskloop.monitor.outcomes import PerformanceDrift
from riskloop.monitor.review import labelled_predictions
from riskloop.store.db import transaction
from riskloop.store.models import AuditEvent, PredictionLog, ReviewItem

from .test_gateway_support import make_world, post, running_server


def blends(X: np.ndarray, y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        i, j = rng.integers(0, len(X), 2)
        if y[i] != y[j]:
            out.append(0.5 * X[i] + 0.5 * X[j])
    return np.asarray(out, dtype=np.float32)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    saved = dict(os.environ)
    w = make_world(tmp_path_factory.mktemp("review"), tmp_path_factory.getbasetemp())
    w.deploy("rv", clients=("alice",))
    X, y = w.parts["X_live"], w.parts["y_live"]
    with running_server(w.settings) as gw:
        for k in range(3):
            rows = np.concatenate([blends(X, y, 10, seed=k), X[20 * k:20 * k + 10]])
            assert post(gw, "rv", w.key("rv", "alice"), rows).status_code == 200
    yield w
    os.environ.clear()
    os.environ.update(saved)


def cli(world, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--workspace", str(world.path), *args], env=world.env)


def open_items(world) -> list[dict]:  # type: ignore[no-untyped-def]
    res = cli(world, "review", "list", "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_only_predictions_below_the_threshold_are_queued(world):  # type: ignore[no-untyped-def]
    with transaction(world.settings) as s:
        below = deps.get(s, "rv").config["policy"]["review_below"]
        logs = s.execute(select(PredictionLog)).scalars().all()
        queued = {i.prediction_log_id for i in s.execute(select(ReviewItem)).scalars()}
    assert queued and len(queued) < len(logs)
    for log in logs:
        assert (log.id in queued) == (log.confidence < below) == log.routed_to_review


def test_review_list_and_decide(world):  # type: ignore[no-untyped-def]
    items = open_items(world)
    assert items and all(i["status"] == "open" and i["deployment"] == "rv" for i in items)
    first = items[0]
    assert first["confidence"] < 0.6 and first["model_answer"] in [str(d) for d in range(10)]
    table = cli(world, "review", "list")
    assert table.exit_code == 0 and "Review queue" in table.output
    res = cli(world, "review", "decide", str(first["id"]), "--label", "3", "--note", "looks like a 3")
    assert res.exit_code == 0 and "decided as '3'" in res.output
    with transaction(world.settings) as s:
        item = s.get(ReviewItem, first["id"])
        assert item.status == "decided" and item.reviewer == "tester" and item.label == "3"
        assert item.prediction.label == "3"  # fed back onto the prediction log
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "review.decide")).scalars().all()[-1]
        assert ev.payload["item_id"] == first["id"] and ev.payload["label"] == "3"
    assert first["id"] not in {i["id"] for i in open_items(world)}
    decided = json.loads(cli(world, "review", "list", "--status", "decided", "--json").output)
    assert [d["id"] for d in decided] == [first["id"]]


@pytest.mark.parametrize("args, words", [
    (["decide", "ITEM", "--label", "eleven"], ["not an answer of deployment 'rv'", "0, 1, 2"]),
    (["decide", "ITEM", "--label", " "], ["--label is empty"]),
    (["decide", "99999", "--label", "1"], ["unknown review item 99999"]),
    (["list", "--status", "someday"], ["unknown review status"]),
    (["list", "--deployment", "nowhere"], ["unknown deployment 'nowhere'"]),
])
def test_review_mistakes_are_one_line_errors(world, args, words):  # type: ignore[no-untyped-def]
    item = str(open_items(world)[0]["id"])
    res = cli(world, "review", *[item if a == "ITEM" else a for a in args])
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert line.startswith("error: ") and "\n" not in line
    assert all(w in line for w in words), line


def test_a_decision_is_final(world):  # type: ignore[no-untyped-def]
    item = str(open_items(world)[0]["id"])
    assert cli(world, "review", "decide", item, "--label", "1").exit_code == 0
    res = cli(world, "review", "decide", item, "--label", "2")
    assert res.exit_code == 2 and "already decided by tester as '1'" in res.output


def test_reviewer_labels_feed_performance_drift(world):  # type: ignore[no-untyped-def]
    with transaction(world.settings) as s:
        dep = deps.get(s, "rv")
        reference = dep.config["outcomes"]["performance"]
    # reviewers overrule the model on every remaining queued input
    for item in open_items(world):
        wrong = str((int(item["model_answer"]) + 1) % 10)
        assert cli(world, "review", "decide", str(item["id"]), "--label", wrong).exit_code == 0
    with transaction(world.settings) as s:
        data = labelled_predictions(s, deps.get(s, "rv").id)
    assert len(data["label"]) == len(data["predicted"]) >= 10
    result = PerformanceDrift.from_dict(reference).run(data["label"], data["predicted"])
    assert result.drifted and result.accuracy_cur < result.accuracy_ref


def test_the_queue_and_modes_survive_a_gateway_restart(world):  # type: ignore[no-untyped-def]
    assert cli(world, "deployment", "rules", "rv", str(world.path / "rules.yaml")).exit_code == 0
    with running_server(world.settings) as gw:
        X, y = world.parts["X_live"], world.parts["y_live"]
        r = post(gw, "rv", world.key("rv", "alice"), blends(X, y, 5, seed=9)).json()
        queued = [p["review"]["id"] for p in r["predictions"] if "review" in p]
        assert queued
        assert cli(world, "deployment", "mode", "rv", "shadow").exit_code == 0
    before = {i["id"] for i in open_items(world)}
    assert set(queued) <= before
    with running_server(world.settings) as gw:  # a new process would see the same store
        assert gw.get("/healthz").json()["deployments"]["rv"]["mode"] == "shadow"
        r = post(gw, "rv", world.key("rv", "alice"), X[300:303]).json()
        assert {p["served_by"] for p in r["predictions"]} == {"fallback"}
    assert {i["id"] for i in open_items(world)} == before
