"""The demo scenario as a sequence of steps; the CLI renders each step's result as it comes.

Each step returns ``(title, data)``. Later loop steps (measure, manage, monitor) append their
own steps here, so ``riskloop demo`` walks the whole loop.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import Settings
from ..errors import InputError
from ..inventory import assets, signing
from ..inventory.refs import resolve_model
from ..store import db
from ..store.db import transaction
from ..targets.torchspec import save_torch_model
from . import digits
from .steps_approve import step_approve
from .steps_drift import step_drift
from .steps_evasion import step_evasion
from .steps_govern import step_govern
from .steps_measure import step_extraction, step_fairness, step_privacy
from .steps_mitigate import step_mitigate
from .steps_monitor import step_monitor
from .steps_scan import step_scan

MARKER = ".riskloop-demo"
MODEL_NAME = "digits-cnn"


def prepare_workspace(path: Path) -> Path:
    """Create the demo folder, or reset it when it holds an earlier demo (never anything else)."""
    path = path.resolve()
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise InputError(
                f"'{path}' is not empty and holds no earlier demo: choose an empty folder "
                "with --workspace"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("created by riskloop demo; safe to delete\n")
    return path


@dataclass
class DemoContext:
    """What the steps share: settings, the data arrays and the references registered so far."""

    settings: Settings
    random_state: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


Step = Callable[[DemoContext], Iterator[tuple[str, dict[str, Any]]]]


def step_store(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    db.upgrade(ctx.settings)
    yield "store", {"workspace": str(ctx.settings.workspace), "database": ctx.settings.db_url}


def step_train(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    ws = ctx.settings.workspace
    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=ctx.random_state)
    ctx.data.update(X_train=X_tr, X_test=X_te, y_train=y_tr, y_test=y_te)
    ctx.data["train_path"] = digits.save_npz(ws / "data" / "digits-train.npz", X_tr, y_tr)
    ctx.data["test_path"] = digits.save_npz(ws / "data" / "digits-test.npz", X_te, y_te)
    module, spec = digits.train_digits_cnn(X_tr, y_tr, random_state=ctx.random_state)
    acc = digits.accuracy(module, X_te, y_te)
    model_dir = save_torch_model(ws / "models" / MODEL_NAME / "v1", module, spec)
    ctx.data.update(module=module, spec=spec, model_dir=model_dir)
    params = sum(p.numel() for p in module.parameters())
    yield "train", {"model": str(model_dir), "parameters": params, "test_accuracy": round(acc, 4),
                    "train_rows": len(y_tr), "test_rows": len(y_te)}


def step_register(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    settings = ctx.settings
    with transaction(settings) as s:
        tr = assets.register_dataset(s, path=ctx.data["train_path"], name="digits-train",
                                     target="y", actor=settings.actor)
        te = assets.register_dataset(s, path=ctx.data["test_path"], name="digits-test",
                                     target="y", actor=settings.actor)
        mv = assets.register_model(
            s, path=ctx.data["model_dir"], name=MODEL_NAME, framework="torch", domain="finance",
            trained_on=[tr.ref], owner="demo-team",
            intended_use="Read handwritten digits on scanned cheques", actor=settings.actor,
        )
        ctx.refs.update(train=tr.ref, test=te.ref, model=mv.ref)
        reg = {"datasets": [tr.ref, te.ref], "model": mv.ref, "tier": mv.tier,
               "digest": mv.digest}
    yield "register", reg


def step_sign(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    settings = ctx.settings
    key, pub = signing.keygen(settings.workspace / "keys" / "demo-key.pem", force=True)
    ctx.data["key"] = key
    with transaction(settings) as s:
        mv = resolve_model(s, ctx.refs["model"])
        sig = signing.sign_model(s, settings, mv, key_path=key)
        signed = {"model": mv.ref, "signature": sig.signature_path, "public_key": str(pub)}
    with transaction(settings) as s:
        mv = resolve_model(s, ctx.refs["model"])
        ok, problems = signing.verify_model(s, settings, mv)
        signed.update({"verified": ok, "problems": problems})
    yield "sign", signed


def step_inventory(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    with transaction(ctx.settings) as s:
        inventory = {
            "models": [assets.model_dict(m) for m in assets.list_models(s)],
            "datasets": [assets.dataset_dict(d) for d in assets.list_datasets(s)],
        }
    yield "inventory", inventory


# The loop, in order. Each loop step inserts its own demo steps at its place.
STEPS: list[Step] = [
    step_store,
    step_train,
    step_register,
    step_scan,
    step_sign,
    step_evasion,
    step_privacy,
    step_extraction,
    step_fairness,
    # MEASURE steps (scan, evasion, privacy, fairness, ...) go here
    # MANAGE steps (gate, mitigate, report) go here
    # MONITOR steps (deploy, traffic, incident) go here
    step_drift,
    step_govern,
    step_mitigate,
    step_approve,
    step_monitor,
    step_inventory,
]


def run(settings: Settings, *, random_state: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    ctx = DemoContext(settings=settings, random_state=random_state)
    for step in STEPS:
        yield from step(ctx)
