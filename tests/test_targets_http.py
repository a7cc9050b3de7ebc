"""HttpTarget against a real JSON server on 127.0.0.1: budget, retries, label-only, errors."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from riskloop import InputError
from riskloop.targets import ACCESS_LABEL, HttpTarget, InputSpec, QueryBudgetExceeded


def model_app(model: Any, *, classes: list[str], fail_first: int = 0):  # type: ignore[no-untyped-def]
    """A FastAPI app serving ``model.predict_proba`` at /predict and labels at /labels."""
    app = FastAPI()
    state = {"calls": 0}

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        state["calls"] += 1
        if state["calls"] <= fail_first:
            return JSONResponse({"detail": "warming up"}, status_code=503)
        X = np.asarray((await request.json())["inputs"], dtype=np.float32)
        return {"probabilities": model.predict_proba(X).tolist()}

    @app.post("/labels")
    async def labels(request: Request) -> Any:
        X = np.asarray((await request.json())["inputs"], dtype=np.float32)
        return {"predictions": [classes[i] for i in model.predict_proba(X).argmax(1)]}

    app.state.calls = state
    return app


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


@pytest.fixture(scope="module")
def cancer_model():
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    spec = InputSpec(shape=(30,), lower=X.min(0), upper=X.max(0))
    return clf, X, y, spec


def test_http_target_answers_like_the_model_and_counts_queries(cancer_model):
    clf, X, y, spec = cancer_model
    with serve(model_app(clf, classes=["0", "1"])) as base:
        t = HttpTarget(f"{base}/predict", classes=["0", "1"], input_spec=spec, batch_size=64)
        p = t.predict_proba(X[:150])
        np.testing.assert_allclose(p, clf.predict_proba(X[:150]), atol=1e-6)
        assert t.queries == 150 and t.requests == 3
        lt = HttpTarget(f"{base}/labels", classes=["0", "1"], input_spec=spec)
        onehot = lt.predict_proba(X[:20])
        assert lt.access == ACCESS_LABEL
        np.testing.assert_array_equal(onehot.argmax(1), clf.predict(X[:20]))


def test_http_target_budget_is_enforced_before_sending(cancer_model):
    clf, X, y, spec = cancer_model
    app = model_app(clf, classes=["0", "1"])
    with serve(app) as base:
        t = HttpTarget(f"{base}/predict", classes=["0", "1"], input_spec=spec, query_budget=100)
        t.predict_proba(X[:60])
        with pytest.raises(QueryBudgetExceeded, match="query budget of 100 rows"):
            t.predict_proba(X[:60])
        assert t.queries == 60 and t.budget_left == 40
        assert app.state.calls["calls"] == 1


def test_http_target_retries_transient_errors(cancer_model):
    clf, X, y, spec = cancer_model
    app = model_app(clf, classes=["0", "1"], fail_first=2)
    with serve(app) as base:
        t = HttpTarget(f"{base}/predict", classes=["0", "1"], input_spec=spec, retries=2,
                       backoff=0.01)
        assert t.predict_proba(X[:5]).shape == (5, 2)
        assert app.state.calls["calls"] == 3
    app = model_app(clf, classes=["0", "1"], fail_first=10)
    with serve(app) as base:
        t = HttpTarget(f"{base}/predict", classes=["0", "1"], input_spec=spec, retries=1,
                       backoff=0.01)
        with pytest.raises(InputError, match=r"unreachable \(HTTP 503, 2 attempts\)"):
            t.predict_proba(X[:5])


def test_unreachable_and_bad_urls_are_one_clear_error(cancer_model):
    _clf, X, _y, spec = cancer_model
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now
    t = HttpTarget(f"http://127.0.0.1:{port}/predict", classes=["0", "1"], input_spec=spec,
                   retries=1, backoff=0.01, timeout=2)
    with pytest.raises(InputError, match="is unreachable .*start the server or check the URL"):
        t.check_reachable()
    with pytest.raises(InputError, match="bad target URL"):
        HttpTarget("ftp://x", classes=["0"], input_spec=spec)
