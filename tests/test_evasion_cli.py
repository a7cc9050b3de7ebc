"""``riskloop assess --suite evasion`` and ``riskloop results`` end to end: a real CNN, real
files, the stored run and its metrics contract, and one-line errors that record nothing."""

from __future__ import annotations

import json
import os
import pickle
import socket

import numpy as np
import pytest

from riskloop.demo import digits
from riskloop.targets.torchspec import build_module, save_torch_model
from tests.helpers import write_model_folder

CHEAP = ["--limit", "60", "--eps", "0.05,0.1", "--standard-eps", "0.1",
         "-o", "apgd-ce.steps=10", "-o", "square.queries=40"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def cnn_files(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("evasion-cli")
    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=0)
    spec = digits.digits_spec()
    spec["layers"] = digits.cnn_layers(channels=(4, 8))
    module = build_module(spec)
    digits.train_classifier(module, X_tr, y_tr, epochs=6, random_state=0)
    model = save_torch_model(root / "cnn", module, spec)
    test = digits.save_npz(root / "test.npz", X_te, y_te)
    bad_shape = digits.save_npz(root / "flat5.npz", X_te[:, 0, 0, :5], y_te)
    bad_label = digits.save_npz(root / "labels.npz", X_te, np.where(y_te == 3, 12, y_te))
    return {"model": model, "test": test, "bad_shape": bad_shape, "bad_label": bad_label}


def _setup(ws, files):
    for name in ("test", "bad_shape", "bad_label"):
        res = ws.invoke("register", "dataset", str(files[name]), "--name", name.replace("_", "-"),
                        "--target", "y")
        assert res.exit_code == 0, res.output
    res = ws.invoke("register", "model", str(files["model"]), "--name", "cnn", "--framework",
                    "torch", "--domain", "general")
    assert res.exit_code == 0, res.output


def test_assess_stores_the_run_with_the_metrics_contract(ready, cnn_files):
    _setup(ready, cnn_files)
    res = ready.invoke("assess", "cnn@1", "--data", "test@1", *CHEAP, "--json")
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)
    m = run["metrics"]
    assert run["suite"] == "evasion" and run["status"] == "complete"
    assert {"ars", "clean_accuracy", "eps", "curve", "per_attack"} <= set(m)
    assert 0.0 <= m["ars"] <= m["clean_accuracy"] <= 1.0 and m["eps"] == 0.1
    assert [p["eps"] for p in m["curve"]] == [0.05, 0.1]
    assert m["curve"][-1]["robust_accuracy"] == m["ars"]
    assert m["verification"]["method"] == "crown-ibp" and m["verification"]["ran"] is True
    assert all(0 <= p["verified_accuracy"] <= p["robust_accuracy"] for p in m["curve"])
    for row in m["per_attack"]:
        assert {"attack", "eps", "robust_accuracy", "success_rate", "median_perturbation",
                "queries"} <= set(row)
    assert [r["attack"] for r in m["per_attack"]] == ["pgd", "apgd-ce", "pgd", "apgd-ce", "square"]
    assert isinstance(run["trustworthy"], bool) and isinstance(run["warnings"], list)
    assert run["model_digest"] and run["dataset_digest"] and run["code_version"]
    assert run["params"]["attacks"][0]["attack"] == "pgd" and run["params"]["limit"] == 60
    head = run["findings"][0]
    assert head["threat_id"] == "evasion" and head["metric"] == "ars" and head["value"] == m["ars"]
    with np.load(run["artifacts"]["adversarial_examples"], allow_pickle=False) as npz:
        assert npz["x_adv"].shape == (60, 1, 8, 8)
        assert int((~npz["robust"]).sum()) >= 1
    listed = json.loads(ready.invoke("results", "cnn@1", "--suite", "evasion", "--json").stdout)
    assert [r["id"] for r in listed["runs"]] == [run["id"]]
    audit = json.loads(ready.invoke("audit", "--action", "assessment.record", "--json").stdout)
    assert audit[-1]["payload"]["suite"] == "evasion" and audit[-1]["subject"] == "model:cnn@1"


def test_table_output_and_results_listing(ready_sqlite, cnn_files):
    _setup(ready_sqlite, cnn_files)
    res = ready_sqlite.invoke("assess", "cnn@1", "--data", "test@1", *CHEAP)
    assert res.exit_code == 0, res.output
    assert "ARS" in res.stdout and "robustness curve" in res.stdout and "apgd-ce" in res.stdout
    assert "proved robust (crown-ibp" in res.stdout
    off = ready_sqlite.invoke("assess", "cnn@1", "--data", "test@1", *CHEAP, "-o", "verify=false", "--json")
    run = json.loads(off.stdout)
    assert run["params"]["verify"] is False and run["metrics"]["curve"][0]["verified_accuracy"] is None
    out = ready_sqlite.invoke("results", "cnn@1")
    assert out.exit_code == 0 and "evasion" in out.stdout and "ARS" in out.stdout
    # the same seed gives the same numbers
    a = json.loads(ready_sqlite.invoke("assess", "cnn@1", "--data", "test@1", *CHEAP, "--json").stdout)
    b = json.loads(ready_sqlite.invoke("assess", "cnn@1", "--data", "test@1", *CHEAP, "--json").stdout)
    assert a["metrics"]["curve"] == b["metrics"]["curve"] and a["id"] != b["id"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_bad_input_is_one_line_and_records_nothing(ready_sqlite, cnn_files, tmp_path):
    ws = ready_sqlite
    _setup(ws, cnn_files)
    with open(tmp_path / "evil.pkl", "wb") as fh:  # a pickle that would run a shell command
        pickle.dump(_Evil(), fh)
    for path, name, fw in ((tmp_path / "evil.pkl", "evil", "sklearn"),
                           (write_model_folder(tmp_path / "plain"), "plain", "torch")):
        assert ws.invoke("register", "model", str(path), "--name", name, "--framework", fw,
                         "--domain", "general").exit_code == 0
    cases = [
        (["cnn@1", "--data", "bad-shape@1"], "inputs of shape (5,) but the model expects (1, 8, 8)"),
        (["cnn@1", "--data", "bad-label@1"], "label 12 is outside the model's class range 0..9"),
        (["cnn@1", "--data", "test@1", "--eps", "2"], "eps 2 is out of range"),
        (["cnn@1", "--data", "test@1", "--eps", "abc"], "bad --eps value 'abc'"),
        (["cnn@1", "--data", "test@1", "--suite", "nope"], "unknown suite 'nope'"),
        (["cnn@1", "--data", "test@1", "-o", "pgd.stepz=3"], "attack 'pgd'"),
        (["cnn@1", "--data", "test@1", "--endpoint", f"http://127.0.0.1:{_closed_port()}/predict"],
         "is unreachable"),
        (["evil@1", "--data", "test@1"], "model 'evil@1'"),
        (["plain@1", "--data", "test@1"], "format 'folder', which riskloop cannot load"),
        (["ghost@1", "--data", "test@1"], "unknown model 'ghost@1'"),
    ]
    for args, needle in cases:
        res = ws.invoke("assess", *args, *(["--limit", "20"]))
        assert res.exit_code == 2, (args, res.output)
        assert needle in res.stderr, (args, res.stderr)
        assert res.stderr.startswith("error: ") and res.stderr.strip().count("\n") == 0
    runs = json.loads(ws.invoke("results", "cnn@1", "--json").stdout)["runs"]
    assert [r["suite"] for r in runs if r["suite"] == "evasion"] == []
    proc = ws.run("assess", "cnn@1", "--data", "bad-label@1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "class range" in proc.stderr
