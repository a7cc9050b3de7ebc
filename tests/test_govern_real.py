"""End to end on a real model: a small network trained on load_digits, attacked with ART's FGSM (the peer
library computes the robust accuracies), recorded as an evasion run, then gated and scored."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from riskloop import AssessmentResult
from riskloop.assess.runs import record_run
from riskloop.demo import digits
from riskloop.inventory import assets
from riskloop.store.db import transaction
from riskloop.targets.torchspec import build_module, module_to_spec, save_torch_model

art = pytest.importorskip("art")


def test_art_measured_robustness_drives_the_gate(ready_sqlite, one_thread):
    from art.attacks.evasion import FastGradientMethod
    from art.estimators.classification import PyTorchClassifier

    ws = ready_sqlite
    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=0)
    torch.manual_seed(0)
    spec = module_to_spec(
        [{"type": "Flatten"}, {"type": "Linear", "in_features": 64, "out_features": 64},
         {"type": "ReLU"}, {"type": "Linear", "in_features": 64, "out_features": 10}],
        input_shape=[1, 8, 8], classes=[str(i) for i in range(10)], input_range=(0.0, 1.0))
    module = digits.train_classifier(build_module(spec), X_tr, y_tr, epochs=20, batch_size=128,
                                      lr=3e-3, random_state=0)
    folder = save_torch_model(ws.path / "cnn", module, spec)
    X, y = X_te[:300], y_te[:300]
    clf = PyTorchClassifier(model=module, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 8, 8),
                            nb_classes=10, clip_values=(0.0, 1.0))
    clean = float((clf.predict(X).argmax(1) == y).mean())
    curve = []
    for eps in (0.02, 0.1, 0.2):
        adv = FastGradientMethod(clf, eps=eps, batch_size=300).generate(X, y=np.eye(10)[y])
        curve.append({"eps": eps, "robust_accuracy": float((clf.predict(adv).argmax(1) == y).mean())})
    ars = curve[1]["robust_accuracy"]
    assert clean > 0.8 and ars < clean  # a real, undefended model: FGSM hurts it
    with transaction(ws.settings) as s:
        mv = assets.register_model(s, path=folder, name="cnn", framework="torch", domain="general",
                                   actor="alice")
        record_run(s, actor="alice", model=mv, dataset=None, result=AssessmentResult(
            suite="evasion", metrics={"ars": ars, "eps": 0.1, "clean_accuracy": clean, "curve": curve},
            params={"attack": "art.FastGradientMethod", "n": len(y)}))
        record_run(s, actor="alice", model=mv, dataset=None, result=AssessmentResult(
            suite="supply-chain", metrics={"files": 2, "critical": 0, "needs_trust": 0,
                                           "verdict": "clean"}))
    res = ws.invoke("gate", "cnn@1", "--format", "json")
    out = json.loads(res.stdout)
    row = next(r for r in out["rules"] if r["id"] == "evasion.ars")
    assert row["value"] == pytest.approx(ars, abs=1e-6)
    assert res.exit_code == (0 if ars >= 0.85 else 1)
    # Between measured points the gate reads the next larger epsilon (a lower bound).
    policy = ws.path / "p.yaml"
    policy.write_text("rules:\n  evasion:\n    eps: 0.05\n")
    out = json.loads(ws.invoke("gate", "cnn@1", "--format", "json", "--policy", str(policy)).stdout)
    assert next(r for r in out["rules"] if r["id"] == "evasion.ars")["value"] == pytest.approx(ars)
    risk = json.loads(ws.invoke("risk", "cnn@1", "--json").stdout)
    evasion = next(t for t in risk["threats"] if t["threat_id"] == "evasion")
    from riskloop.govern.scoring import band

    assert evasion["likelihood"] == band("evasion_success", 1 - ars)
