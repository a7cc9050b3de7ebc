"""Extraction suite: fidelity grows with the query budget, probabilities beat labels, ART's
Knockoff Nets agrees, label-only targets, and the suite through the CLI."""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from fastapi import FastAPI, Request
from scipy.stats import spearmanr

from riskloop import InputError
from riskloop.assess.extraction import MSG_BAD_BUDGET, QuerySurrogateExtraction, check_budgets
from riskloop.assess.privacy._fit import TorchLearner, mlp
from riskloop.demo import digits
from riskloop.targets import HttpTarget, InputSpec, SklearnTarget, TorchTarget
from riskloop.targets.torchspec import build_module, module_to_spec, save_torch_model

BUDGETS = (20, 40, 80, 160, 320)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py



@pytest.fixture(scope="module")
def setup():
    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=0)
    flat_tr, flat_te = X_tr.reshape(len(X_tr), -1), X_te.reshape(len(X_te), -1)
    victim = TorchLearner(mlp(64, 10, hidden=128), n_classes=10, epochs=30, random_state=0)
    victim.fit(flat_tr, y_tr)
    target = TorchTarget(victim.module, input_spec=InputSpec(shape=(64,), lower=0.0, upper=1.0),
                         classes=[str(i) for i in range(10)])
    half = len(flat_te) // 2
    ext = QuerySurrogateExtraction(budgets=BUDGETS, architecture="mlp", random_state=0)
    result = ext.run(target, flat_te[:half], flat_te[half:], y_te[half:])
    return target, flat_te[:half], flat_te[half:], y_te[half:], result


def curve(result, mode):
    return [p for p in result.metrics["fidelity_curve"] if p["mode"] == mode]


def test_fidelity_grows_with_the_budget(setup):
    *_, result = setup
    for mode in ("labels", "probabilities"):
        pts = curve(result, mode)
        assert [p["budget"] for p in pts] == list(BUDGETS)
        fid = [p["fidelity"] for p in pts]
        assert fid[-1] >= fid[0] + 0.1, fid
        assert spearmanr(BUDGETS, fid).statistic >= 0.8, fid
        assert all(0.0 <= p["accuracy"] <= 1.0 for p in pts)
    m = result.metrics
    assert m["fidelity_at_max_budget"] == max(p["fidelity"] for p in m["fidelity_curve"]
                                              if p["budget"] == BUDGETS[-1])
    assert m["queries_used"] == BUDGETS[-1] + len(setup[2])
    assert result.findings[0].threat_id == "model-extraction"


def test_probabilities_give_higher_fidelity_than_labels(setup):
    *_, result = setup
    labels = [p["fidelity"] for p in curve(result, "labels")]
    probs = [p["fidelity"] for p in curve(result, "probabilities")]
    assert np.mean(probs) > np.mean(labels), (probs, labels)
    assert np.mean(probs[:2]) > np.mean(labels[:2]), (probs, labels)


def test_knockoff_nets_in_art_reaches_the_same_fidelity(setup):
    from art.attacks.extraction import KnockoffNets
    from art.estimators.classification import PyTorchClassifier

    target, pool, X_test, _y_test, result = setup
    # The victim answers probabilities (Knockoff Nets trains on what the victim returns).
    victim = PyTorchClassifier(model=torch.nn.Sequential(target.module, torch.nn.Softmax(dim=1)),
                               loss=torch.nn.CrossEntropyLoss(), input_shape=(64,), nb_classes=10,
                               clip_values=(0.0, 1.0))
    torch.manual_seed(0)
    np.random.seed(0)
    thief_model = mlp(64, 10, hidden=128)
    thief = PyTorchClassifier(model=thief_model, loss=torch.nn.CrossEntropyLoss(),
                              optimizer=torch.optim.Adam(thief_model.parameters(), lr=1e-3),
                              input_shape=(64,), nb_classes=10, clip_values=(0.0, 1.0))
    budget = 160
    attack = KnockoffNets(classifier=victim, batch_size_fit=32, batch_size_query=256, nb_epochs=40,
                          nb_stolen=budget, sampling_strategy="random", use_probability=True)
    stolen = attack.extract(x=pool, thieved_classifier=thief)
    art_fid = np.mean(stolen.predict(X_test).argmax(1) == target.predict_proba(X_test).argmax(1))
    ours = next(p["fidelity"] for p in curve(result, "probabilities") if p["budget"] == budget)
    assert abs(ours - art_fid) <= 0.1, (ours, art_fid)


def test_label_only_targets_and_bad_budgets(setup):
    from sklearn.svm import LinearSVC

    target, pool, X_test, y_test, _ = setup
    svc = SklearnTarget(LinearSVC().fit(pool, target.predict_proba(pool).argmax(1)))
    res = QuerySurrogateExtraction(budgets=(50, 100), architecture="mlp", epochs=10).run(
        svc, pool, X_test, y_test)
    assert {p["mode"] for p in res.metrics["fidelity_curve"]} == {"labels"}
    assert any("labels only" in w for w in res.warnings)
    for bad in ([0], [-5], [1.5], ["abc"], []):
        with pytest.raises(InputError, match="bad query budget"):
            check_budgets(bad)
    assert check_budgets([200, 50, 50]) == (50, 200)
    res = QuerySurrogateExtraction(budgets=(50, 10_000), architecture="mlp", epochs=5,
                                   modes=("labels",)).run(target, pool, X_test, y_test)
    assert [p["budget"] for p in res.metrics["fidelity_curve"]] == [50]
    assert any("10000" in w for w in res.warnings)
    with pytest.raises(InputError, match="every query budget exceeds"):
        QuerySurrogateExtraction(budgets=(10_000,)).run(target, pool, X_test, y_test)


@contextmanager
def served(model):
    """``model.predict_proba`` as a JSON API on a free loopback port (uvicorn in a thread)."""
    import socket
    import threading
    import time

    import uvicorn

    app, calls = FastAPI(), []

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        rows = np.asarray((await request.json())["inputs"], dtype=np.float32)
        calls.append(len(rows))
        return {"probabilities": model.predict_proba(rows).tolist()}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/predict", calls
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def test_extraction_over_http_respects_the_query_budget():
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    victim = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X_tr, y_tr)
    spec = InputSpec(shape=(30,), lower=X.min(0), upper=X.max(0))
    pool, test, y_test = X_rest[:150], X_rest[150:], y_rest[150:]
    with served(victim) as (url, calls):
        tight = HttpTarget(url, classes=["0", "1"], input_spec=spec, query_budget=100)
        with pytest.raises(InputError, match="endpoint's query budget has 100 left"):
            QuerySurrogateExtraction(budgets=(40, 80)).run(tight, pool, test, y_test)
        assert calls == []  # refused before anything was sent
        target = HttpTarget(url, classes=["0", "1"], input_spec=spec, query_budget=1000)
        res = QuerySurrogateExtraction(budgets=(40, 80), epochs=30, random_state=0).run(
            target, pool, test, y_test)
    assert target.queries == sum(calls) == 80 + len(test)
    assert res.metrics["fidelity_at_max_budget"] >= 0.85
    assert {p["mode"] for p in res.metrics["fidelity_curve"]} == {"labels", "probabilities"}


# -- the suite through the CLI ----------------------------------------------------------------
def test_extraction_suite_end_to_end(ready_sqlite, tmp_path):
    ws = ready_sqlite
    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=0)
    spec = module_to_spec(digits.cnn_layers(channels=(4, 8)), input_shape=[1, 8, 8],
                          classes=[str(i) for i in range(10)])
    torch.manual_seed(0)
    module = build_module(spec)
    digits.train_classifier(module, X_tr, y_tr, epochs=10, random_state=0)
    save_torch_model(tmp_path / "cnn", module, spec)
    digits.save_npz(tmp_path / "test.npz", X_te, y_te)
    assert ws.invoke("register", "dataset", str(tmp_path / "test.npz"), "--name", "test",
                     "--target", "y").exit_code == 0
    assert ws.invoke("register", "model", str(tmp_path / "cnn"), "--name", "cnn", "--framework",
                     "torch", "--domain", "general").exit_code == 0
    res = ws.invoke("assess", "cnn@1", "--data", "test@1", "--suite", "extraction",
                    "-o", "budgets=25,100", "-o", "architecture=mlp", "-o", "epochs=10", "--json")
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)
    m = run["metrics"]
    assert {(p["budget"], p["mode"]) for p in m["fidelity_curve"]} == {
        (25, "labels"), (100, "labels"), (25, "probabilities"), (100, "probabilities")}
    assert 0.0 < m["fidelity_at_max_budget"] <= 1.0 and m["max_budget"] == 100
    assert run["params"]["query_data"] == "half of --data"
    bad = ws.run("assess", "cnn@1", "--data", "test@1", "--suite", "extraction", "-o", "budgets=0")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: " + MSG_BAD_BUDGET.format(budget="0")
    bad = ws.invoke("assess", "cnn@1", "--data", "test@1", "--suite", "extraction", "-o", "modes=logits")
    assert bad.exit_code == 2 and "unknown extraction mode logits" in bad.stderr
    runs = json.loads(ws.invoke("results", "cnn@1", "--suite", "extraction", "--json").stdout)["runs"]
    assert len(runs) == 1
