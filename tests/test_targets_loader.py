"""The safe loader: every model format registered for real, pickles refused, data arrays."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from riskloop import InputError, IntegrityError, PolicyViolation
from riskloop.demo import digits
from riskloop.inventory import assets
from riskloop.store.db import transaction
from riskloop.targets import (
    ACCESS_BLACK,
    ACCESS_WHITE,
    check_loadable,
    load_arrays,
    load_target,
    predict,
)
from riskloop.targets.torchspec import build_module, save_torch_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def small_cnn(one_thread):
    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=0)
    spec = digits.digits_spec()
    spec["layers"] = digits.cnn_layers(channels=(4, 8))
    module = build_module(spec)
    digits.train_classifier(module, X_tr, y_tr, epochs=3, random_state=0)
    return module, spec, X_te, y_te


def _register(ws, path, name, framework):
    with transaction(ws.settings) as s:
        return assets.register_model(s, path=path, name=name, framework=framework,
                                     domain="general", actor="tester").ref


def _load(ws, ref, trust=False):
    from riskloop.inventory.refs import resolve_model

    with transaction(ws.settings) as s:
        return load_target(s, ws.settings, resolve_model(s, ref), trust=trust)


def test_safetensors_and_export_load_as_white_box(ready_sqlite, tmp_path, small_cnn):
    module, spec, X_te, y_te = small_cnn
    ref = _register(ready_sqlite, save_torch_model(tmp_path / "st", module, spec), "st", "torch")
    t = _load(ready_sqlite, ref)
    assert t.access == ACCESS_WHITE and t.input_spec.shape == (1, 8, 8)
    with torch.no_grad():
        expected = module(torch.from_numpy(X_te[:50])).argmax(1).numpy()
    np.testing.assert_array_equal(predict(t, X_te[:50]), expected)

    batch = torch.export.Dim("batch")
    program = torch.export.export(module, (torch.from_numpy(X_te[:4]),),
                                  dynamic_shapes={"input": {0: batch}})
    pt2 = tmp_path / "m.pt2"
    torch.export.save(program, str(pt2), extra_files={"riskloop.spec.json": json.dumps(spec)})
    et = _load(ready_sqlite, _register(ready_sqlite, pt2, "ex", "torch"))
    assert et.access == ACCESS_WHITE and et.classes == t.classes
    assert et.input_spec.kind == "image" and et.input_spec.shape == (1, 8, 8)
    np.testing.assert_allclose(et.predict_proba(X_te[:50]), t.predict_proba(X_te[:50]), atol=1e-5)
    g = et.input_gradient(X_te[:5], y_te[:5])
    np.testing.assert_allclose(g, t.input_gradient(X_te[:5], y_te[:5]), atol=1e-5)

    static = torch.export.export(module, (torch.from_numpy(X_te[:4]),))  # traced with batch 4
    pt2s = tmp_path / "static.pt2"
    torch.export.save(static, str(pt2s))
    st = _load(ready_sqlite, _register(ready_sqlite, pt2s, "exs", "torch"))
    assert st.classes == tuple(str(i) for i in range(10))  # read from the output width
    np.testing.assert_allclose(st.predict_proba(X_te[:10]), t.predict_proba(X_te[:10]), atol=1e-5)


def test_onnx_folder_and_skops_load_as_black_box(ready_sqlite, tmp_path):
    from tests.test_targets import _logistic_onnx

    X, y = load_breast_cancer(return_X_y=True)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    folder = tmp_path / "onnx"
    folder.mkdir()
    _logistic_onnx(folder / "model.onnx", clf)
    (folder / "spec.json").write_text(json.dumps({"classes": ["benign", "malignant"],
                                                  "input_range": [-5, 5]}))
    t = _load(ready_sqlite, _register(ready_sqlite, folder, "ox", "onnx"))
    assert t.access == ACCESS_BLACK and t.classes == ("benign", "malignant")
    assert t.input_spec.upper_array().max() == 5
    np.testing.assert_allclose(t.predict_proba(X[:30]), clf.predict_proba(X[:30]), atol=1e-5)

    import skops.io as sio

    sio.dump(clf, tmp_path / "m.skops")
    sk = _load(ready_sqlite, _register(ready_sqlite, tmp_path / "m.skops", "sk", "sklearn"))
    np.testing.assert_allclose(sk.predict_proba(X[:30]), clf.predict_proba(X[:30]))


def test_pickles_are_refused_until_scanned_or_trusted(ready_sqlite, tmp_path, small_cnn):
    module, *_ = small_cnn
    torch.save(module, tmp_path / "whole.pt")
    tref = _register(ready_sqlite, tmp_path / "whole.pt", "tp", "torch")
    from riskloop.inventory.refs import resolve_model

    with transaction(ready_sqlite.settings) as s:
        # Registration scanned it (torch's own layers pass); a version registered before
        # scanning existed has no verdict, and that must be refused.
        assert resolve_model(s, tref).scan_status == "clean"
        resolve_model(s, tref).scan_status = "not-scanned"
    with pytest.raises(PolicyViolation, match="can run code when loaded.*pass --trust"):
        _load(ready_sqlite, tref)
    t = _load(ready_sqlite, tref, trust=True)
    assert t.classes == tuple(str(i) for i in range(10)) and t.input_spec.shape is None

    X, y = load_breast_cancer(return_X_y=True)
    with open(tmp_path / "clf.pkl", "wb") as fh:
        pickle.dump(LogisticRegression(max_iter=50).fit(X[:, :3], y), fh)
    sref = _register(ready_sqlite, tmp_path / "clf.pkl", "sp", "sklearn")

    with transaction(ready_sqlite.settings) as s:
        mv = resolve_model(s, sref)
        assert mv.format == "sklearn-pickle"
        assert mv.scan_status == "clean"  # registration scanned it: a plain estimator passes
        mv.scan_status = "not-scanned"  # as for a model registered before it was scanned
        with pytest.raises(PolicyViolation, match="scan status 'not-scanned'"):
            check_loadable(mv)
        mv.scan_status = "clean"  # what the scanner records when it passes the file
        check_loadable(mv)
        assert load_target(s, ready_sqlite.settings, mv).predict_proba(X[:4, :3]).shape == (4, 2)
        s.rollback()


def test_unknown_format_and_tampered_files(ready_sqlite, tmp_path, small_cnn):
    from tests.helpers import write_model_folder

    ref = _register(ready_sqlite, write_model_folder(tmp_path / "plain"), "plain", "torch")
    with pytest.raises(PolicyViolation, match="format 'folder', which riskloop cannot load"):
        _load(ready_sqlite, ref)
    module, spec, *_ = small_cnn
    folder = save_torch_model(tmp_path / "st", module, spec)
    ref = _register(ready_sqlite, folder, "st", "torch")
    (folder / "spec.json").write_text((folder / "spec.json").read_text() + " ")
    with pytest.raises(IntegrityError, match="no longer matches its registered digest"):
        _load(ready_sqlite, ref)


def _dataset(ws, path, name, target=None):
    with transaction(ws.settings) as s:
        return assets.register_dataset(s, path=path, name=name, target=target, actor="tester")


def test_load_arrays_npz_csv_parquet(ready_sqlite, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((12, 1, 8, 8)).astype(np.float32)
    digits.save_npz(tmp_path / "d.npz", X, np.arange(12) % 10)
    Xa, ya = load_arrays(_dataset(ready_sqlite, tmp_path / "d.npz", "d", "y"))
    np.testing.assert_array_equal(Xa, X)
    assert ya.tolist() == (np.arange(12) % 10).tolist()

    frame = pd.DataFrame({"a": rng.random(10), "b": rng.integers(0, 5, 10), "label": [0, 1] * 5})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    Xc, yc = load_arrays(_dataset(ready_sqlite, tmp_path / "t.csv", "tc", "label"))
    assert Xc.shape == (10, 2) and Xc.dtype == np.float32 and yc.tolist() == [0, 1] * 5
    Xp, _ = load_arrays(_dataset(ready_sqlite, tmp_path / "t.parquet", "tp", "label"))
    np.testing.assert_allclose(Xp, Xc, rtol=1e-6)

    with pytest.raises(InputError, match="has no target column: register it again with --target"):
        load_arrays(_dataset(ready_sqlite, tmp_path / "t.csv", "nolabel"))
    frame.assign(kind=["x", "y"] * 5).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(InputError, match=r"column\(s\) kind are not numeric"):
        load_arrays(_dataset(ready_sqlite, tmp_path / "s.csv", "s", "label"))
    with open(tmp_path / "odd.npz", "wb") as fh:
        np.savez(fh, a=X, b=X, y=np.arange(12))
    with pytest.raises(InputError, match="cannot tell the input array"):
        load_arrays(_dataset(ready_sqlite, tmp_path / "odd.npz", "odd", "y"))
