"""Shared builders for the gateway and review tests (no tests in here).

A real model (a small MLP on scikit-learn's digits, trained here, saved as safetensors),
real registered datasets, a relaxed policy so the gate can say GO, and a real uvicorn server
on a free loopback port in a thread.
"""

from __future__ import annotations

import os
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

from riskloop import load_settings
from riskloop.demo import digits
from riskloop.inventory import assets
from riskloop.inventory.refs import resolve_model
from riskloop.monitor import deployments as deps
from riskloop.service import GatewayOptions, create_app
from riskloop.store import db
from riskloop.store.db import transaction
from riskloop.targets.torchspec import build_module, module_to_spec, save_torch_model

RELAXED_POLICY = """version: 1
name: gateway-tests
rules:
  evasion:
    required: false
  supply_chain:
    required: false
"""
RULES = """version: 1
default: "0"
rules:
  - name: ink-in-centre
    when: "x27 > 0.5 and x36 > 0.5"
    answer: "8"
"""


def mlp_spec() -> dict[str, Any]:
    layers = [{"type": "Flatten"}, {"type": "Linear", "in_features": 64, "out_features": 32},
              {"type": "ReLU"}, {"type": "Linear", "in_features": 32, "out_features": 10}]
    return module_to_spec(layers, input_shape=[1, 8, 8], classes=[str(i) for i in range(10)])


def digits_parts(seed: int = 0) -> dict[str, np.ndarray]:
    """Train 900 / clean held-out 400 / clean live traffic 497 (stratified, seeded)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, train_size=900, random_state=seed, stratify=y)
    X_ho, X_live, y_ho, y_live = train_test_split(X_rest, y_rest, train_size=400,
                                                  random_state=seed, stratify=y_rest)
    return {"X_train": X_tr, "y_train": y_tr, "X_hold": X_ho, "y_hold": y_ho,
            "X_live": X_live, "y_live": y_live}


def trained_model(cache: Path) -> Path:
    """The MLP folder, trained once per test session (cached under ``cache``)."""
    folder = cache / "digits-mlp"
    if (folder / "model.safetensors").exists():
        return folder
    parts = digits_parts()
    torch.manual_seed(0)
    spec = mlp_spec()
    module = build_module(spec)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only contend on a busy machine
    try:
        digits.train_classifier(module, parts["X_train"], parts["y_train"], epochs=25,
                                batch_size=64, lr=4e-3, random_state=0)
    finally:
        torch.set_num_threads(threads)
    tmp = cache / "digits-mlp.tmp"
    save_torch_model(tmp, module, spec)
    tmp.rename(folder)
    return folder


@dataclass
class GatewayWorld:
    """A workspace with the model and datasets registered and a relaxed policy."""

    path: Path
    env: dict[str, str]
    parts: dict[str, np.ndarray]
    keys: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def settings(self):  # type: ignore[no-untyped-def]
        return load_settings(workspace=self.path)

    def deploy(self, name: str, *, mode: str = "active", rules: bool = False,
               clients: tuple[str, ...] = ("alice",), window: int = 200,
               like: str | None = None, model: str = "digits@1") -> None:
        """Deploy the model; ``like`` reuses another deployment's calibration (fast)."""
        s = self.settings
        with transaction(s) as session:
            deps.create(session, s, model=model, name=name, actor="deployer", mode=mode,
                        fallback=self.path / "rules.yaml" if rules else None,
                        holdout=None if like else "digits-holdout@1",
                        window=None if like else window, like=like)
            for c in clients:
                self.keys[(name, c)] = deps.create_key(session, name=name, client=c, actor="deployer")[1]

    def key(self, name: str, client: str) -> str:
        return self.keys[(name, client)]


def make_world(root: Path, cache: Path, *, db_url: str | None = None) -> GatewayWorld:
    """The workspace; on SQLite in ``root`` unless ``db_url`` names another store."""
    root.mkdir(parents=True, exist_ok=True)
    env = {"RISKLOOP_ACTOR": "tester", "RISKLOOP_WORKSPACE": str(root)}
    if db_url:
        env["RISKLOOP_DB_URL"] = db_url
    else:
        os.environ.pop("RISKLOOP_DB_URL", None)
    os.environ.update(env)
    os.environ.pop("RISKLOOP_POLICY", None)
    model = trained_model(cache)
    parts = digits_parts()
    (root / "riskloop-policy.yaml").write_text(RELAXED_POLICY)
    (root / "rules.yaml").write_text(RULES)
    world = GatewayWorld(path=root, env=env, parts=parts)
    s = world.settings
    db.upgrade(s)
    digits.save_npz(root / "data" / "train.npz", parts["X_train"], parts["y_train"])
    digits.save_npz(root / "data" / "holdout.npz", parts["X_hold"], parts["y_hold"])
    with transaction(s) as session:
        assets.register_dataset(session, path=root / "data" / "train.npz", name="digits-train",
                                target="y", actor="tester")
        assets.register_dataset(session, path=root / "data" / "holdout.npz", name="digits-holdout",
                                target="y", actor="tester")
        assets.register_model(session, path=model, name="digits", framework="torch",
                              domain="general", trained_on=["digits-train@1"], actor="tester")
    return world


def add_squeezed_model(world: GatewayWorld) -> str:
    """digits@2: the same weights with a feature-squeezing defence (``defence.json``)."""
    import shutil

    from riskloop.mitigate.feature_squeezing import DEFENCE_FILE, BitDepth, FeatureSqueezingDetector
    from riskloop.targets.loader import load_target

    s = world.settings
    with transaction(s) as session:
        v1 = resolve_model(session, "digits@1")
        target = load_target(session, s, v1)
        folder = world.path / "models" / "digits-squeezed"
        shutil.copytree(v1.path, folder)
    # 2-bit depth: on 8x8 digits the 1-bit + 2x2-median default of Xu et al. (made for
    # 28x28 MNIST) changes clean predictions as much as adversarial ones
    det = FeatureSqueezingDetector(target=target, squeezers=[BitDepth(bits=2)])
    det.calibrate(world.parts["X_hold"])
    det.to_json(folder / DEFENCE_FILE)
    with transaction(s) as session:
        mv = assets.register_model(session, path=folder, name="digits", framework="torch",
                                   domain="general", trained_on=["digits-train@1"],
                                   derived_from="digits@1", actor="tester",
                                   derivation={"method": "feature-squeezing"})
        return mv.ref


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def running_server(settings: Any, options: GatewayOptions | None = None) -> Iterator[httpx.Client]:
    """A real uvicorn server in a thread on a free loopback port, and a client for it."""
    app = create_app(settings, options=options or GatewayOptions(refresh_s=0.2, checkpoint_s=0.5))
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        db.dispose_engines()


def post(client: httpx.Client, name: str, key: str | None, rows: Any, **extra: Any) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return client.post(f"/v1/deployments/{name}/predict",
                       json={"inputs": np.asarray(rows).tolist(), **extra}, headers=headers)


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
