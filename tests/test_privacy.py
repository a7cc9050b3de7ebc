"""Privacy suite: membership inference on overfit, regularised and DP-trained digits models,
the ROC numbers against their definitions, MI-Face inversion with PNG evidence, and the suite
through the CLI with one-line errors."""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from riskloop import InputError
from riskloop.assess.privacy import (
    LossThresholdMIA,
    MIFace,
    ReferenceModelMIA,
    combine,
    roc_summary,
)
from riskloop.assess.privacy._fit import TorchLearner, mlp
from riskloop.assess.privacy.inversion import MSG_NEEDS_WHITE_BOX
from riskloop.assess.privacy.suite import MSG_DATA_IS_MEMBERS, MSG_NO_MEMBERS
from riskloop.demo import digits
from riskloop.targets import InputSpec, SklearnTarget, TorchTarget
from riskloop.targets.torchspec import build_module, module_to_spec, save_torch_model

N = 150  # members per model under attack
KS_95 = 1.36 * np.sqrt(2 / N)  # two-sample KS critical value: the advantage of pure chance
AUC_SD = np.sqrt((2 * N + 1) / (12 * N * N))  # standard deviation of the AUC of pure chance

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py



@pytest.fixture(scope="module")
def split():
    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(X))
    return X, y, {"small": idx[:N], "big": idx[:900], "population": idx[900:1200],
                  "out": idx[1200:1200 + N]}


def as_target(module):
    return TorchTarget(module, input_spec=InputSpec(shape=(64,), lower=0.0, upper=1.0),
                       classes=[str(i) for i in range(10)])


def attack(target, X, y, members, out):
    cand = np.r_[members, out]
    member = np.r_[np.ones(len(members), bool), np.zeros(len(out), bool)]
    return LossThresholdMIA().run(target, X[cand], y[cand], member=member).metrics


@pytest.fixture(scope="module")
def overfit(split):
    X, y, s = split
    learner = TorchLearner(mlp(64, 10, hidden=256), n_classes=10, epochs=200, lr=3e-3,
                           batch_size=32, min_steps=0, random_state=0)
    return as_target(learner.fit(X[s["small"]], y[s["small"]]).module)


def test_overfit_leaks_more_than_regularised_and_dp_is_near_chance(split, overfit):
    X, y, s = split
    over = attack(overfit, X, y, s["small"], s["out"])
    reg_learner = TorchLearner(mlp(64, 10, hidden=256), n_classes=10, epochs=20, lr=1e-3,
                               weight_decay=5e-3, batch_size=32, min_steps=0, random_state=0)
    regularised = as_target(reg_learner.fit(X[s["big"]], y[s["big"]]).module)
    members = np.random.default_rng(1).choice(s["big"], N, replace=False)
    reg = attack(regularised, X, y, members, s["out"])
    assert over["membership_auc"] >= reg["membership_auc"] + 0.05, (over, reg)
    assert over["membership_advantage"] >= reg["membership_advantage"] + 0.1, (over, reg)

    from opacus import PrivacyEngine

    torch.manual_seed(0)
    model = mlp(64, 10, hidden=256)
    data = torch.utils.data.TensorDataset(torch.from_numpy(X[s["small"]]), torch.from_numpy(y[s["small"]]))
    loader = torch.utils.data.DataLoader(data, batch_size=50, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    engine = PrivacyEngine(accountant="prv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, opt, loader = engine.make_private(
            module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5), data_loader=loader,
            noise_multiplier=2.0, max_grad_norm=1.0)
        for _ in range(15):
            for xb, yb in loader:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xb), yb).backward()
                opt.step()
        eps = engine.get_epsilon(1e-5)
    dp = attack(as_target(model._module.eval()), X, y, s["small"], s["out"])
    assert abs(dp["membership_auc"] - 0.5) <= 2.58 * AUC_SD, (dp, eps)  # chance at 99%
    assert dp["membership_advantage"] <= KS_95, (dp, eps)
    assert over["membership_advantage"] > KS_95


def test_reference_models_never_see_the_candidates(split, overfit):
    X, y, s = split
    cand = np.r_[s["small"], s["out"]]
    member = np.r_[np.ones(N, bool), np.zeros(N, bool)]
    ref = ReferenceModelMIA(n_reference=3, epochs=20, random_state=0)
    res = ref.run(overfit, X[cand], y[cand], member=member, X_population=X[s["population"]],
                  y_population=y[s["population"]])
    assert set(ref.attack_metrics_) == {"rmia", "lira-offline"}
    assert res.metrics["membership_auc"] > 0.55
    loss = LossThresholdMIA()
    loss.run(overfit, X[cand], y[cand], member=member)
    both = combine({"loss-threshold": loss.metrics_, **ref.attack_metrics_})
    for key in ("membership_auc", "membership_advantage", "tpr_at_1pct_fpr"):
        assert both[key] == max(a[key] for a in both["attacks"].values())
    assert both["tpr_at_0.1pct_fpr"] is None  # 150 non-members: 0.1% FPR is out of reach
    assert both["lowest_reachable_fpr"] == pytest.approx(1 / N)
    with pytest.raises(InputError, match="population data"):
        ref.run(overfit, X[cand], y[cand], member=member, X_population=X[:5], y_population=y[:5])


def _brute(m, n, level):
    thresholds = np.r_[np.inf, np.unique(np.r_[m, n])[::-1]]
    tpr = np.array([np.mean(m >= t) for t in thresholds])
    fpr = np.array([np.mean(n >= t) for t in thresholds])
    return float(np.max(tpr - fpr)), float(tpr[fpr <= level + 1e-12].max())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=40),
       st.lists(st.integers(-5, 5), min_size=1, max_size=300))
def test_roc_numbers_match_their_definitions(members, nonmembers):
    m, n = np.array(members, float), np.array(nonmembers, float)
    out = roc_summary(m, n)
    adv, tpr1 = _brute(m, n, 0.01)
    labels = np.r_[np.ones(len(m)), np.zeros(len(n))]
    assert out["membership_auc"] == pytest.approx(roc_auc_score(labels, np.r_[m, n]))
    assert out["membership_advantage"] == pytest.approx(adv)
    if 1 / len(n) <= 0.01:
        assert out["tpr_at_1pct_fpr"] == pytest.approx(tpr1)
    else:  # too few non-members for 1% FPR: no made-up number
        assert out["tpr_at_1pct_fpr"] is None
    assert out["lowest_reachable_fpr"] == pytest.approx(1 / len(n))
    assert out["tpr_at_0.1pct_fpr"] is None or len(n) >= 1000
    assert out["roc"]["fpr"][0] == 0.0 and out["roc"]["fpr"][-1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(out["roc"]["tpr"], out["roc"]["tpr"][1:], strict=False))


def test_membership_needs_both_sides_and_probabilities(overfit, split):
    X, y, _ = split
    with pytest.raises(InputError, match="at least 10 members"):
        LossThresholdMIA().run(overfit, X[:30], y[:30], member=np.r_[np.ones(25, bool), np.zeros(5, bool)])
    from sklearn.svm import LinearSVC

    label_only = SklearnTarget(LinearSVC().fit(X[:300], y[:300]))
    with pytest.raises(InputError, match="needs class probabilities"):
        LossThresholdMIA().run(label_only, X[:40], y[:40], member=np.arange(40) < 20)


def _read_png(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos:pos + 4])
        kind, body = raw[pos + 4:pos + 8], raw[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", raw[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    w, h, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 0)
    rows = zlib.decompress(chunks[b"IDAT"])
    assert len(rows) == h * (w + 1)
    return np.frombuffer(rows, np.uint8).reshape(h, w + 1)[:, 1:]


@pytest.fixture(scope="module")
def digits_cnn():
    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=0)
    spec = module_to_spec(digits.cnn_layers(channels=(8, 16)), input_shape=[1, 8, 8],
                          classes=[str(i) for i in range(10)])
    torch.manual_seed(0)
    module = build_module(spec)
    digits.train_classifier(module, X_tr, y_tr, epochs=20, random_state=0)
    return module, spec, (X_tr, X_te, y_tr, y_te)


def test_mi_face_reconstructs_classes_better_than_random(digits_cnn, tmp_path):
    module, spec, (X_tr, _, y_tr, _) = digits_cnn
    target = TorchTarget.from_spec(module, spec)
    inv = MIFace(steps=150, random_state=0)
    res = inv.run(target, X_tr, y_tr)
    m = res.metrics
    assert inv.reconstructions_.shape == (10, 1, 8, 8)
    assert inv.reconstructions_.min() >= 0.0 and inv.reconstructions_.max() <= 1.0
    assert m["inversion_rmse"] < m["inversion_random_rmse"]
    assert m["inversion_gain"] > 0.1 and m["inversion_class_match"] >= 0.7, m
    assert m["inversion_confidence"] > 0.9
    files = inv.save_evidence(tmp_path, "cnn")
    img = _read_png(Path(files["inversion_image"]))
    assert img.shape == (1 + (64 + 1), 1 + 10 * (64 + 1))  # 8x8 images scaled 8x, 1px gaps
    with open(files["inversion_array"], "rb") as fh:
        np.testing.assert_allclose(np.load(fh, allow_pickle=False), inv.reconstructions_, atol=1e-6)
    flat = X_tr.reshape(len(X_tr), -1)
    black = SklearnTarget(__import__("sklearn.linear_model", fromlist=["x"]).LogisticRegression(
        max_iter=300).fit(flat, y_tr))
    with pytest.raises(InputError) as err:
        MIFace().run(black, flat, y_tr)
    assert str(err.value) == MSG_NEEDS_WHITE_BOX.format(access="black-box")


# -- the suite through the CLI ----------------------------------------------------------------
def test_privacy_suite_end_to_end(ready_sqlite, tmp_path, digits_cnn):
    ws = ready_sqlite
    module, spec, (X_tr, X_te, y_tr, y_te) = digits_cnn
    model_dir = save_torch_model(tmp_path / "cnn", module, spec)
    digits.save_npz(tmp_path / "train.npz", X_tr, y_tr)
    digits.save_npz(tmp_path / "test.npz", X_te, y_te)
    for path, name in (("train.npz", "train"), ("test.npz", "test")):
        assert ws.invoke("register", "dataset", str(tmp_path / path), "--name", name,
                         "--target", "y").exit_code == 0
    assert ws.invoke("register", "model", str(model_dir), "--name", "cnn", "--framework", "torch",
                     "--domain", "general", "--trained-on", "train@1").exit_code == 0
    assert ws.invoke("register", "model", str(model_dir), "--name", "orphan", "--framework",
                     "torch", "--domain", "general").exit_code == 0
    res = ws.invoke("assess", "cnn@1", "--data", "test@1", "--suite", "privacy",
                    "-o", "reference_models=2", "-o", "reference_epochs=10",
                    "-o", "inversion_steps=60", "--json")
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)
    m = run["metrics"]
    for key in ("membership_advantage", "membership_auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr",
                "lowest_reachable_fpr", "roc", "inversion_gain", "inversion_rmse"):
        assert key in m
    assert m["tpr_at_0.1pct_fpr"] is None and m["lowest_reachable_fpr"] == pytest.approx(1 / m["n_nonmembers"])
    assert set(m["attacks"]) == {"loss-threshold", "rmia", "lira-offline"}
    assert len(m["roc"]["fpr"]) == len(m["roc"]["tpr"]) > 10
    png = Path(run["artifacts"]["inversion_image"])
    assert png.is_file() and png.is_relative_to(ws.settings.artifacts_dir)
    _read_png(png)
    assert {f["threat_id"] for f in run["findings"]} == {"membership-inference", "model-inversion"}
    assert run["params"]["members_from"] == "train@1" and run["dataset_digest"]
    text = ws.invoke("results", "cnn@1")
    assert text.exit_code == 0 and "privacy" in text.stdout
    # Bad input, one line each, nothing recorded.
    for args, msg in (
        (("orphan@1", "--data", "test@1"), MSG_NO_MEMBERS.format(ref="orphan@1")),
        (("cnn@1", "--data", "train@1"), MSG_DATA_IS_MEMBERS.format(ref="train@1")),
    ):
        bad = ws.invoke("assess", *args, "--suite", "privacy", "-o", "reference_models=0")
        assert bad.exit_code == 2
        assert bad.stderr.strip() == f"error: {msg}"
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    sio.dump(LogisticRegression(max_iter=300).fit(X_tr.reshape(len(X_tr), -1), y_tr),
             tmp_path / "lr.skops")
    assert ws.invoke("register", "model", str(tmp_path / "lr.skops"), "--name", "lr", "--framework",
                     "sklearn", "--domain", "general", "--trained-on", "train@1").exit_code == 0
    bad = ws.run("assess", "lr@1", "--data", "test@1", "--suite", "privacy", "-o", "inversion=true")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: " + MSG_NEEDS_WHITE_BOX.format(access="black-box")
    runs = json.loads(ws.invoke("results", "cnn@1", "--suite", "privacy", "--json").stdout)["runs"]
    assert len(runs) == 1


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_png_writer_round_trips(h, w, seed):
    import tempfile

    from riskloop.assess.privacy._png import png_bytes

    img = np.random.default_rng(seed).random((h, w))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "img.png"
        path.write_bytes(png_bytes(img))
        back = _read_png(path)
    np.testing.assert_array_equal(back, (img * 255 + 0.5).astype(np.uint8))
