"""The linear-bound verifier: sound (checked against an exact MILP solved by scipy, sampling
and strong attacks), exact on every supported layer when eps is 0, and wired into the
evaluation so proved points are skipped without changing what the attacks measure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import Bounds, LinearConstraint, milp
from sklearn.datasets import load_breast_cancer, make_blobs
from sklearn.linear_model import LogisticRegression
from torch import nn

from riskloop.assess.evasion import PGD, RobustnessEvaluation
from riskloop.assess.evasion.suite import build_attacks, findings_for
from riskloop.assess.evasion.verify import PROBE_ROWS, LinearBoundVerifier, verify_with_probe
from riskloop.demo import digits
from riskloop.targets import InputSpec, SklearnTarget, TorchTarget, predict
from riskloop.targets.torchspec import Normalize, build_module

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def digits_cnn(one_thread):
    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=0)
    spec = digits.digits_spec()
    spec["layers"] = digits.cnn_layers(channels=(8, 16))
    torch.manual_seed(0)
    module = build_module(spec)
    digits.train_classifier(module, X_tr, y_tr, epochs=8, random_state=0)
    target = TorchTarget.from_spec(module, spec)
    X, y = X_te[:200], y_te[:200]
    ok = predict(target, X) == y
    return target, X[ok], y[ok]


@pytest.fixture(scope="module")
def blobs_mlp(one_thread):
    X, y = make_blobs(n_samples=300, centers=3, n_features=2, cluster_std=1.6, random_state=0)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(2, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 3))
    digits.train_classifier(module, X[:200], y[:200], epochs=60, random_state=0)
    spec = InputSpec(shape=(2,), lower=-4.0, upper=4.0)
    target = TorchTarget(module, input_spec=spec, classes=["a", "b", "c"])
    X_te, y_te = X[200:], y[200:]
    ok = predict(target, X_te) == y_te
    return target, module, X_te[ok][:24], y_te[ok][:24]


def _exact_min_margins(module: nn.Sequential, x: np.ndarray, y: int, eps: float, lo: float, hi: float) -> np.ndarray:
    """min over the box of logit_y - logit_j for every j != y, by a big-M MILP (HiGHS)."""
    lins = [m for m in module if isinstance(m, nn.Linear)]
    Ws = [m.weight.detach().double().numpy() for m in lins]
    bs = [m.bias.detach().double().numpy() for m in lins]
    box_lo, box_hi = np.maximum(x - eps, lo), np.minimum(x + eps, hi)
    # pre-activation bounds by plain interval arithmetic (any valid bounds keep big-M exact)
    bounds, h_lo, h_hi = [], box_lo, box_hi
    for W, b in zip(Ws[:-1], bs[:-1], strict=True):
        c, r = (h_lo + h_hi) / 2, (h_hi - h_lo) / 2
        zl, zu = W @ c + b - np.abs(W) @ r - 1e-6, W @ c + b + np.abs(W) @ r + 1e-6
        bounds.append((zl, zu))
        h_lo, h_hi = np.maximum(zl, 0), np.maximum(zu, 0)
    # variable layout: x, then per hidden layer z, h, a
    d = len(x)
    sizes = [len(b) for b in bs[:-1]]
    offsets, pos = [], d
    for h in sizes:
        offsets.append(pos)
        pos += 3 * h
    nvar = pos
    rows, lower_b, upper_b = [], [], []
    var_lo, var_hi = np.full(nvar, -np.inf), np.full(nvar, np.inf)
    var_lo[:d], var_hi[:d] = box_lo, box_hi
    integrality = np.zeros(nvar)
    prev = list(range(d))
    for k, (W, b) in enumerate(zip(Ws[:-1], bs[:-1], strict=True)):
        h = sizes[k]
        z0, h0, a0 = offsets[k], offsets[k] + h, offsets[k] + 2 * h
        zl, zu = bounds[k]
        for i in range(h):
            z, hv, a = z0 + i, h0 + i, a0 + i
            row = np.zeros(nvar)
            row[z] = 1
            row[prev] = -W[i]
            rows.append(row); lower_b.append(b[i]); upper_b.append(b[i])  # noqa: E702
            row = np.zeros(nvar); row[z], row[hv] = 1, -1  # noqa: E702
            rows.append(row); lower_b.append(-np.inf); upper_b.append(0)  # noqa: E702
            row = np.zeros(nvar); row[hv], row[a] = 1, -zu[i]  # noqa: E702
            rows.append(row); lower_b.append(-np.inf); upper_b.append(0)  # noqa: E702
            row = np.zeros(nvar); row[hv], row[z], row[a] = 1, -1, -zl[i]  # noqa: E702
            rows.append(row); lower_b.append(-np.inf); upper_b.append(-zl[i])  # noqa: E702
            var_lo[z], var_hi[z], var_lo[hv], var_hi[hv] = zl[i], zu[i], 0, max(zu[i], 0)
            var_lo[a], var_hi[a], integrality[a] = 0, 1, 1
        prev = list(range(h0, h0 + h))
    cons = LinearConstraint(np.array(rows), lower_b, upper_b)
    out = []
    for j in range(Ws[-1].shape[0]):
        if j == y:
            continue
        cost = np.zeros(nvar)
        cost[prev] = Ws[-1][y] - Ws[-1][j]
        res = milp(cost, constraints=cons, integrality=integrality, bounds=Bounds(var_lo, var_hi))
        assert res.success, res.message
        out.append(res.fun + bs[-1][y] - bs[-1][j])
    return np.array(out)


def test_bounds_never_exceed_the_exact_minimum_from_a_milp(blobs_mlp):
    target, module, X, y = blobs_mlp
    v = LinearBoundVerifier(target.module, target)
    proved_exact = proved_ours = 0
    for eps in (0.05, 0.2, 0.6):
        lb = v.lower_bounds(X, y, eps)
        for i in range(len(X)):
            exact = _exact_min_margins(module, X[i].astype(np.float64), int(y[i]), eps, -4.0, 4.0)
            assert np.all(lb[i] <= exact + 1e-5), (eps, i, lb[i], exact)
            ours, truth = bool((lb[i] > 0).all()), bool((exact > 0).all())
            assert truth or not ours  # proved implies truly robust
            proved_exact += truth
            proved_ours += ours
    # and the bounds are not vacuous: most of what is provable is proved
    assert proved_ours >= 0.7 * proved_exact and proved_ours > 0


def _mixed_net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.1, 0.1)
    return nn.Sequential(
        Normalize([0.5], [0.25]),
        nn.Conv2d(1, 4, 3, padding="same"), bn, nn.ReLU(), nn.AvgPool2d(2),
        nn.Sequential(nn.Conv2d(4, 6, 3, stride=1, padding=1), nn.ReLU()),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 8), nn.ReLU(), nn.Dropout(0.1),
        nn.Identity(), nn.Linear(8, 5),
    ).eval()


def _margins(module: nn.Module, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        z = module(torch.as_tensor(X)).double().numpy()
    k = z.shape[1]
    return np.stack([z[i, y[i]] - np.delete(z[i], y[i]) for i in range(len(z))]).reshape(len(z), k - 1)


def test_every_supported_layer_is_exact_at_zero_eps_and_sound_on_samples():
    module = _mixed_net(0)
    spec = InputSpec(shape=(1, 8, 8), lower=0.0, upper=1.0, kind="image")
    target = TorchTarget(module, input_spec=spec, classes=[str(i) for i in range(5)])
    rng = np.random.default_rng(0)
    X = rng.random((16, 1, 8, 8)).astype(np.float32)
    y = predict(target, X)
    v = LinearBoundVerifier(target.module, target)
    true = _margins(module, X, y)
    np.testing.assert_allclose(v.lower_bounds(X, y, 0.0), true, atol=2e-3 * (1 + np.abs(true).max()))
    for norm, eps in (("linf", 0.03), ("l2", 0.2)):
        lb = v.lower_bounds(X, y, eps, norm)
        for _ in range(30):
            d = rng.uniform(-1, 1, X.shape).astype(np.float32)
            if norm == "linf":
                d *= eps
            else:
                d *= eps / np.linalg.norm(d.reshape(len(d), -1), axis=1).reshape(-1, 1, 1, 1)
            Xp = np.clip(X + d, 0.0, 1.0)  # the region is the ball inside the valid range
            assert np.all(_margins(module, Xp.astype(np.float32), y) >= lb - 1e-5)


def test_conv1d_and_a_linear_layer_over_the_last_dimension_are_supported():
    torch.manual_seed(1)
    module = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(),  # Linear on (4, 6)
                           nn.Flatten(), nn.Linear(20, 3)).eval()
    target = TorchTarget(module, input_spec=InputSpec(shape=(2, 6), lower=-3.0, upper=3.0),
                         classes=["a", "b", "c"])
    X = np.random.default_rng(1).normal(size=(10, 2, 6)).astype(np.float32)
    y = predict(target, X)
    v = LinearBoundVerifier(target.module, target)
    np.testing.assert_allclose(v.lower_bounds(X, y, 0.0), _margins(module, X, y), atol=1e-3)


def test_proved_points_survive_strong_attacks_on_a_digits_cnn(digits_cnn):
    target, X, y = digits_cnn
    v, why = LinearBoundVerifier.for_target(target)
    assert v is not None and why is None
    for norm, eps in (("linf", 8 / 255), ("l2", 0.05)):
        ok = v.verify(X, y, eps, norm)
        assert ok.mean() > 0.25, (norm, ok.mean())  # L2 bounds are looser (intervals after the first layer)
        strong = PGD(eps=eps, norm=norm, steps=60, restarts=4, random_state=3)
        assert not strong.attack(target, X[ok], y[ok]).success.any()
        # the region grows with eps: nothing proved at a much larger budget is missed by PGD either
        big = v.verify(X, y, 4 * eps, norm)
        assert big.sum() <= ok.sum()


def test_targeted_proofs_hold_against_a_targeted_attack(digits_cnn):
    target, X, y = digits_cnn
    v = LinearBoundVerifier(target.module, target)
    t = (y + 1) % 10
    eps = 16 / 255
    ok = v.verify(X, y, eps, target_labels=t)
    assert ok.mean() >= v.verify(X, y, eps).mean()  # one margin is easier to prove than nine
    out = PGD(eps=eps, steps=60, restarts=3, targeted=True, random_state=0).attack(target, X[ok], y[ok],
                                                                                 target_labels=t[ok])
    assert not out.success.any()


def test_frozen_features_and_per_feature_scale_on_tabular_data(one_thread):
    X, y = load_breast_cancer(return_X_y=True)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 2))
    digits.train_classifier(module, X[:400], y[:400], epochs=40, random_state=0)
    frozen = np.zeros(30, dtype=bool)
    frozen[:10] = True
    scale = np.linspace(0.5, 2.0, 30).astype(np.float32)
    free = TorchTarget(module, input_spec=InputSpec(shape=(30,), lower=X.min(0), upper=X.max(0)),
                       classes=["0", "1"])
    fixed = TorchTarget(module, input_spec=InputSpec(shape=(30,), lower=X.min(0), upper=X.max(0), frozen=frozen),
                        classes=["0", "1"])
    Xt, yt = X[400:], y[400:]
    ok = predict(free, Xt) == yt
    Xt, yt = Xt[ok], yt[ok]
    eps = 0.1
    p_free = LinearBoundVerifier(free.module, free).verify(Xt, yt, eps, scale=scale)
    p_fixed = LinearBoundVerifier(fixed.module, fixed).verify(Xt, yt, eps, scale=scale)
    assert p_free.any() and np.all(p_fixed >= p_free)  # a smaller region proves at least as much
    out = PGD(eps=eps, steps=60, restarts=3, random_state=0).attack(fixed, Xt[p_fixed], yt[p_fixed], scale=scale)
    assert not out.success.any()


def test_unsupported_models_say_why_and_the_evaluation_still_attacks_every_point():
    module = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                           nn.Linear(32, 3)).eval()
    target = TorchTarget(module, input_spec=InputSpec(shape=(1, 8, 8), lower=0.0, upper=1.0, kind="image"),
                         classes=["a", "b", "c"])
    v, why = LinearBoundVerifier.for_target(target)
    assert v is None and "MaxPool2d" in why
    X = np.random.default_rng(0).random((30, 1, 8, 8)).astype(np.float32)
    y = predict(target, X)
    ev = RobustnessEvaluation(attacks=build_attacks(["pgd", "apgd-ce"], norm="linf", random_state=0),
                              eps=[2 / 255], self_checks=False)
    m = ev.run(target, X, y).metrics
    assert m["verification"]["ran"] is False and "MaxPool2d" in m["verification"]["reason"]
    assert m["curve"][0]["verified_accuracy"] is None
    rng = np.random.default_rng(0)
    Xs = rng.normal(size=(60, 3))
    lr = LogisticRegression().fit(Xs, (Xs[:, 0] > 0).astype(int))
    _, why = LinearBoundVerifier.for_target(SklearnTarget(lr))
    assert "white-box PyTorch" in why


def test_the_evaluation_skips_proved_points_and_measures_the_same(digits_cnn):
    target, X, y = digits_cnn
    eps = 8 / 255

    def run(verify: bool):
        attacks = build_attacks(["pgd", "apgd-ce", "square"], norm="linf", random_state=0,
                                overrides={"square": {"queries": 200}})
        ev = RobustnessEvaluation(attacks=attacks, eps=[eps], self_checks=False, verify=verify)
        return ev, ev.run(target, X, y)

    ev_on, on = run(True)
    ev_off, off = run(False)
    rows_on, rows_off = on.metrics["per_attack"], off.metrics["per_attack"]
    rec = on.metrics["verification"]["per_eps"][0]
    assert on.metrics["verification"]["ran"] and rec["checked"] == len(X) - rows_on[0]["fooled"]
    assert rows_on[0]["attacked"] == rows_off[0]["attacked"]  # the first attack runs on every point
    assert rows_on[1]["attacked"] == rows_off[1]["attacked"] - rec["proved"] - (
        rows_off[0]["fooled"] - rows_on[0]["fooled"])
    proved_share = on.metrics["curve"][0]["verified_accuracy"]
    assert 0 < proved_share <= on.metrics["ars"] and proved_share == rec["proved"] / len(X)
    assert abs(on.metrics["ars"] - off.metrics["ars"]) <= 0.02  # only the attacks' randomness differs
    # every point proved robust also survived every attack in the run without proofs
    v = LinearBoundVerifier(target.module, target)
    assert np.all(ev_off.robust_[v.verify(X, y, eps)])
    assert "proved robust by linear bounds" in findings_for(on)[0].detail
    assert off.params["verify"] is False and off.metrics["verification"]["reason"].startswith("turned off")


def test_a_hopeless_budget_is_given_up_after_the_probe(digits_cnn):
    target, X, y = digits_cnn
    v = LinearBoundVerifier(target.module, target)
    assert len(X) > PROBE_ROWS
    ok, rec = verify_with_probe(v, X, y, 0.45, "linf", None, None)
    assert not ok.any() and rec.checked == PROBE_ROWS and "too few" in rec.skipped
    ok, rec = verify_with_probe(v, X, y, 2 / 255, "linf", None, None)
    assert rec.checked == len(X) and rec.skipped is None and rec.proved == int(ok.sum()) > PROBE_ROWS // 2


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), eps=st.floats(0.01, 0.5), norm=st.sampled_from(["linf", "l2"]),
       frozen_share=st.floats(0, 0.6), targeted=st.booleans())
def test_no_sampled_input_in_the_region_beats_the_bound(seed, eps, norm, frozen_share, targeted):
    """Random ReLU networks, ranges, frozen features, per-feature scales and targets: the margin
    at every sampled input of the threat region (and at the box's corners for L-inf) stays at or
    above the verifier's lower bound."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    d, k = 6, 4
    module = nn.Sequential(nn.Linear(d, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, k)).eval()
    lo = rng.uniform(-2, 0, d).astype(np.float32)
    hi = (lo + rng.uniform(0.5, 3, d)).astype(np.float32)
    frozen = rng.random(d) < frozen_share
    scale = rng.uniform(0.5, 2.0, d).astype(np.float32)
    target = TorchTarget(module, input_spec=InputSpec(shape=(d,), lower=lo, upper=hi, frozen=frozen),
                         classes=[str(i) for i in range(k)])
    X = rng.uniform(lo, hi, size=(8, d)).astype(np.float32)
    y = predict(target, X)
    t = (y + 1 + rng.integers(0, k - 1, len(y))) % k if targeted else None
    lb = LinearBoundVerifier(target.module, target).lower_bounds(X, y, eps, norm, scale, t)
    for _ in range(40):
        u = rng.uniform(-1, 1, X.shape)
        if norm == "linf":
            u = np.sign(u) if rng.random() < 0.3 else u  # corners too
            Xp = np.clip(X + u * eps * scale, lo, hi)
        else:
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            Xp = np.clip(X + u * rng.uniform(0, 1, (len(X), 1)) * eps * scale, lo, hi)  # stays in the ball
        Xp = np.where(frozen, X, Xp).astype(np.float32)
        with torch.no_grad():
            z = module(torch.as_tensor(Xp)).double().numpy()
        rows = np.arange(len(X))
        if targeted:
            margins = (z[rows, y] - z[rows, t])[:, None]
        else:
            margins = np.stack([np.delete(z[i, y[i]] - z[i], y[i]) for i in rows])
        assert np.all(margins >= lb - 1e-5)


def test_the_tight_pass_proves_more_and_runs_only_when_the_attacks_left_cost_more(digits_cnn):
    target, X, y = digits_cnn
    v = LinearBoundVerifier(target.module, target)
    assert v.narrow_layers(X.shape[1:]) == [32]  # the CNN's Linear(1024, 32) before its last ReLU
    cheap = v.verify(X, y, 8 / 255, tight=False)
    tight = v.verify(X, y, 8 / 255)
    assert np.all(tight >= cheap) and tight.sum() > cheap.sum()
    ok, rec = verify_with_probe(v, X, y, 8 / 255, "linf", None, None, budget=0.0)
    assert not rec.tight and np.array_equal(ok, cheap)
    ok, rec = verify_with_probe(v, X, y, 8 / 255, "linf", None, None, budget=1100.0)  # APGD-50 + Square-1000
    assert rec.tight and np.array_equal(ok, tight)
