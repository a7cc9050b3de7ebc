"""The demo scenario as a sequence of steps; the CLI renders each step's result as it comes.

Each step returns ``(title, data)``. Later loop steps (measure, manage, monitor) append their
own steps here, so ``riskloop demo`` walks the whole loop.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
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


def run(settings: Settings, *, random_state: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    ws = settings.workspace
    db.upgrade(settings)
    yield "store", {"workspace": str(ws), "database": settings.db_url}

    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=random_state)
    train_path = digits.save_npz(ws / "data" / "digits-train.npz", X_tr, y_tr)
    test_path = digits.save_npz(ws / "data" / "digits-test.npz", X_te, y_te)
    module, spec = digits.train_digits_cnn(X_tr, y_tr, random_state=random_state)
    acc = digits.accuracy(module, X_te, y_te)
    model_dir = save_torch_model(ws / "models" / MODEL_NAME / "v1", module, spec)
    params = sum(p.numel() for p in module.parameters())
    yield "train", {"model": str(model_dir), "parameters": params, "test_accuracy": round(acc, 4),
                    "train_rows": len(y_tr), "test_rows": len(y_te)}

    with transaction(settings) as s:
        tr = assets.register_dataset(s, path=train_path, name="digits-train", target="y",
                                     actor=settings.actor)
        te = assets.register_dataset(s, path=test_path, name="digits-test", target="y",
                                     actor=settings.actor)
        mv = assets.register_model(
            s, path=model_dir, name=MODEL_NAME, framework="torch", domain="finance",
            trained_on=[tr.ref], owner="demo-team",
            intended_use="Read handwritten digits on scanned cheques", actor=settings.actor,
        )
        reg = {"datasets": [tr.ref, te.ref], "model": mv.ref, "tier": mv.tier,
               "digest": mv.digest}
    yield "register", reg

    key, pub = signing.keygen(ws / "keys" / "demo-key.pem", force=True)
    with transaction(settings) as s:
        mv = resolve_model(s, reg["model"])
        sig = signing.sign_model(s, settings, mv, key_path=key)
        signed = {"model": mv.ref, "signature": sig.signature_path, "public_key": str(pub)}
    with transaction(settings) as s:
        mv = resolve_model(s, reg["model"])
        ok, problems = signing.verify_model(s, settings, mv)
        signed.update({"verified": ok, "problems": problems})
    yield "sign", signed

    with transaction(settings) as s:
        inventory = {
            "models": [assets.model_dict(m) for m in assets.list_models(s)],
            "datasets": [assets.dataset_dict(d) for d in assets.list_datasets(s)],
        }
    yield "inventory", inventory
