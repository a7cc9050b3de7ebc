"""Fairness suite: Fairlearn's own numbers, a skewed model flagged, a balanced one not,
the suite end to end through the CLI, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklego.datasets import load_arrests

from riskloop import InputError
from riskloop.assess.fairness import MSG_NO_SENSITIVE, FairnessAudit
from riskloop.findings import Severity
from riskloop.targets import SklearnTarget

FLAGGED = (Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


@pytest.fixture(scope="module")
def arrests():
    """scikit-lego's arrests data (offline): numeric features, colour as the sensitive attribute."""
    df = load_arrests(as_frame=True)
    X = np.c_[df.year - 2000, df.age, df.employed == "Yes", df.citizen == "Yes", df.checks].astype(np.float32)
    y = (df.released == "Yes").to_numpy().astype(np.int64)
    group = df.colour.to_numpy().astype(str)
    return train_test_split(X, y, group, test_size=0.4, random_state=0, stratify=y)


def skew(y, group, *, share: float, random_state: int = 0):
    """Flip ``share`` of the favourable labels of Black defendants: historically biased data."""
    rng = np.random.default_rng(random_state)
    y = y.copy()
    idx = np.flatnonzero((group == "Black") & (y == 1))
    y[rng.choice(idx, int(share * len(idx)), replace=False)] = 0
    return y


def with_group(X, group):
    return np.c_[X, (group == "Black").astype(np.float32)]


def test_numbers_equal_fairlearns_own_functions(arrests):
    X_tr, X_te, y_tr, y_te, g_tr, g_te = arrests
    clf = LogisticRegression(max_iter=2000).fit(with_group(X_tr, g_tr), skew(y_tr, g_tr, share=0.3))
    pred = clf.predict(with_group(X_te, g_te))
    audit = FairnessAudit()
    res = audit.evaluate(y_te, pred, pd.DataFrame({"colour": g_te}))
    m = res.metrics
    labels = np.array([f"colour={g}" for g in g_te])
    assert m["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y_te, pred, sensitive_features=g_te), abs=1e-12)
    assert m["demographic_parity_ratio"] == pytest.approx(
        demographic_parity_ratio(y_te, pred, sensitive_features=g_te), abs=1e-12)
    assert m["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y_te, pred, sensitive_features=g_te), abs=1e-12)
    mf = MetricFrame(metrics={"sr": selection_rate, "fpr": false_positive_rate,
                              "fnr": false_negative_rate},
                     y_true=y_te, y_pred=pred, sensitive_features=labels)
    rows = {r["group"]: r for r in m["by_group"]}
    for g, row in mf.by_group.iterrows():
        assert rows[g]["selection_rate"] == pytest.approx(row["sr"], abs=1e-12)
        assert rows[g]["false_positive_rate"] == pytest.approx(row["fpr"], abs=1e-12)
        assert rows[g]["false_negative_rate"] == pytest.approx(row["fnr"], abs=1e-12)
        assert rows[g]["count"] == int(np.sum(labels == g))
    assert m["fpr_gap"] == pytest.approx(mf.difference()["fpr"], abs=1e-12)
    assert m["fnr_gap"] == pytest.approx(mf.difference()["fnr"], abs=1e-12)
    worst = min(rows.values(), key=lambda r: r["accuracy"])["group"]
    assert m["worst_group"] == worst


def test_skewed_model_is_flagged_and_balanced_model_is_not(arrests):
    X_tr, X_te, y_tr, y_te, g_tr, g_te = arrests
    sens = pd.DataFrame({"colour": g_te})
    skewed = LogisticRegression(max_iter=2000).fit(with_group(X_tr, g_tr), skew(y_tr, g_tr, share=0.3))
    res = FairnessAudit().run(SklearnTarget(skewed), with_group(X_te, g_te), y_te, sensitive=sens)
    assert res.findings[0].severity in FLAGGED
    assert res.metrics["worst_groups"]["selection_rate"] == "colour=Black"
    assert res.metrics["demographic_parity_difference"] > 0.1
    balanced = LogisticRegression(max_iter=2000).fit(X_tr, y_tr)
    res = FairnessAudit().run(SklearnTarget(balanced), X_te, y_te, sensitive=sens)
    assert res.findings[0].severity not in FLAGGED, res.metrics
    assert res.metrics["demographic_parity_difference"] < 0.1


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.sampled_from("abc")),
                min_size=8, max_size=60))
def test_gaps_are_bounded_and_zero_for_identical_groups(rows):
    y, pred, grp = (np.array(c) for c in zip(*rows, strict=True))
    if len(set(grp)) < 2:
        return
    m = FairnessAudit().evaluate(y, pred, pd.DataFrame({"g": grp})).metrics
    assert 0.0 <= m["demographic_parity_difference"] <= 1.0
    ratio = m["demographic_parity_ratio"]
    assert ratio is None or 0.0 <= ratio <= 1.0
    assert ratio is not None or not pred.any()  # undefined only when nobody is selected
    # Every group a copy of the same rows: no gap at all.
    k = len(rows)
    same = FairnessAudit().evaluate(np.r_[y, y], np.r_[pred, pred],
                                    pd.DataFrame({"g": ["x"] * k + ["z"] * k})).metrics
    assert same["demographic_parity_difference"] == 0.0


def test_numeric_attribute_is_binned_and_intersections_are_named():
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({"age": rng.integers(18, 80, n), "sex": rng.choice(["f", "m"], n)})
    y, pred = rng.integers(0, 2, n), rng.integers(0, 2, n)
    res = FairnessAudit(n_bins=2).evaluate(y, pred, frame)
    groups = [r["group"] for r in res.metrics["by_group"]]
    assert len(groups) == 4 and all(g.startswith("age=") and ", sex=" in g for g in groups)
    assert any("quantile bins" in w for w in res.warnings)


def test_multiclass_needs_a_positive_label():
    target = SklearnTarget(LogisticRegression(max_iter=500).fit(np.eye(3).repeat(5, 0),
                                                                  np.arange(3).repeat(5)))
    X = np.eye(3).repeat(4, 0)
    with pytest.raises(InputError, match="pos_label=CLASS"):
        FairnessAudit().run(target, X, np.arange(3).repeat(4), sensitive=["a", "b"] * 6)
    res = FairnessAudit(pos_label="2").run(target, X, np.arange(3).repeat(4), sensitive=["a", "b"] * 6)
    assert res.metrics["positive_label"] == "2"


# -- the suite through the CLI ----------------------------------------------------------------
def _npz(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def test_fairness_suite_end_to_end(ready_sqlite, tmp_path, arrests):
    ws = ready_sqlite
    X_tr, X_te, y_tr, y_te, g_tr, g_te = arrests
    clf = LogisticRegression(max_iter=2000).fit(with_group(X_tr, g_tr), skew(y_tr, g_tr, share=0.3))
    sio.dump(clf, tmp_path / "scorer.skops")
    data = _npz(tmp_path / "arrests-test.npz", X=with_group(X_te, g_te), y=y_te,
                colour=np.where(g_te == "Black", 1, 0))
    plain = _npz(tmp_path / "plain.npz", X=with_group(X_te, g_te), y=y_te)
    assert ws.invoke("register", "dataset", str(data), "--name", "arrests-test", "--target", "y",
                     "--sensitive", "colour").exit_code == 0
    assert ws.invoke("register", "dataset", str(plain), "--name", "plain", "--target", "y").exit_code == 0
    assert ws.invoke("register", "model", str(tmp_path / "scorer.skops"), "--name", "scorer",
                     "--framework", "sklearn", "--domain", "general").exit_code == 0
    res = ws.invoke("assess", "scorer@1", "--data", "arrests-test@1", "--suite", "fairness",
                    "-o", "pos_label=1", "--json")
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)
    m = run["metrics"]
    for key in ("demographic_parity_difference", "demographic_parity_ratio",
                "equalized_odds_difference", "worst_group", "fpr_gap", "by_group"):
        assert key in m
    assert m["worst_groups"]["selection_rate"] == "colour=1"
    assert run["findings"][0]["threat_id"] == "bias-injection"
    assert run["findings"][0]["severity"] in ("medium", "high")
    assert run["dataset_digest"] and run["model_digest"]
    shown = json.loads(ws.invoke("results", "scorer@1", "--json").stdout)
    assert [r["suite"] for r in shown["runs"] if r["suite"] != "supply-chain"] == ["fairness"]
    # Bad input: no sensitive attribute recorded on the dataset.
    bad = ws.run("assess", "scorer@1", "--data", "plain@1", "--suite", "fairness")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: " + MSG_NO_SENSITIVE.format(ref="plain@1")
    bad = ws.invoke("assess", "scorer@1", "--data", "arrests-test@1", "--suite", "fairness",
                    "-o", "sensitive=age")
    assert bad.exit_code == 2 and "not a sensitive attribute" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    # Nothing recorded by the failed runs.
    shown = json.loads(ws.invoke("results", "scorer@1", "--suite", "fairness", "--json").stdout)
    assert len(shown["runs"]) == 1


def test_demo_fairness_step_names_the_disadvantaged_group(sqlite_workspace):
    from riskloop.demo import scenario
    from riskloop.demo.steps_measure import step_fairness

    ctx = scenario.DemoContext(settings=sqlite_workspace.settings)
    list(scenario.step_store(ctx))
    [(title, data)] = list(step_fairness(ctx))
    assert title == "fairness" and data["severity"] == "high"
    assert data["worst_group"] == "colour=Black"
    assert data["demographic_parity_difference"] > 0.1
    shown = json.loads(sqlite_workspace.invoke("results", ctx.refs["fairness_model"], "--suite",
                                               "fairness", "--json").stdout)
    assert shown["runs"][0]["params"]["sensitive"] == ["colour"]
