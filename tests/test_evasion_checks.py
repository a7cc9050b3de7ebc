"""Self-checks: a sound model passes; randomised outputs and masked gradients are caught and
the run is marked not trustworthy, with a finding that says why."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from riskloop import InputError, Severity
from riskloop.assess.evasion import evaluate_evasion, severity_for_ars
from riskloop.targets import InputSpec, MockTarget

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def digits_flat():
    d = load_digits()
    X, y = (d.data / 16).astype(np.float32), d.target
    spec = InputSpec(shape=(64,), lower=0.0, upper=1.0, kind="image")
    return X[:1000], y[:1000], X[1000:1200], y[1000:1200], spec


def _evaluate(target, X, y):
    return evaluate_evasion(target, X, y, eps=[0.05, 0.1], attacks=["pgd", "square"],
                            overrides={"square": {"queries": 200}})


def test_a_sound_model_passes_every_check(digits_flat):
    X_tr, y_tr, X, y, spec = digits_flat
    res = _evaluate(MockTarget.fit(X_tr, y_tr, input_spec=spec), X, y)
    assert res.trustworthy and res.warnings == []
    assert res.metrics["checks"]["unbounded"]["survivors"] == 0.0
    assert len(res.findings) == 1 and res.findings[0].metric == "ars"
    assert res.findings[0].value == res.metrics["ars"]


def test_randomised_outputs_are_caught(digits_flat):
    X_tr, y_tr, X, y, spec = digits_flat
    res = _evaluate(MockTarget.fit(X_tr, y_tr, input_spec=spec, noise=0.5), X, y)
    assert not res.trustworthy
    assert any("outputs change between identical queries" in w for w in res.warnings)
    assert any("did not verify" in w for w in res.warnings)
    assert res.findings[-1].title == "Robustness evaluation is not trustworthy"
    assert res.findings[-1].severity == Severity.MEDIUM


def test_masked_gradients_are_caught_three_ways(digits_flat):
    X_tr, y_tr, X, y, spec = digits_flat
    sound = _evaluate(MockTarget.fit(X_tr, y_tr, input_spec=spec), X, y)
    masked = _evaluate(MockTarget.fit(X_tr, y_tr, input_spec=spec, mask_gradients=True), X, y)
    text = " | ".join(masked.warnings)
    assert "zero input gradient" in text
    assert "black-box attacks fooled" in text
    assert "survive an attack with eps 1" in text
    assert not masked.trustworthy
    # the white-box attack alone would have reported the masked model as far more robust
    pgd_only = [r for r in masked.metrics["per_attack"] if r["attack"] == "pgd"]
    assert sum(r["fooled"] for r in pgd_only) <= 2
    assert masked.metrics["ars"] < 0.9 and sound.trustworthy


def test_frozen_features_skip_the_unbounded_check(digits_flat):
    X_tr, y_tr, X, y, _ = digits_flat
    frozen = np.zeros(64, dtype=bool)
    frozen[:8] = True
    spec = InputSpec(shape=(64,), lower=0.0, upper=1.0, frozen=frozen, kind="image")
    res = _evaluate(MockTarget.fit(X_tr, y_tr, input_spec=spec), X, y)
    assert res.metrics["checks"]["unbounded"] == {"skipped": "frozen features"}


def test_severity_bands_follow_the_ars():
    assert [severity_for_ars(a) for a in (0.99, 0.9, 0.8, 0.6, 0.2)] == [
        Severity.INFO, Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]
    assert severity_for_ars(0.85) == Severity.LOW and severity_for_ars(0.8499) == Severity.MEDIUM


def test_bad_budgets_and_attack_choices_are_one_clear_error(digits_flat):
    X_tr, y_tr, X, y, spec = digits_flat
    t = MockTarget.fit(X_tr, y_tr, input_spec=spec)
    with pytest.raises(InputError, match=r"eps 1.5 is out of range: linf budgets .* \(0, 1\]"):
        evaluate_evasion(t, X, y, eps=[0.1, 1.5])
    with pytest.raises(InputError, match="unknown attack 'cw'"):
        evaluate_evasion(t, X, y, attacks=["cw"])
    with pytest.raises(InputError, match="same norm"):
        evaluate_evasion(t, X, y, attacks=["pgd", "square"], overrides={"pgd": {"norm": "l2"}})
