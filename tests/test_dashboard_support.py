"""Builders for the console tests (no tests in here): a small but real workspace.

Three models trained here on scikit-learn's digits (a well-trained MLP, a copy of it
registered for a high-risk domain, a barely trained one), each with a robustness curve
measured here by FGSM and stored through ``record_run``; gate decisions; a deployment created
through ``monitor.deployments``; one token per role; and real traffic through the gateway
(clean rows, then inverted images), so the drift alert, the incident and the review items are
written by the gateway itself.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
import uvicorn
from fastapi.testclient import TestClient

from riskloop import AssessmentResult, Finding, load_settings
from riskloop.assess.runs import record_run
from riskloop.demo import digits
from riskloop.govern import approvals
from riskloop.govern import policy as policy_mod
from riskloop.inventory import assets
from riskloop.inventory.refs import resolve_model
from riskloop.monitor import deployments as deps
from riskloop.service import GatewayOptions, create_app, tokens
from riskloop.store import db
from riskloop.store.db import transaction
from riskloop.targets.torchspec import (
    build_module,
    load_torch_model,
    module_to_spec,
    save_torch_model,
)

POLICY = """version: 1
name: console-tests
evidence:
  on_missing: no-go
rules:
  evasion:
    required: true
    min_ars: 0.6
    eps: 0.05
  supply_chain:
    required: false
overrides:
  tiers:
    high:
      approval:
        required: true
      rules:
        signature:
          required: false
        privacy:
          required: false
"""
RULES = """version: 1
default: "0"
rules:
  - name: ink-in-centre
    when: "x27 > 0.5 and x36 > 0.5"
    answer: "8"
"""
EPS = (0.0, 0.02, 0.05, 0.1, 0.2)
ROLES = {"viewer": "vera", "engineer": "eric", "risk-officer": "rita", "admin": "ada"}
REGISTRANT = "tester"
DEPLOYMENT = "digits-live"


@dataclass
class ConsoleWorld:
    """The seeded workspace: settings, a token per role, what the tests look for."""

    path: Path
    tokens: dict[str, str] = field(default_factory=dict)
    client_key: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self):  # type: ignore[no-untyped-def]
        return load_settings(workspace=self.path)


def _mlp(folder: Path, epochs: int, X: np.ndarray, y: np.ndarray, seed: int) -> torch.nn.Module:
    """Train (once: ``folder`` caches it across test modules) and load the digits MLP."""
    if not (folder / "model.safetensors").exists():
        layers = [{"type": "Flatten"}, {"type": "Linear", "in_features": 64, "out_features": 32},
                  {"type": "ReLU"}, {"type": "Linear", "in_features": 32, "out_features": 10}]
        spec = module_to_spec(layers, input_shape=[1, 8, 8], classes=[str(i) for i in range(10)])
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a tiny model: one thread beats two on a busy machine
        try:
            torch.manual_seed(seed)
            module = build_module(spec)
            digits.train_classifier(module, X, y, epochs=epochs, batch_size=64, lr=3e-3,
                                    random_state=seed)
        finally:
            torch.set_num_threads(threads)
        tmp = folder.with_name(folder.name + ".tmp")
        save_torch_model(tmp, module, spec)
        tmp.rename(folder)
    return load_torch_model(folder)[0]


def fgsm_curve(module: torch.nn.Module, X: np.ndarray, y: np.ndarray) -> list[dict[str, float]]:
    """Robust accuracy under FGSM (L-inf, clipped to [0, 1]) at each epsilon of ``EPS``."""
    xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    x = xt.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(module(x), yt).backward()
    sign = x.grad.sign()  # type: ignore[union-attr]
    out = []
    with torch.no_grad():
        for eps in EPS:
            adv = (xt + eps * sign).clamp(0.0, 1.0)
            acc = float((module(adv).argmax(1) == yt).float().mean())
            out.append({"eps": eps, "robust_accuracy": round(acc, 6), "attack": "fgsm"})
    return out


def _record_evasion(session: Any, mv: Any, module: torch.nn.Module, X: np.ndarray,
                    y: np.ndarray) -> dict[str, Any]:
    curve = fgsm_curve(module, X, y)
    ars = next(p["robust_accuracy"] for p in curve if p["eps"] == 0.05)
    findings = []
    if ars < 0.6:
        findings.append(Finding("evasion", "high", f"FGSM at eps 0.05 leaves {ars:.0%} accuracy",
                                detail="robust accuracy below the policy minimum",
                                metric="ars", value=ars))
    record_run(session, actor=REGISTRANT, model=mv, dataset=None, result=AssessmentResult(
        suite="evasion", metrics={"ars": ars, "eps": 0.05, "clean_accuracy": curve[0]["robust_accuracy"],
                                  "curve": curve[1:]},
        params={"attack": "fgsm", "eps": 0.05}, findings=findings))
    return {"ars": ars, "curve": curve}


def build_world(root: Path, cache: Path) -> ConsoleWorld:
    """Everything but the traffic (see :func:`send_traffic`); trained models kept in ``cache``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    root.mkdir(parents=True, exist_ok=True)
    world = ConsoleWorld(path=root)
    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, train_size=900, random_state=0, stratify=y)
    X_ho, X_live, y_ho, y_live = train_test_split(X_rest, y_rest, train_size=400, random_state=0,
                                                  stratify=y_rest)
    world.facts.update(X_live=X_live, y_live=y_live)
    (root / "riskloop-policy.yaml").write_text(POLICY)
    (root / "rules.yaml").write_text(RULES)
    digits.save_npz(root / "data" / "train.npz", X_tr, y_tr)
    digits.save_npz(root / "data" / "holdout.npz", X_ho, y_ho)
    cache.mkdir(parents=True, exist_ok=True)
    good = _mlp(cache / "digits-mlp", 30, X_tr, y_tr, seed=0)
    weak = _mlp(cache / "digits-mlp-1-epoch", 1, X_tr, y_tr, seed=1)
    for name, src in (("digits", "digits-mlp"), ("scorer", "digits-mlp"),
                      ("legacy", "digits-mlp-1-epoch")):
        shutil.copytree(cache / src, root / "models" / name)
    # The scorer's own model card makes its content (and digest) its own.
    (root / "models" / "scorer" / "MODEL_CARD.md").write_text("# scorer\nCheque amounts.\n")
    s = world.settings
    db.upgrade(s)
    pol = policy_mod.load(workspace=root)
    with transaction(s) as session:
        tr = assets.register_dataset(session, path=root / "data" / "train.npz", name="digits-train",
                                     target="y", actor=REGISTRANT)
        assets.register_dataset(session, path=root / "data" / "holdout.npz", name="digits-holdout",
                                target="y", actor=REGISTRANT)
        specs = (("digits", "general", good), ("scorer", "finance", good), ("legacy", "general", weak))
        for name, domain, module in specs:
            mv = assets.register_model(session, path=root / "models" / name, name=name,
                                       framework="torch", domain=domain, trained_on=[tr.ref],
                                       owner="ml-team", intended_use=f"{name} <b>on digits</b>",
                                       actor=REGISTRANT)
            world.facts[name] = _record_evasion(session, mv, module, X_ho, y_ho)
            gate = approvals.evaluate(session, mv, pol)
            approvals.record(session, actor=REGISTRANT, mv=mv, policy=pol, result=gate)
            world.facts[name]["gate"] = gate.decision
        for role, owner in ROLES.items():
            world.tokens[role] = tokens.create_token(session, owner=owner, role=role,
                                                     actor=REGISTRANT)[1]
    with transaction(s) as session:
        # No fallback rules yet: the drift incident stays 'identified' (the gateway contains
        # automatically only where rules exist), for a risk officer to contain by hand.
        deps.create(session, s, model="digits@1", name=DEPLOYMENT, actor=REGISTRANT,
                    mode="active", holdout="digits-holdout@1", window=100, policy=pol)
        world.client_key = deps.create_key(session, name=DEPLOYMENT, client="teller-app",
                                           actor=REGISTRANT)[1]
        mv = resolve_model(session, "digits@1")
        approvals.promote(session, actor=REGISTRANT, mv=mv, policy=pol, to="production").check()
    return world


def send_traffic(client: httpx.Client | TestClient, world: ConsoleWorld) -> None:
    """Clean live rows (some land in the review queue), then inverted digits (input drift)."""
    X_live = world.facts["X_live"]
    headers = {"X-API-Key": world.client_key}
    url = f"/v1/deployments/{DEPLOYMENT}/predict"
    for chunk in (X_live[:100], X_live[100:200]):
        r = client.post(url, json={"inputs": chunk.tolist()}, headers=headers)
        assert r.status_code == 200, r.text
    r = client.post(url, json={"inputs": (1.0 - X_live[200:300]).tolist()}, headers=headers)
    assert r.status_code == 200, r.text


def seeded(root: Path, cache: Path) -> ConsoleWorld:
    """Build the world, send its traffic through an in-process app, then attach fallback
    rules so that containing the incident leaves the deployment able to answer."""
    world = build_world(root, cache)
    with TestClient(create_app(world.settings)) as client:
        send_traffic(client, world)
    with transaction(world.settings) as session:
        deps.set_rules(session, name=DEPLOYMENT, path=root / "rules.yaml", actor=REGISTRANT)
    db.dispose_engines()
    return world


@contextmanager
def live_server(settings: Any) -> Iterator[str]:
    """A real uvicorn server on a free loopback port (in a thread); yields its base URL."""
    app = create_app(settings, options=GatewayOptions(refresh_s=0.2, checkpoint_s=0.5))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the console server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        db.dispose_engines()
