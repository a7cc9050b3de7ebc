"""Property tests: adversarial examples stay in the eps ball and the valid range, frozen
features never move, and a stronger attack never reports a higher robust accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskloop.assess.evasion import (
    APGD,
    FGSM,
    PGD,
    HopSkipJump,
    RobustnessEvaluation,
    SquareAttack,
    perturbation_norm,
)
from riskloop.targets import InputSpec, MockTarget, predict

FAST = settings(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _problem(seed: int, d: int, k: int, frozen_share: float):
    """A random linear model on d features with per-feature bounds and frozen features."""
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-2, 0, d)
    hi = lo + rng.uniform(0.5, 3, d)
    frozen = rng.random(d) < frozen_share
    X = rng.uniform(lo, hi, size=(40, d)).astype(np.float32)
    w = rng.normal(size=(k, d))
    spec = InputSpec(shape=(d,), lower=lo, upper=hi, frozen=frozen)
    target = MockTarget(weights=w, bias=rng.normal(size=k), input_spec=spec)
    y = predict(target, X)  # every point starts correct
    return target, X, y, spec


ATTACKS = {
    "fgsm": lambda eps, norm, s: FGSM(eps=eps, norm=norm, random_state=s),
    "pgd": lambda eps, norm, s: PGD(eps=eps, norm=norm, steps=5, random_state=s),
    "apgd-ce": lambda eps, norm, s: APGD(eps=eps, norm=norm, steps=8, random_state=s),
    "square": lambda eps, norm, s: SquareAttack(eps=eps, queries=30, random_state=s),
    "hopskipjump": lambda eps, norm, s: HopSkipJump(eps=eps, norm=norm, max_iter=3, queries=300,
                                                     init_eval=10, max_eval=20, random_state=s),
}


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), d=st.integers(2, 12), k=st.integers(2, 4),
       eps=st.floats(0.01, 2.0), frozen=st.sampled_from([0.0, 0.3]),
       norm=st.sampled_from(["linf", "l2"]), name=st.sampled_from(sorted(ATTACKS)),
       scaled=st.booleans(), targeted=st.booleans())
def test_adversarial_examples_respect_ball_range_and_frozen_features(
    seed, d, k, eps, frozen, norm, name, scaled, targeted
):
    if name == "square":
        norm = "linf"
    target, X, y, spec = _problem(seed, d, k, frozen)
    scale = np.random.default_rng(seed).uniform(0.2, 2.0, d) if scaled else None
    attack = ATTACKS[name](eps, norm, seed).clone(targeted=targeted)
    goal = (y + 1) % k if targeted else None
    out = attack.attack(target, X, y, scale=scale, target_labels=goal)
    size = perturbation_norm(out.x_adv - X, norm, scale)
    assert np.all(size <= eps * (1 + 1e-5) + 1e-6)
    assert np.all(out.x_adv >= spec.lower_array() - 1e-6)
    assert np.all(out.x_adv <= spec.upper_array() + 1e-6)
    mask = spec.frozen_mask()
    assert np.array_equal(out.x_adv[:, mask], X[:, mask])
    # a claimed success is a real one: the true class left, or the target class hit
    pred = predict(target, out.x_adv[out.success])
    if targeted:
        assert np.all(pred == goal[out.success])
    else:
        assert np.all(pred != y[out.success])


@FAST
@given(seed=st.integers(0, 10_000), d=st.integers(2, 10), eps=st.floats(0.05, 1.0),
       steps=st.integers(1, 6), more=st.integers(1, 6), restarts=st.integers(1, 3))
def test_more_steps_or_restarts_never_raise_robust_accuracy(seed, d, eps, steps, more, restarts):
    target, X, y, _ = _problem(seed, d, 3, 0.0)

    def robust(**kw):
        return PGD(eps=eps, random_state=seed, **kw).run(target, X, y).metrics["robust_accuracy"]

    base = robust(steps=steps)
    assert robust(steps=steps + more) <= base
    assert robust(steps=steps, restarts=restarts + 1) <= base
    a = APGD(eps=eps, steps=steps + 2, random_state=seed).run(target, X, y).metrics["robust_accuracy"]
    b = APGD(eps=eps, steps=steps + 2, restarts=restarts + 1, random_state=seed).run(target, X, y)
    assert b.metrics["robust_accuracy"] <= a


@FAST
@given(seed=st.integers(0, 10_000), d=st.integers(2, 10),
       eps=st.lists(st.floats(0.01, 1.5), min_size=2, max_size=5, unique=True))
def test_robustness_curve_never_rises_with_eps(seed, d, eps):
    target, X, y, _ = _problem(seed, d, 3, 0.0)
    ev = RobustnessEvaluation(attacks=[PGD(steps=3, random_start=False, random_state=seed),
                                       SquareAttack(queries=10, random_state=seed)],
                              eps=eps, full_ensemble="all", self_checks=False, random_state=seed)
    res = ev.run(target, X, y)
    accs = [p["robust_accuracy"] for p in res.metrics["curve"]]
    assert [p["eps"] for p in res.metrics["curve"]] == sorted(eps)
    assert all(b <= a for a, b in zip(accs, accs[1:], strict=False))
    # the worst case over the ensemble is never above its (deterministic) first attack alone
    # (same budget units: tabular eps is in standard deviations of each feature)
    first = ev.attacks[0].clone(eps=ev.standard_eps)
    alone = 1 - first.attack(target, X, y, scale=ev.scale_).success.mean()
    assert res.metrics["ars"] <= alone + 1e-12


def test_targeted_pgd_reaches_chosen_classes_on_a_real_model():
    from sklearn.datasets import load_digits

    d = load_digits()
    X, y = (d.data / 16).astype(np.float32), d.target
    spec = InputSpec(shape=(64,), lower=0.0, upper=1.0, kind="image")
    target = MockTarget.fit(X[:1000], y[:1000], input_spec=spec)
    Xt, yt = X[1000:1100], y[1000:1100]
    goal = (yt + 3) % 10
    pgd = PGD(eps=0.3, steps=20, targeted=True)
    res = pgd.run(target, Xt, yt, target_labels=goal)
    hit = pgd.success_
    assert hit.mean() > 0.5
    assert np.all(predict(target, pgd.x_adv_[hit]) == goal[hit])
    assert res.metrics["robust_accuracy"] < res.metrics["clean_accuracy"]
