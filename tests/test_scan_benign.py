"""No false positives on real artefacts made here, and the two engines agree.

Real models trained on scikit-learn's bundled data, saved the ways people save them.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile

import joblib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import ensemble, linear_model, neural_network, pipeline, preprocessing, svm, tree
from sklearn.datasets import load_breast_cancer, load_digits

from riskloop.assess.supply_chain import Budgets, ScanPolicy, scan_bytes, scan_paths
from riskloop.assess.supply_chain.budgets import Meter
from riskloop.assess.supply_chain.pickle_fast import fast_scan
from riskloop.assess.supply_chain.pickle_vm import PickleVM


@pytest.fixture(scope="module")
def estimators():
    X, y = load_breast_cancer(return_X_y=True)
    X, y = X[:200], y[:200]
    models = {
        "logreg": pipeline.make_pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression()),
        "forest": ensemble.RandomForestClassifier(n_estimators=4, random_state=0),
        "hgb": ensemble.HistGradientBoostingClassifier(max_iter=5, random_state=0),
        "svc": svm.SVC(),
        "mlp": neural_network.MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0),
        "tree": tree.DecisionTreeClassifier(random_state=0),
    }
    return {k: m.fit(X, y) for k, m in models.items()}


def test_sklearn_estimators_via_pickle_and_joblib_are_clean(estimators, tmp_path):
    for name, est in estimators.items():
        for protocol in (2, 4, 5):
            (tmp_path / f"{name}-p{protocol}.pkl").write_bytes(pickle.dumps(est, protocol=protocol))
        joblib.dump(est, tmp_path / f"{name}.joblib")
        joblib.dump(est, tmp_path / f"{name}-z.joblib", compress=3)
        joblib.dump(est, tmp_path / f"{name}-xz.joblib", compress=("xz", 1))
    report = scan_paths([tmp_path])
    assert len(report.files) == 6 * 6
    assert {f.path: f.verdict for f in report.files if f.verdict != "clean"} == {}
    forest = next(f for f in report.files if f.path.endswith("forest.joblib"))
    assert forest.format == "pickle" and any(g["global"] == "sklearn.tree._tree.Tree" for g in forest.globals)


def _cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(256, 10))


class UserNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)


def test_torch_and_numpy_artefacts_are_clean(tmp_path):
    from safetensors.torch import save_file

    m = _cnn()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    torch.save(m.state_dict(), tmp_path / "state.pt")
    torch.save(m.state_dict(), tmp_path / "state-legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"model": m.state_dict(), "optim": opt.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    torch.save(m, tmp_path / "stock-module.pt")
    (tmp_path / "tensor.pkl").write_bytes(pickle.dumps(torch.arange(12.0).reshape(3, 4)))
    save_file(m.state_dict(), str(tmp_path / "model.safetensors"))
    X, _ = load_digits(return_X_y=True)
    np.save(tmp_path / "digits.npy", X)
    np.savez(tmp_path / "arrays.npz", X=X[:10], y=np.arange(10))
    np.savez_compressed(tmp_path / "arrays-z.npz", X=X[:10])
    np.save(tmp_path / "labels.npy", np.array(["a", "b", None], dtype=object), allow_pickle=True)
    (tmp_path / "state.pkl").write_bytes(pickle.dumps(
        {"x": np.arange(5), "rng": np.random.default_rng(0), "legacy_rng": np.random.RandomState(0),
         "scalar": np.float32(1.5), "counts": collections.Counter("aab"),
         "order": collections.OrderedDict(a=1)}, protocol=5))
    report = scan_paths([tmp_path])
    assert {f.path.rsplit("/", 1)[-1]: f.verdict for f in report.files} == {
        name: "clean" for name in ("state.pt", "state-legacy.pt", "ckpt.pt", "stock-module.pt",
                                   "tensor.pkl", "model.safetensors", "digits.npy", "arrays.npz",
                                   "arrays-z.npz", "labels.npy", "state.pkl")}
    zipped = next(f for f in report.files if f.path.endswith("/state.pt"))
    assert zipped.format == "torch-zip"
    assert sum(p["format"] == "tensor-storage" for p in zipped.parts) == len(m.state_dict())


def test_a_pickled_module_of_the_users_own_class_needs_trust(tmp_path):
    torch.save(UserNet(), tmp_path / "net.pt")
    report = scan_paths([tmp_path / "net.pt"]).files[0]
    assert report.verdict == "needs-trust"
    unknown = {i.global_name for i in report.issues}
    assert unknown == {f"{UserNet.__module__}.UserNet"}
    assert {i.rule for i in report.issues} == {"unknown-global"}


def test_folders_of_plain_files_are_clean(tmp_path):
    (tmp_path / "spec.json").write_text('{"layers": []}')
    (tmp_path / "README.md").write_text("# a model\n\nIt reads digits.\n")
    (tmp_path / "vocab.txt").write_text("a\nb\nc\n")
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (tmp_path / "bundle.zip").write_bytes(_zip({"notes.txt": b"hello", "cfg.json": b"{}"}))
    report = scan_paths([tmp_path])
    assert report.verdict == "clean" and len(report.files) == 6


def _zip(members: dict[str, bytes]) -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    return bio.getvalue()


# --- the fast path and the symbolic engine see the same imports ---------------------------------
leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                 st.text(max_size=8), st.binary(max_size=8))
data = st.recursive(
    leaf,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.tuples(kids, kids),
                           st.dictionaries(st.text(max_size=4), kids, max_size=4),
                           st.builds(collections.OrderedDict, st.dictionaries(st.text(max_size=3), kids, max_size=3)),
                           st.builds(lambda xs: np.array(xs, dtype=np.float32), st.lists(st.floats(-1, 1, width=32), max_size=4)),
                           st.frozensets(st.integers(), max_size=3)),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=data, protocol=st.integers(0, 5))
def test_fast_path_and_symbolic_engine_agree(obj, protocol):
    raw = pickle.dumps(obj, protocol=protocol)
    budgets = Budgets()
    fast = fast_scan(raw, 0, len(raw), meter=Meter(budgets))
    slow = PickleVM(budgets=budgets, meter=Meter(budgets)).run(raw, 0, len(raw))
    assert fast is not None and fast.complete and slow.complete
    assert fast.end == slow.end == len(raw)
    assert sorted((g.module, g.name) for g in fast.globals) == sorted((g.module, g.name) for g in slow.globals)
    assert scan_bytes(raw).verdict == "clean"


def test_fast_path_is_used_for_opcode_heavy_pickles_and_refuses_surprises():
    many = pickle.dumps([{"a": i, "b": [i, float(i)]} for i in range(60_000)], protocol=4)
    report = scan_bytes(many)
    assert report.verdict == "clean" and report.engine["fast"] == 1
    # a joblib wrapper, an EXT code or a mutated global all go back to the symbolic engine
    tight = ScanPolicy(budgets=Budgets(max_seconds=30))
    from tests.test_scan_payloads import module_override

    padded = b"\x80\x04(" + b"K\x01" * 150_000 + b"l0" + module_override()[2:]  # memo still empty
    assert "builtins.exec" in {i.global_name for i in scan_bytes(padded, tight).issues}
