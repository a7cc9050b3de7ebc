"""Adversarial training (PGD / TRADES) and defensive distillation on load_digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from riskloop import InputError
from riskloop.assess.evasion.gradient import PGD
from riskloop.demo import digits
from riskloop.mitigate import AdversarialTraining, DefensiveDistillation
from riskloop.mitigate.base import accuracy, predict_logits
from riskloop.targets.torch_target import TorchTarget

EPS = 0.1  # about 1.6 grey levels of the 17-level digits

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py



@pytest.fixture(scope="module")
def setup():
    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=0)
    module, spec = digits.train_digits_cnn(X_tr, y_tr, random_state=0, epochs=15)
    return module, spec, X_tr, y_tr, X_te[:300], y_te[:300]


def robust_accuracy(module, spec, X, y, eps=EPS):
    res = PGD(eps=eps, steps=20, random_state=1).run(TorchTarget.from_spec(module, spec), X, y)
    return res.metrics["robust_accuracy"]


def test_pgd_adversarial_training_raises_robust_accuracy_by_a_clear_margin(setup):
    module, spec, X_tr, y_tr, X_te, y_te = setup
    before = robust_accuracy(module, spec, X_te, y_te)
    at = AdversarialTraining(method="pgd", eps=EPS, steps=5, epochs=6, random_state=0)
    res = at.run(module, spec, X_tr, y_tr)
    after = robust_accuracy(res.module, spec, X_te, y_te)
    assert after >= before + 0.15, (before, after)
    assert accuracy(res.module, X_te, y_te) > 0.9  # the clean cost stays small
    assert res.metrics["eps"] == EPS and res.params["method"] == "pgd"
    # the parent is untouched (a new model, never an in-place edit)
    assert robust_accuracy(module, spec, X_te, y_te) == before


def test_trades_raises_robust_accuracy(setup):
    module, spec, X_tr, y_tr, X_te, y_te = setup
    before = robust_accuracy(module, spec, X_te, y_te)
    res = AdversarialTraining(method="trades", eps=EPS, steps=5, epochs=4, beta=6.0,
                              random_state=0).run(module, spec, X_tr, y_tr)
    after = robust_accuracy(res.module, spec, X_te, y_te)
    assert after >= before + 0.1, (before, after)
    assert res.metrics["beta"] == 6.0


def test_adversarial_training_is_deterministic_for_a_seed(setup):
    module, spec, X_tr, y_tr, _X_te, _y_te = setup
    idx = np.arange(256)
    runs = [AdversarialTraining(eps=EPS, steps=2, epochs=1, random_state=7)
            .run(module, spec, X_tr[idx], y_tr[idx]).module for _ in range(2)]
    for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_distillation_student_is_served_at_t1_with_sharpened_outputs(setup):
    module, spec, X_tr, y_tr, X_te, y_te = setup
    dist = DefensiveDistillation(temperature=20, epochs=6, lr=3e-3, random_state=0)
    res = dist.run(module, spec, X_tr, y_tr)
    assert accuracy(res.module, X_te, y_te) > 0.85
    assert res.metrics["student_teacher_agreement"] > 0.9
    # trained at T=20 and served at T=1: logits are an order of magnitude larger
    z_student = np.abs(predict_logits(res.module, X_te)).max(axis=1).mean()
    z_plain = np.abs(predict_logits(module, X_te)).max(axis=1).mean()
    assert z_student > 3 * z_plain
    assert dist.teacher_accuracy_ > 0.85


def test_bad_options_are_refused(setup):
    module, spec, X_tr, y_tr, _X_te, _y_te = setup
    with pytest.raises(InputError, match="pgd or trades"):
        AdversarialTraining(method="fast").run(module, spec, X_tr, y_tr)
    with pytest.raises(InputError, match="bad eps"):
        AdversarialTraining(eps=-1).run(module, spec, X_tr, y_tr)
    with pytest.raises(InputError, match="bad init"):
        AdversarialTraining(init="other").run(module, spec, X_tr, y_tr)
    with pytest.raises(InputError, match="temperature"):
        DefensiveDistillation(temperature=0).run(module, spec, X_tr, y_tr)
    with pytest.raises(InputError, match="expects"):
        AdversarialTraining().run(module, spec, X_tr[:, :, :4, :], y_tr)
    with pytest.raises(InputError, match="class indices"):
        AdversarialTraining().run(module, spec, X_tr, y_tr + 10)


def test_tabular_adversarial_training_uses_the_suites_standard_deviation_units():
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    from riskloop.assess.evasion.evaluate import feature_scale
    from riskloop.mitigate.base import start_module, train
    from riskloop.targets.torchspec import module_to_spec

    d = load_breast_cancer()
    X = d.data.astype(np.float32)
    X_tr, X_te, y_tr, y_te = train_test_split(X, d.target, test_size=0.3, random_state=0,
                                              stratify=d.target)
    spec = module_to_spec(
        [{"type": "Linear", "in_features": 30, "out_features": 32}, {"type": "ReLU"},
         {"type": "Linear", "in_features": 32, "out_features": 2}],
        input_shape=[30], classes=["malignant", "benign"], input_range=(None, None),
        normalization={"mean": X_tr.mean(0).tolist(), "std": X_tr.std(0).tolist()},
    )
    plain = start_module(None, spec, "scratch", 0)  # type: ignore[arg-type]
    train(plain, X_tr, y_tr, epochs=40, batch_size=32, lr=3e-3, random_state=0)
    at = AdversarialTraining(eps=0.3, steps=5, epochs=15, random_state=0)
    res = at.run(plain, spec, X_tr, y_tr)
    assert res.metrics["eps_units"] == "standard deviations"

    def robust(module):
        target = TorchTarget.from_spec(module, spec)
        target.input_spec = target.input_spec.complete(X_tr)
        scale = feature_scale(target, X_tr)
        out = PGD(eps=0.3, steps=20, random_state=1).attack(target, X_te, y_te, scale=scale)
        correct = target.predict_proba(X_te).argmax(1) == y_te
        return float((correct & ~out.success).mean())

    before, after = robust(plain), robust(res.module)
    assert after >= before + 0.05, (before, after)
