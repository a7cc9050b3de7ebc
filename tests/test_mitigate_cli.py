"""``riskloop mitigate`` end to end: new linked versions, before / after runs, lineage, audit,
deterministic digests, the stored squeezing defence, sanitization, and clean refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from riskloop.demo import digits
from riskloop.store.db import transaction
from riskloop.store.models import AuditEvent, DatasetVersion, ModelVersion
from riskloop.targets.torchspec import build_module, module_to_spec, save_torch_model

QUICK_EVASION = ["-o", "evasion.attacks=pgd", "-o", "evasion.pgd.steps=5"]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py



@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Digits train/test files, a trained CNN, a poisoned training set and its model."""
    root = tmp_path_factory.mktemp("mitigate-files")
    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=0)
    digits.save_npz(root / "train.npz", X_tr, y_tr)
    digits.save_npz(root / "test.npz", X_te, y_te)
    module, spec = digits.train_digits_cnn(X_tr, y_tr, random_state=0, epochs=12)
    save_torch_model(root / "cnn", module, spec)
    # label flipping (paper 3.1.1): a quarter of the rows relabelled as the next digit
    rng = np.random.default_rng(5)
    flip = rng.choice(len(y_tr), size=int(0.25 * len(y_tr)), replace=False)
    y_bad = y_tr.copy()
    y_bad[flip] = (y_bad[flip] + 1) % 10
    digits.save_npz(root / "poisoned.npz", X_tr, y_bad)
    bad_module, _ = digits.train_digits_cnn(X_tr, y_bad, random_state=0, epochs=30)
    save_torch_model(root / "cnn-poisoned", bad_module, spec)
    return {"root": root, "flipped": set(flip.tolist())}


def setup_ws(ws, files, *, model: str = "cnn", train: str = "train") -> None:
    root = files["root"]
    assert ws.invoke("init").exit_code == 0
    for name in ("train", "test", "poisoned"):
        res = ws.invoke("register", "dataset", str(root / f"{name}.npz"), "--name", name,
                        "--target", "y")
        assert res.exit_code == 0, res.output
    res = ws.invoke("register", "model", str(root / model), "--name", "cnn", "--framework",
                    "torch", "--domain", "general", "--trained-on", f"{train}@1")
    assert res.exit_code == 0, res.output


def mitigate(ws, *args: str) -> dict:
    res = ws.invoke("mitigate", *args, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def counts(ws) -> tuple[int, int, int]:
    with transaction(ws.settings) as s:
        return (s.execute(select(func.count()).select_from(ModelVersion)).scalar_one(),
                s.execute(select(func.count()).select_from(DatasetVersion)).scalar_one(),
                s.execute(select(func.count()).select_from(AuditEvent)).scalar_one())


def test_adversarial_training_registers_a_linked_version_with_before_after_runs(sqlite_workspace, files):
    ws = sqlite_workspace
    setup_ws(ws, files)
    args = ("cnn@1", "pgd", "--data", "train@1", "--test", "test@1", "--epochs", "2",
            "--steps", "3", "--eps", "16/255", "--limit", "60", *QUICK_EVASION)
    out = mitigate(ws, *args)
    assert out["parent"] == "cnn@1" and out["model"] == "cnn@2"
    rows = {r["metric"]: r for r in out["rows"]}
    assert {"clean_accuracy", "ars", "train_seconds"} <= set(rows)
    assert rows["ars"]["before"] is not None and rows["ars"]["after"] is not None
    assert set(out["runs"]) == {"evasion"} and set(out["parent_runs"]) == {"evasion"}
    shown = json.loads(ws.invoke("show", "cnn@2", "--json").output)
    assert shown["derived_from"] == "cnn@1" and shown["trained_on"] == ["train@1"]
    d = shown["derivation"]
    assert d["method"] == "adversarial-training" and d["dataset"] == "train@1"
    assert d["params"]["method"] == "pgd" and d["params"]["eps"] == pytest.approx(16 / 255)
    assert Path(shown["path"]).is_relative_to(ws.settings.artifacts_dir)
    runs = json.loads(ws.invoke("results", "cnn@2", "--json").output)["runs"]
    ev = [r for r in runs if r["suite"] == "evasion"]
    assert len(ev) == 1 and ev[0]["model_digest"] == shown["digest"]
    assert ev[0]["metrics"]["ars"] == rows["ars"]["after"]
    # the audit trail records the mitigation, and the chain verifies
    with transaction(ws.settings) as s:
        events = s.execute(select(AuditEvent).where(AuditEvent.action == "mitigation.apply")).scalars().all()
        assert len(events) == 1 and events[0].payload["parent"] == "cnn@1"
        assert events[0].payload["model"] == "cnn@2"
    assert ws.invoke("audit", "verify").exit_code == 0
    # same seed, same data, deterministic training: the same digest; the parent's stored run is reused
    again = mitigate(ws, *args)
    assert again["model"] == "cnn@3" and again["digest"] == out["digest"]
    assert again["parent_runs"] == out["parent_runs"]
    text = ws.invoke("mitigate", *args)  # the table as a user sees it
    assert text.exit_code == 0 and "ARS" in text.output and "cnn@4" in text.output


def test_feature_squeezing_stores_a_deployable_defence(sqlite_workspace, files):
    from riskloop.mitigate import FeatureSqueezingDetector
    from riskloop.monitor.watchset import load_defence
    from riskloop.targets.loader import load_target

    ws = sqlite_workspace
    setup_ws(ws, files)
    out = mitigate(ws, "cnn@1", "squeezing", "--data", "train@1", "--test", "test@1",
                   "--limit", "120", *QUICK_EVASION)
    rows = {r["metric"]: r for r in out["rows"]}
    assert {"detection_rate_fgsm", "detection_rate_pgd", "defence_fpr"} <= set(rows)
    assert rows["defence_fpr"]["after"] <= 0.15
    folder = Path(out["path"])
    data = json.loads((folder / "defence.json").read_text())
    assert data["evidence"]["fpr"] == rows["defence_fpr"]["after"]
    assert data["threshold"] == out["metrics"]["threshold"]
    with transaction(ws.settings) as s:
        parent = s.execute(select(ModelVersion).where(ModelVersion.version == 1)).scalar_one()
        child = s.execute(select(ModelVersion).where(ModelVersion.version == 2)).scalar_one()
        target = load_target(s, ws.settings, child)
        weights = {e["path"]: e["sha256"] for e in child.manifest}
        assert weights["model.safetensors"] == {e["path"]: e["sha256"] for e in parent.manifest}["model.safetensors"]
        assert "defence.json" in weights
        assert [e.dataset.ref for e in child.trained_on] == ["train@1"]
    det = FeatureSqueezingDetector.from_json(folder, target=target)
    X = np.load(files["root"] / "test.npz")["X"][:50]
    assert det.flag(X).mean() <= 0.2
    gateway = load_defence(folder, target)
    assert gateway is not None and np.allclose(gateway["score"](X), det.score(X))
    # same weights: the child's evasion run repeats the parent's numbers
    runs = json.loads(ws.invoke("results", "cnn@2", "--json").output)["runs"]
    ev = next(r for r in runs if r["suite"] == "evasion")
    assert ev["params"]["weights_identical_to"] == "cnn@1"
    assert rows["ars"]["before"] == rows["ars"]["after"]


def test_dp_training_reports_the_privacy_budget_and_reruns_privacy(sqlite_workspace, files):
    ws = sqlite_workspace
    setup_ws(ws, files)
    out = mitigate(ws, "cnn@1", "dp", "--data", "train@1", "--test", "test@1", "--epochs", "2",
                   "--epsilon", "4", "--limit", "150", "-o", "privacy.reference_models=0",
                   "-o", "privacy.inversion=false")
    rows = {r["metric"]: r for r in out["rows"]}
    assert rows["epsilon"]["before"] is None and 0 < rows["epsilon"]["after"] <= 4.05
    assert rows["membership_advantage"]["after"] is not None
    assert rows["membership_advantage"]["before"] is not None
    m = out["metrics"]
    assert m["accountant"] == "prv" and m["steps"] > 0 and m["noise_multiplier"] > 0
    shown = json.loads(ws.invoke("show", "cnn@2", "--json").output)
    assert shown["derivation"]["metrics"]["epsilon"] == pytest.approx(m["epsilon"])
    assert set(out["runs"]) == {"privacy"}


def test_sanitization_drops_flipped_labels_and_the_retrained_model_is_more_accurate(sqlite_workspace, files):
    ws = sqlite_workspace
    setup_ws(ws, files, model="cnn-poisoned", train="poisoned")
    out = mitigate(ws, "cnn@1", "sanitize", "--data", "poisoned@1", "--test", "test@1",
                   "--epochs", "30", "-o", "integrity.backdoor=false")
    rows = {r["metric"]: r for r in out["rows"]}
    # same architecture and epochs: the model retrained on the cleaned data is clearly better
    assert rows["clean_accuracy"]["after"] > rows["clean_accuracy"]["before"] + 0.03, rows
    assert rows["label_issue_fraction"]["after"] < rows["label_issue_fraction"]["before"]
    assert out["new_dataset"] == "poisoned@2"
    ds = json.loads(ws.invoke("show", "poisoned@2", "--json").output)
    assert ds["derived_from"] == "poisoned@1"
    dropped = set(ds["derivation"]["dropped_rows"])
    assert len(dropped & files["flipped"]) / len(files["flipped"]) > 0.7  # most flips found
    assert len(dropped & files["flipped"]) / len(dropped) > 0.5  # and most drops are flips
    assert ds["rows"] == len(np.load(files["root"] / "poisoned.npz")["y"]) - len(dropped)
    assert Path(ds["path"]).is_relative_to(ws.settings.artifacts_dir)
    shown = json.loads(ws.invoke("show", "cnn@2", "--json").output)
    assert shown["trained_on"] == ["poisoned@2"] and shown["derivation"]["new_dataset"] == "poisoned@2"


def test_bad_input_is_one_line_and_writes_nothing(ready, files, tmp_path):
    ws = ready
    root = files["root"]
    for name in ("train", "test"):
        ws.invoke("register", "dataset", str(root / f"{name}.npz"), "--name", name, "--target", "y")
    tiny = module_to_spec([{"type": "Flatten"}, {"type": "Linear", "in_features": 64, "out_features": 10}],
                          input_shape=[1, 8, 8], classes=[str(i) for i in range(10)])
    save_torch_model(tmp_path / "tiny", build_module(tiny), tiny)
    ws.invoke("register", "model", str(tmp_path / "tiny"), "--name", "tiny", "--framework", "torch",
              "--domain", "general", "--trained-on", "train@1")
    before = counts(ws)
    cases = [
        (("tiny@1", "nope", "--data", "train@1"), "unknown mitigation 'nope'"),
        (("tiny@1", "pgd", "--data", "train@1", "--temperature", "5"), "--temperature does not apply"),
        (("tiny@1", "dp", "--data", "train@1", "--test", "train@1"), "is the training data"),
        (("tiny@1", "dp", "--data", "train@1"), "pass --test"),
        (("tiny@9", "dp", "--data", "train@1", "--test", "test@1"), "unknown model 'tiny@9'"),
        (("tiny@1", "pgd", "--data", "nothere@1", "--test", "test@1"), "unknown dataset"),
        (("tiny@1", "pgd", "--data", "train@1", "--test", "test@1", "--eps", "x"), "bad --eps"),
        (("tiny@1", "squeezing", "--data", "train@1", "--test", "test@1", "-o", "bad"), "SUITE.KEY=VALUE"),
        (("tiny@1", "sanitize", "--data", "train@1", "--test", "test@1", "--rows", "5000"), "outside the dataset"),
    ]
    for args, message in cases:
        res = ws.invoke("mitigate", *args)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.stderr and res.stderr.count("\n") == 1, res.stderr
    # and as a real process: one line on stderr, no traceback
    res = ws.run("mitigate", "tiny@1", "pgd", "--data", "train@1", "--temperature", "5")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert counts(ws) == before


def test_a_failure_while_storing_leaves_no_files_and_no_records(sqlite_workspace, files, monkeypatch):
    import riskloop.inventory.assets as assets

    ws = sqlite_workspace
    setup_ws(ws, files)
    before = counts(ws)

    def broken(*_a, **_k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(assets, "register_model", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        ws.invoke("mitigate", "cnn@1", "sanitize", "--data", "train@1", "--test", "test@1",
                  "--rows", "1,2,3", "--epochs", "1", "--no-reassess")
    assert counts(ws) == before
    art = ws.settings.artifacts_dir
    leftovers = [p for p in art.rglob("*") if p.is_file()] if art.exists() else []
    assert not [p for p in leftovers if "models" in p.parts or "datasets" in p.parts], leftovers
