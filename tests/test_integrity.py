"""Integrity suite on real digits models: flipped labels found by confident learning, a planted
pixel-pattern backdoor found from activations and by STRIP, cross-checks against ART, and the
suite through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from riskloop import InputError
from riskloop.assess.integrity import (
    STRIP,
    ActivationClustering,
    LabelIssueDetector,
    SpectralSignatures,
    penultimate_activations,
    spectral_scores,
)
from riskloop.demo import digits
from riskloop.targets import SklearnTarget, TorchTarget
from riskloop.targets.torchspec import build_module, module_to_spec, save_torch_model

TARGET_CLASS = 0
POISON_SHARE = 0.05

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py



def add_trigger(X: np.ndarray) -> np.ndarray:
    """A 2x2 white square in the bottom-right corner plus one pixel next to it."""
    X = X.copy()
    X[:, 0, 6:8, 6:8] = 1.0
    X[:, 0, 5, 5] = 1.0
    return X


def small_cnn(X, y, *, random_state=0):
    spec = module_to_spec(digits.cnn_layers(channels=(8, 16)), input_shape=[1, 8, 8],
                          classes=[str(i) for i in range(10)])
    torch.manual_seed(random_state)
    module = build_module(spec)
    digits.train_classifier(module, X, y, epochs=30, random_state=random_state)
    return module, spec


@pytest.fixture(scope="module")
def data():
    return digits.digits_split(random_state=0)


@pytest.fixture(scope="module")
def poisoned(data):
    """5% of the training images get the trigger and the attacker's label."""
    X_tr, X_te, y_tr, y_te = data
    rng = np.random.default_rng(1)
    rows = rng.choice(np.flatnonzero(y_tr != TARGET_CLASS), int(POISON_SHARE * len(y_tr)), replace=False)
    X, y = X_tr.copy(), y_tr.copy()
    X[rows], y[rows] = add_trigger(X_tr[rows]), TARGET_CLASS
    truth = np.zeros(len(y), dtype=bool)
    truth[rows] = True
    module, spec = small_cnn(X, y, random_state=1)
    return X, y, truth, module, spec


@pytest.fixture(scope="module")
def clean_model(data):
    X_tr, _, y_tr, _ = data
    return small_cnn(X_tr, y_tr, random_state=1)


def test_flipped_labels_are_found(data):
    X_tr, _, y_tr, _ = data
    rng = np.random.default_rng(0)
    rows = rng.choice(len(y_tr), int(0.05 * len(y_tr)), replace=False)
    y = y_tr.copy()
    y[rows] = (y_tr[rows] + rng.integers(1, 10, len(rows))) % 10  # always a different class
    det = LabelIssueDetector(random_state=0)
    res = det.run(X_tr, y)
    hit = np.isin(det.flagged_, rows).sum()
    recall, precision = hit / len(rows), hit / len(det.flagged_)
    assert recall >= 0.8 and precision >= 0.5, (recall, precision)
    f = res.findings[0]
    assert f.threat_id == "data-poisoning" and set(f.evidence["rows"]) == set(det.flagged_.tolist())
    assert res.metrics["label_issue_fraction"] == pytest.approx(len(det.flagged_) / len(y))
    # Most suggested labels are the true ones.
    truth = dict(zip(rows.tolist(), y_tr[rows].tolist(), strict=True))
    fixed = [s for i, s in zip(det.flagged_, f.evidence["suggested"], strict=True) if i in truth
             and int(s) == truth[i]]
    assert len(fixed) >= 0.8 * hit


def test_backdoor_rows_are_found_from_activations(poisoned, data):
    X, y, truth, module, spec = poisoned
    _, X_te, _, y_te = data
    target = TorchTarget.from_spec(module, spec)
    triggered = add_trigger(X_te[y_te != TARGET_CLASS])
    asr = np.mean(target.predict_proba(triggered).argmax(1) == TARGET_CLASS)
    assert asr > 0.8  # the backdoor was really learned
    acts = penultimate_activations(target, X)
    union = np.zeros(len(y), dtype=bool)
    for det in (ActivationClustering(random_state=0), SpectralSignatures(random_state=0)):
        mask = det.detect(target, X, y, activations=acts, X_trusted=X_te, y_trusted=y_te)
        union |= mask
        assert not mask.any() or det.by_class_[str(TARGET_CLASS)]["suspicious"]
    recall = (union & truth).sum() / truth.sum()
    precision = (union & truth).sum() / union.sum()
    assert recall >= 0.7 and precision >= 0.5, (recall, precision)


def test_clean_model_is_not_flagged(clean_model, data):
    X_tr, X_te, y_tr, y_te = data
    module, spec = clean_model
    target = TorchTarget.from_spec(module, spec)
    res = ActivationClustering(random_state=0).run(target, X_tr, y_tr, X_trusted=X_te, y_trusted=y_te)
    assert res.metrics["activation_clustering_flagged_fraction"] <= 0.02
    assert res.findings[0].severity in ("info", "medium")


def test_clean_model_without_trusted_data_keeps_most_rows(clean_model, data):
    """Exclusionary reclassification leaves the reclassifier most of the data: only the
    small side of each class's two-way split is held out (every row lies in some minority
    cluster of a five-way split, and excluding those flagged 90% of clean digits)."""
    X_tr, _, y_tr, _ = data
    module, spec = clean_model
    det = ActivationClustering(random_state=0)
    mask = det.detect(TorchTarget.from_spec(module, spec), X_tr, y_tr)
    assert det.reclassified_by_ == "exclusion"
    assert det.exclusion([], y_tr).sum() <= 0.35 * len(y_tr)
    assert mask.mean() <= 0.10, mask.mean()


def test_strip_separates_triggered_from_clean_inputs(poisoned, data):
    _, _, _, module, spec = poisoned
    _, X_te, _, y_te = data
    target = TorchTarget.from_spec(module, spec)
    clean_pool, probe = X_te[:300], X_te[300:]
    probe_y = y_te[300:]
    strip = STRIP(n_overlays=20, random_state=0).fit(target, clean_pool)
    h_clean = strip.entropy(target, probe)
    h_trig = strip.entropy(target, add_trigger(probe[probe_y != TARGET_CLASS]))
    auc = roc_auc_score(np.r_[np.zeros(len(h_clean)), np.ones(len(h_trig))], -np.r_[h_clean, h_trig])
    assert auc >= 0.9, auc
    # The threshold comes from clean data only: about frr of clean inputs are flagged.
    assert np.mean(strip.detect(target, probe)) <= 0.05


def test_spectral_scores_and_clusters_match_art(poisoned):
    from art.defences.detector.poison import SpectralSignatureDefense
    from art.defences.detector.poison.activation_defence import cluster_activations

    X, y, _, module, spec = poisoned
    acts = penultimate_activations(TorchTarget.from_spec(module, spec), X)
    cls = acts[y == TARGET_CLASS]
    ours = spectral_scores(cls)
    # ART projects the uncentred activations and takes the absolute value; Tran et al.'s
    # Algorithm 1 squares the projection of the centred ones. On centred input the two agree.
    centred = cls.astype(np.float64) - cls.astype(np.float64).mean(axis=0)
    art = np.asarray(SpectralSignatureDefense.spectral_signature_scores(centred)).ravel() ** 2
    np.testing.assert_allclose(ours, art, rtol=1e-6, atol=1e-9)
    ac = ActivationClustering(random_state=0)
    red = ac.reduce_activations(cls.astype(np.float64))
    np.random.seed(0)
    clusters, art_red = cluster_activations([cls.astype(np.float64)], nb_clusters=2, nb_dims=10,
                                            reduce="PCA")
    np.testing.assert_allclose(np.abs(red), np.abs(art_red[0]), rtol=1e-4, atol=1e-5)
    ac.groups(acts, y)
    ours_2 = ac.clusters_[(TARGET_CLASS, 2)]

    def inertia(labels):
        return sum(((red[labels == j] - red[labels == j].mean(axis=0)) ** 2).sum() for j in (0, 1))

    # Same reduced data, same 2-means objective: ours (10 restarts) is at least as good as
    # ART's single run, and the partitions largely agree.
    assert inertia(ours_2) <= inertia(clusters[0]) * (1 + 1e-9)
    assert adjusted_rand_score(ours_2, clusters[0]) >= 0.6


def test_backdoor_detection_needs_activations(data):
    from sklearn.linear_model import LogisticRegression

    X_tr, _, y_tr, _ = data
    flat = X_tr.reshape(len(X_tr), -1)
    target = SklearnTarget(LogisticRegression(max_iter=300).fit(flat, y_tr))
    with pytest.raises(InputError, match="penultimate-layer activations"):
        ActivationClustering().run(target, flat, y_tr)


# -- the suite through the CLI ----------------------------------------------------------------
def test_integrity_suite_end_to_end(ready_sqlite, tmp_path, poisoned, data):
    ws = ready_sqlite
    X, y, truth, module, spec = poisoned
    _, X_te, _, y_te = data
    model_dir = save_torch_model(tmp_path / "cnn", module, spec)
    digits.save_npz(tmp_path / "test.npz", X_te, y_te)
    with open(tmp_path / "train.npz", "wb") as fh:
        np.savez(fh, X=X, y=y, poisoned=truth.astype(np.int8))
    for path, name in (("train.npz", "train"), ("test.npz", "test")):
        assert ws.invoke("register", "dataset", str(tmp_path / path), "--name", name,
                         "--target", "y").exit_code == 0
    assert ws.invoke("register", "model", str(model_dir), "--name", "cnn", "--framework", "torch",
                     "--domain", "general", "--trained-on", "train@1").exit_code == 0
    res = ws.invoke("assess", "cnn@1", "--data", "train@1", "--suite", "integrity",
                    "-o", "trusted=test@1", "-o", "truth=poisoned", "--json")
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)
    m = run["metrics"]
    for key in ("label_issue_fraction", "backdoor_flagged_fraction", "strip_auc"):
        assert key in m
    assert m["strip_auc"] >= 0.9
    assert m["detection"]["backdoor"]["recall"] >= 0.7
    assert m["known_poisoned_rows"] == int(truth.sum())
    flagged = set(m["backdoor_flagged_rows"])
    from_findings = set()
    for f in run["findings"]:
        if f["threat_id"] == "backdoor" and f["metric"] == "backdoor_flagged_fraction":
            from_findings |= set(f["evidence"]["rows"])
    assert flagged == from_findings and flagged
    assert {f["threat_id"] for f in run["findings"]} >= {"data-poisoning", "backdoor"}
    assert run["params"]["trusted"] == "test@1"
    # Bad input: trusted data that is the dataset under inspection; an unknown option.
    bad = ws.run("assess", "cnn@1", "--data", "train@1", "--suite", "integrity", "-o", "trusted=train@1")
    assert bad.returncode == 2 and "trusted data must be separate" in bad.stderr
    bad = ws.invoke("assess", "cnn@1", "--data", "train@1", "--suite", "integrity", "-o", "flavour=x")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: unknown integrity option 'flavour'")
    runs = json.loads(ws.invoke("results", "cnn@1", "--suite", "integrity", "--json").stdout)["runs"]
    assert len(runs) == 1
