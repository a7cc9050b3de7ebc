"""FGSM and PGD cross-checked against IBM ART on the same models and data.

ART's attacks judge the final iterate and never stop early; riskloop's ``keep="final"`` mode
does the same and must give the same robust accuracy. riskloop's default mode keeps the first
iterate that fools a point, which may only report the same or a lower robust accuracy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn

from riskloop.assess.evasion import FGSM, PGD
from riskloop.demo import digits
from riskloop.targets import InputSpec, TorchTarget
from riskloop.targets.torchspec import build_module

art = pytest.importorskip("art")
from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent  # noqa: E402
from art.estimators.classification import PyTorchClassifier  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def digits_cnn(one_thread):
    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=0)
    spec = digits.digits_spec()
    spec["layers"] = digits.cnn_layers(channels=(8, 16))
    module = build_module(spec)
    digits.train_classifier(module, X_tr, y_tr, epochs=8, random_state=0)
    X, y = X_te[:200], y_te[:200]
    clf = PyTorchClassifier(module, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8),
                            nb_classes=10, clip_values=(0.0, 1.0))
    return TorchTarget.from_spec(module, spec), clf, X, y


@pytest.fixture(scope="module")
def cancer_mlp(one_thread):
    X, y = load_breast_cancer(return_X_y=True)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 2))
    digits.train_classifier(module, X[:400], y[:400], epochs=40, random_state=0)
    lo, hi = X.min(0), X.max(0)
    clf = PyTorchClassifier(module, loss=nn.CrossEntropyLoss(), input_shape=(30,), nb_classes=2,
                            clip_values=(lo, hi))
    target = TorchTarget(module, input_spec=InputSpec(shape=(30,), lower=lo, upper=hi),
                         classes=["0", "1"])
    return target, clf, X[400:], y[400:]


def _art_robust_accuracy(clf, attack, X, y):
    x_adv = attack.generate(X, y=np.eye(clf.nb_classes)[y])
    return float((clf.predict(x_adv).argmax(1) == y).mean()), x_adv


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.2])
def test_fgsm_matches_art_on_digits(digits_cnn, eps):
    target, clf, X, y = digits_cnn
    ours = FGSM(eps=eps).run(target, X, y).metrics["robust_accuracy"]
    theirs, _ = _art_robust_accuracy(clf, FastGradientMethod(clf, eps=eps, batch_size=256), X, y)
    assert ours == pytest.approx(theirs, abs=1e-12)


@pytest.mark.parametrize("eps,steps", [(0.05, 10), (0.1, 25)])
def test_pgd_matches_art_on_digits_and_first_mode_is_never_weaker(digits_cnn, eps, steps):
    target, clf, X, y = digits_cnn
    final = PGD(eps=eps, steps=steps, random_start=False, keep="final")
    ours = final.run(target, X, y).metrics["robust_accuracy"]
    art_pgd = ProjectedGradientDescent(clf, eps=eps, eps_step=eps / 4, max_iter=steps,
                                       num_random_init=0, batch_size=256, verbose=False)
    theirs, x_art = _art_robust_accuracy(clf, art_pgd, X, y)
    assert ours == pytest.approx(theirs, abs=1e-12)
    # the adversarial images themselves agree on every attacked (clean-correct) point
    attacked = clf.predict(X).argmax(1) == y
    np.testing.assert_allclose(final.x_adv_[attacked], x_art[attacked], atol=1e-6)
    first = PGD(eps=eps, steps=steps, random_start=False).run(target, X, y)
    assert first.metrics["robust_accuracy"] <= ours


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_fgsm_and_pgd_match_art_on_tabular_with_per_feature_bounds(cancer_mlp, eps):
    target, clf, X, y = cancer_mlp
    ours = FGSM(eps=eps).run(target, X, y).metrics["robust_accuracy"]
    theirs, _ = _art_robust_accuracy(clf, FastGradientMethod(clf, eps=eps, batch_size=256), X, y)
    assert ours == pytest.approx(theirs, abs=1e-12)
    pgd = PGD(eps=eps, steps=20, random_start=False, keep="final")
    ours = pgd.run(target, X, y).metrics["robust_accuracy"]
    art_pgd = ProjectedGradientDescent(clf, eps=eps, eps_step=eps / 4, max_iter=20, batch_size=256, verbose=False)
    theirs, _ = _art_robust_accuracy(clf, art_pgd, X, y)
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert ours < target.predict_proba(X).argmax(1).__eq__(y).mean()  # the attack does something
    first = PGD(eps=eps, steps=20, random_start=False).run(target, X, y)
    assert first.metrics["robust_accuracy"] <= ours


def test_l2_pgd_matches_art(digits_cnn):
    target, clf, X, y = digits_cnn
    ours = PGD(eps=1.0, norm="l2", steps=10, random_start=False, keep="final").run(target, X, y)
    art_pgd = ProjectedGradientDescent(clf, norm=2, eps=1.0, eps_step=0.25, max_iter=10, batch_size=256, verbose=False)
    theirs, _ = _art_robust_accuracy(clf, art_pgd, X, y)
    # L2 directions are normalised with slightly different tolerances (1e-12 here, 1e-7 in
    # ART): allow one point of difference
    assert abs(ours.metrics["robust_accuracy"] - theirs) <= 1 / len(X) + 1e-12
