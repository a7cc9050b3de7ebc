"""DP-SGD training: the epsilon we report is Opacus' accountant's for the same schedule, ghost
clipping gives the same model as per-sample hooks, and the DP model leaks less membership."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from riskloop import InputError
from riskloop.assess.privacy.membership import LossThresholdMIA
from riskloop.demo import digits
from riskloop.mitigate import DPTraining
from riskloop.mitigate.base import accuracy, start_module, train
from riskloop.targets.torch_target import TorchTarget
from riskloop.targets.torchspec import module_to_spec

SMALL = module_to_spec(
    [{"type": "Flatten"}, {"type": "Linear", "in_features": 64, "out_features": 64},
     {"type": "ReLU"}, {"type": "Linear", "in_features": 64, "out_features": 10}],
    input_shape=[1, 8, 8], classes=[str(i) for i in range(10)],
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py



@pytest.fixture(scope="module")
def data():
    return digits.digits_split(random_state=0)


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_reported_epsilon_is_opacus_accountant_for_the_same_schedule(data, accountant):
    from opacus.accountants import create_accountant
    from opacus.accountants.utils import get_noise_multiplier

    X_tr, X_te, y_tr, y_te = data
    dp = DPTraining(epsilon=2.0, delta=1e-5, epochs=3, batch_size=128, lr=5e-3,
                    accountant=accountant, grad_sample_mode="hooks", random_state=0)
    res = dp.run(start_module(None, SMALL, "scratch", 0), SMALL, X_tr, y_tr)  # type: ignore[arg-type]
    m = res.metrics
    assert m["accountant"] == accountant and m["max_grad_norm"] == 1.0
    n_batches = int(np.ceil(len(X_tr) / 128))
    assert m["sample_rate"] == pytest.approx(1 / n_batches)
    assert m["steps"] == 3 * n_batches
    # an independent accountant fed the schedule we report gives the epsilon we report
    acc = create_accountant(accountant)
    acc.history = [(m["noise_multiplier"], m["sample_rate"], m["steps"])]
    assert m["epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-9)
    # the noise is Opacus' own answer for the target, and the target is met
    sigma = get_noise_multiplier(target_epsilon=2.0, target_delta=1e-5,
                                 sample_rate=m["sample_rate"], steps=m["steps"],
                                 accountant=accountant)
    assert m["noise_multiplier"] == pytest.approx(sigma, rel=1e-9)
    assert m["epsilon"] <= 2.0 + 0.02
    assert dp.epsilon_ == m["epsilon"] and dp.steps_ == m["steps"]
    assert accuracy(res.module, X_te, y_te) > 0.3  # it learned something despite the noise


def test_ghost_clipping_trains_the_same_model_as_per_sample_hooks(data):
    X_tr, _X_te, y_tr, _y_te = data
    spec = digits.digits_spec()
    mods = {}
    for mode in ("hooks", "ghost"):
        dp = DPTraining(epsilon=8.0, epochs=1, batch_size=256, grad_sample_mode=mode, random_state=3)
        mods[mode] = dp.run(start_module(None, spec, "scratch", 0), spec, X_tr, y_tr).module  # type: ignore[arg-type]
    for (k, a), b in zip(mods["hooks"].state_dict().items(), mods["ghost"].state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), k


def test_dp_model_leaks_less_membership_than_the_non_private_one(data):
    X_tr, X_te, y_tr, y_te = data
    # a small training set trained long: the non-private model overfits and leaks
    X_m, y_m, X_n, y_n = X_tr[:300], y_tr[:300], X_te[:300], y_te[:300]
    plain = start_module(None, SMALL, "scratch", 0)  # type: ignore[arg-type]
    train(plain, X_m, y_m, epochs=150, batch_size=32, lr=3e-3, random_state=0)
    dp = DPTraining(epsilon=1.0, epochs=30, batch_size=32, lr=5e-3, random_state=0)
    private = dp.run(start_module(None, SMALL, "scratch", 0), SMALL, X_m, y_m).module  # type: ignore[arg-type]
    X = np.concatenate([X_m, X_n])
    y = np.concatenate([y_m, y_n])
    member = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    adv = {}
    for name, mod in (("plain", plain), ("dp", private)):
        mia = LossThresholdMIA()
        res = mia.run(TorchTarget.from_spec(mod, SMALL), X, y, member=member)
        adv[name] = res.metrics["membership_advantage"]
    # 300 vs 300 candidates: chance alone reaches an advantage of ~0.1 (a two-sample KS
    # statistic), so the DP model is compared with the non-private one, not with zero
    assert adv["dp"] < adv["plain"] - 0.05, adv


def test_dp_refuses_what_it_cannot_train(data):
    X_tr, _X_te, y_tr, _y_te = data
    spec = module_to_spec(
        [{"type": "Conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3},
         {"type": "BatchNorm2d", "num_features": 4}, {"type": "Flatten"},
         {"type": "Linear", "in_features": 144, "out_features": 10}],
        input_shape=[1, 8, 8], classes=[str(i) for i in range(10)],
    )
    with pytest.raises(InputError, match="cannot be trained with DP-SGD"):
        DPTraining(epochs=1).run(start_module(None, spec, "scratch", 0), spec, X_tr, y_tr)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="batch_size"):
        DPTraining(batch_size=5000).run(start_module(None, SMALL, "scratch", 0), SMALL, X_tr, y_tr)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown accountant"):
        DPTraining(accountant="moments").run(start_module(None, SMALL, "scratch", 0), SMALL, X_tr, y_tr)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="delta"):
        DPTraining(delta=2.0).run(start_module(None, SMALL, "scratch", 0), SMALL, X_tr, y_tr)  # type: ignore[arg-type]
