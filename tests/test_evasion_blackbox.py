"""Black-box attacks against scikit-learn models and a model served over HTTP on 127.0.0.1:
they lower accuracy within their query budgets, and a spent budget is reported honestly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from riskloop import InputError
from riskloop.assess.evasion import HopSkipJump, SquareAttack, evaluate_evasion
from riskloop.targets import ACCESS_LABEL, HttpTarget, InputSpec, SklearnTarget, predict
from tests.test_targets_http import model_app, serve

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X[:400], y[:400])
    spec = InputSpec(shape=(30,), lower=X.min(0), upper=X.max(0))
    return clf, X[400:], y[400:], spec


@pytest.fixture(scope="module")
def digits_svc():
    d = load_digits()
    X, y = (d.data / 16).astype(np.float32), d.target
    svc = LinearSVC(C=0.5, max_iter=5000).fit(X[:1000], y[:1000])
    spec = InputSpec(shape=(64,), lower=0.0, upper=1.0, kind="image")
    return svc, X[1000:1080], y[1000:1080], spec


def test_square_lowers_accuracy_of_a_sklearn_pipeline_within_budget(cancer):
    clf, X, y, spec = cancer
    target = SklearnTarget(clf, input_spec=spec)
    res = evaluate_evasion(target, X, y, eps=[0.5], overrides={"square": {"queries": 300}})
    m = res.metrics
    assert [r["attack"] for r in m["per_attack"]] == ["square"]  # the black-box standard set
    assert m["eps_units"] == "standard deviations per feature"
    assert m["ars"] < m["clean_accuracy"] - 0.2
    row = m["per_attack"][0]
    assert row["queries"] <= 300 * row["attacked"]
    assert row["median_perturbation"] <= 0.5 + 1e-6


def test_hopskipjump_lowers_accuracy_of_a_label_only_model_within_budget(digits_svc):
    svc, X, y, spec = digits_svc
    target = SklearnTarget(svc, input_spec=spec)
    assert target.access == ACCESS_LABEL
    clean = predict(target, X) == y
    for norm, eps in (("l2", 1.5), ("linf", 0.2)):
        attack = HopSkipJump(eps=eps, norm=norm, max_iter=15, queries=1500, init_eval=30,
                             max_eval=100, random_state=0)
        out = attack.attack(target, X[clean], y[clean])
        assert out.queries.max() <= 1500
        assert out.success.mean() > 0.3, norm
        assert np.all(predict(target, out.x_adv[out.success]) != y[clean][out.success])
    with pytest.raises(InputError, match="needs scores, but the model answers labels only"):
        evaluate_evasion(target, X, y, attacks=["square"])
    with pytest.raises(InputError, match="needs gradients"):
        evaluate_evasion(target, X, y, attacks=["pgd"])


def test_square_over_http_against_a_real_server(cancer):
    clf, X, y, spec = cancer
    X, y = X[:60], y[:60]
    with serve(model_app(clf, classes=["0", "1"])) as base:
        remote = HttpTarget(f"{base}/predict", classes=["0", "1"], input_spec=spec,
                            query_budget=20_000)
        res = evaluate_evasion(remote, X, y, eps=[0.5], overrides={"square": {"queries": 150}})
        local = evaluate_evasion(SklearnTarget(clf, input_spec=spec), X, y, eps=[0.5],
                                 overrides={"square": {"queries": 150}})
        assert remote.queries <= 20_000
        assert res.metrics["ars"] < res.metrics["clean_accuracy"] - 0.2
        # the same seeded search over HTTP and in-process finds the same points
        assert res.metrics["ars"] == pytest.approx(local.metrics["ars"], abs=2 / len(X))
        assert res.metrics["per_attack"][0]["queries"] == local.metrics["per_attack"][0]["queries"]

        small = HttpTarget(f"{base}/predict", classes=["0", "1"], input_spec=spec, query_budget=400)
        spent = evaluate_evasion(small, X, y, eps=[0.5], overrides={"square": {"queries": 150}})
        assert small.queries <= 400
        assert not spent.trustworthy
        assert any("query budget" in w for w in spent.warnings)


def test_square_attack_alone_on_images_respects_its_query_count():
    d = load_digits()
    X, y = (d.data / 16).astype(np.float32), d.target
    clf = LogisticRegression(max_iter=500).fit(X[:1000], y[:1000])
    spec = InputSpec(shape=(1, 8, 8), lower=0.0, upper=1.0, kind="image")
    target = SklearnTarget(clf, input_spec=spec)  # flattens (1, 8, 8) images for the estimator
    imgs = X[1000:1100].reshape(-1, 1, 8, 8)
    sq = SquareAttack(eps=0.15, queries=200, random_state=1)
    res = sq.run(target, imgs, y[1000:1100])
    assert res.metrics["robust_accuracy"] < res.metrics["clean_accuracy"] - 0.2
    assert sq.queries_ <= 200 * 100
    assert np.abs(sq.x_adv_ - imgs).max() <= 0.15 + 1e-6
