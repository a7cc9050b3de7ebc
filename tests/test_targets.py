"""Targets: torch, scikit-learn, ONNX and mock adapters, the input spec and label checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from riskloop import InputError
from riskloop.demo import digits
from riskloop.targets import (
    ACCESS_BLACK,
    ACCESS_LABEL,
    InputSpec,
    MockTarget,
    OnnxTarget,
    SklearnTarget,
    TorchTarget,
    check_data,
    encode_labels,
    is_white_box,
    predict,
)
from riskloop.targets.torchspec import build_module, module_to_spec

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def digits_data(one_thread):
    return digits.digits_split(random_state=0)


@pytest.fixture(scope="module")
def cnn(digits_data):
    X_tr, X_te, y_tr, y_te = digits_data
    spec = digits.digits_spec()
    spec["layers"] = digits.cnn_layers(channels=(8, 16))
    torch.manual_seed(0)
    module = build_module(spec)
    digits.train_classifier(module, X_tr, y_tr, epochs=5, random_state=0)
    return module, spec


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return X.astype(np.float32), y


def test_torch_target_predicts_probabilities_and_gradients(cnn, digits_data):
    module, spec = cnn
    X_te, y_te = digits_data[1], digits_data[3]
    target = TorchTarget.from_spec(module, spec, batch_size=100)
    assert is_white_box(target)
    assert target.input_spec.kind == "image" and target.input_spec.shape == (1, 8, 8)
    p = target.predict_proba(X_te)
    assert p.shape == (len(X_te), 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert (predict(target, X_te) == y_te).mean() > 0.8
    assert target.queries == 2 * len(X_te)  # two calls of predict_proba
    # the gradient agrees with a central finite difference of the summed loss
    g = target.input_gradient(X_te[:3], y_te[:3])
    assert g.shape == X_te[:3].shape
    x = torch.from_numpy(X_te[:3]).double()
    m64 = build_module(spec).double()
    m64.load_state_dict({k: v.double() for k, v in module.state_dict().items()})
    i = np.unravel_index(np.argmax(np.abs(g)), g.shape)
    h = 1e-4
    loss = torch.nn.functional.cross_entropy

    @torch.no_grad()
    def f(xx):
        return float(loss(m64(xx), torch.from_numpy(y_te[:3]), reduction="sum"))

    xp, xm = x.clone(), x.clone()
    xp[i] += h
    xm[i] -= h
    assert abs((f(xp) - f(xm)) / (2 * h) - g[i]) < 1e-3 * max(1.0, abs(g[i]))


def test_attack_mode_freezes_and_restores_parameters(cnn):
    module, spec = cnn
    target = TorchTarget.from_spec(module, spec)
    params = list(target.module.parameters())
    for p in params:
        p.grad = None
    assert all(p.requires_grad for p in params)
    with target.attack_mode():
        assert not any(p.requires_grad for p in params)
        x = torch.zeros((2, 1, 8, 8), requires_grad=True)
        target.logits(x).sum().backward()
        assert x.grad is not None and all(p.grad is None for p in params)
    assert all(p.requires_grad for p in params)


def test_normalization_inside_the_model_keeps_raw_input_units(digits_data):
    X_te = digits_data[1]
    norm = {"mean": [0.3], "std": [0.4]}
    spec = module_to_spec(digits.cnn_layers(), input_shape=[1, 8, 8], classes=list("0123456789"),
                          normalization=norm)
    module = build_module(spec)
    with_layer = TorchTarget.from_spec(module, spec)
    # the same layers without the Normalize layer, given the normalisation as an argument
    inner = torch.nn.Sequential(*list(module.children())[1:])
    wrapped = TorchTarget(inner, input_spec=with_layer.input_spec, classes=with_layer.classes,
                          normalization=([0.3], [0.4]))
    np.testing.assert_allclose(with_layer.predict_proba(X_te[:20]), wrapped.predict_proba(X_te[:20]), rtol=1e-5)
    manual = inner((torch.from_numpy(X_te[:20]) - 0.3) / 0.4).softmax(1).detach().numpy()
    np.testing.assert_allclose(with_layer.predict_proba(X_te[:20]), manual, rtol=1e-4, atol=1e-6)


def test_sklearn_target_score_and_label_only(cancer):
    X, y = cancer
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    t = SklearnTarget(clf)
    assert t.access == ACCESS_BLACK and t.classes == ("0", "1")
    assert t.input_spec.shape == (30,)
    np.testing.assert_allclose(t.predict_proba(X[:50]), clf.predict_proba(X[:50]))
    svc = make_pipeline(StandardScaler(), LinearSVC()).fit(X, y)
    lt = SklearnTarget(svc)
    assert lt.access == ACCESS_LABEL
    p = lt.predict_proba(X[:50])
    assert set(np.unique(p)) <= {0.0, 1.0}
    np.testing.assert_array_equal(p.argmax(1), svc.predict(X[:50]))


def _logistic_onnx(path, clf):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    coef, bias = clf.coef_, clf.intercept_
    if len(coef) == 1:  # binary: two logits -z/2 and z/2 give the same probabilities
        coef, bias = np.vstack([-coef / 2, coef / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    w = numpy_helper.from_array(coef.T.astype(np.float32), "W")
    b = numpy_helper.from_array(bias.astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["z0"]), helper.make_node("Add", ["z0", "B"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "logreg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", coef.shape[1]])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", coef.shape[0]])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_onnx_target_matches_the_model_it_was_built_from(tmp_path, digits_data):
    X_tr, X_te, y_tr, y_te = digits_data
    flat_tr, flat_te = X_tr.reshape(len(X_tr), -1), X_te.reshape(len(X_te), -1)
    clf = LogisticRegression(max_iter=500).fit(flat_tr, y_tr)
    t = OnnxTarget(_logistic_onnx(tmp_path / "m.onnx", clf))
    assert t.access == ACCESS_BLACK and len(t.classes) == 10
    np.testing.assert_allclose(t.predict_proba(flat_te[:40]), clf.predict_proba(flat_te[:40]), atol=1e-5)


def test_mock_target_defects():
    rng = np.random.default_rng(0)
    X = rng.random((200, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 1).astype(int)
    clean = MockTarget.fit(X, y)
    assert (predict(clean, X) == y).mean() > 0.9
    np.testing.assert_array_equal(clean.predict_proba(X), clean.predict_proba(X))
    noisy = MockTarget.fit(X, y, noise=0.5)
    assert np.abs(noisy.predict_proba(X) - noisy.predict_proba(X)).max() > 1e-3
    masked = MockTarget.fit(X, y, mask_gradients=True)
    assert np.abs(masked.input_gradient(X, y)).max() == 0.0
    assert np.abs(clean.input_gradient(X, y)).max() > 0.0


def test_input_spec_checks_shape_dtype_range_and_labels():
    spec = InputSpec(shape=(1, 8, 8), lower=0.0, upper=1.0, kind="image")
    ok = spec.check(np.zeros((3, 64)), where="d")  # flattened rows of the right size are reshaped
    assert ok.shape == (3, 1, 8, 8) and ok.dtype == np.float32
    with pytest.raises(InputError, match=r"shape \(5,\) but the model expects \(1, 8, 8\)"):
        spec.check(np.zeros((3, 5)), where="d")
    with pytest.raises(InputError, match="not numbers"):
        spec.check(np.array([["a"] * 64]), where="d")
    with pytest.raises(InputError, match=r"outside the model's valid range \[0, 1\]"):
        spec.check(np.full((2, 1, 8, 8), 2.0), where="d")
    with pytest.raises(InputError, match="NaN"):
        spec.check(np.full((2, 1, 8, 8), np.nan), where="d")
    classes = tuple(str(i) for i in range(10))
    np.testing.assert_array_equal(encode_labels([3, 0, 9], classes), [3, 0, 9])
    with pytest.raises(InputError, match=r"label 12 is outside the model's class range 0..9"):
        encode_labels([1, 12], classes)
    assert list(encode_labels(["b", "a"], ("a", "b"))) == [1, 0]
    with pytest.raises(InputError, match="'z' is not one of the model's classes"):
        encode_labels(["a", "z"], ("a", "b"))


def test_spec_completes_unknown_shape_and_bounds_from_data(cancer):
    X, y = cancer
    spec = InputSpec(shape=None).complete(X)
    assert spec.shape == (30,) and spec.bounds_from_data
    np.testing.assert_allclose(spec.lower_array(), X.min(axis=0))
    images = np.random.default_rng(0).uniform(0.1, 0.9, size=(20, 1, 4, 4))
    img = InputSpec(shape=None).complete(images)
    assert img.kind == "image" and img.shape == (1, 4, 4)
    assert np.all(img.lower_array() == images.min()) and np.all(img.upper_array() == images.max())
    frozen = InputSpec(shape=(3,), lower=[0, 0, 0], upper=[1, 2, 3], frozen=[True, False, False])
    assert frozen.frozen_mask().tolist() == [True, False, False]
    assert frozen.range_width == 3.0
    with pytest.raises(InputError, match="lower bound is above"):
        InputSpec(shape=(2,), lower=[1, 0], upper=[0, 1])


def test_check_data_pairs_inputs_and_labels(cnn, digits_data):
    module, spec = cnn
    target = TorchTarget.from_spec(module, spec)
    X, y = check_data(target, digits_data[1][:10], digits_data[3][:10])
    assert X.shape == (10, 1, 8, 8) and y.dtype == np.int64
    with pytest.raises(InputError, match="10 inputs but 9 labels"):
        check_data(target, digits_data[1][:10], digits_data[3][:9])
    with pytest.raises(InputError, match="empty"):
        check_data(target, digits_data[1][:0], digits_data[3][:0])


def test_complete_with_rows_of_another_size_leaves_the_error_to_check():
    import numpy as np
    import pytest

    from riskloop.errors import InputError
    from riskloop.targets.base import InputSpec

    spec = InputSpec(shape=(3,))
    X = np.ones((4, 5), dtype=np.float32)
    done = spec.complete(X)  # no raw ValueError from reshaping
    with pytest.raises(InputError):
        done.check(X)
