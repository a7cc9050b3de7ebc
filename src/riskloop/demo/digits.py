"""The demo's data and model: scikit-learn's ``load_digits`` and a small CNN (about 60k weights).

Everything is seeded; training takes a few seconds on 2 cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..targets.torchspec import build_module, module_to_spec


def digits_split(*, random_state: int = 0, test_size: float = 0.4) -> tuple[np.ndarray, ...]:
    """Images as float32 (n, 1, 8, 8) in [0, 1] and int64 labels, split train / test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    return tuple(
        train_test_split(X, y, test_size=test_size, random_state=random_state, stratify=y)
    )


def save_npz(path: Path, X: np.ndarray, y: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, X=X, y=y)
    return path


def cnn_layers(*, channels: tuple[int, int] = (16, 32), classes: int = 10) -> list[dict[str, Any]]:
    c1, c2 = channels
    return [
        {"type": "Conv2d", "in_channels": 1, "out_channels": c1, "kernel_size": 3, "padding": 1},
        {"type": "ReLU"},
        {"type": "Conv2d", "in_channels": c1, "out_channels": c2, "kernel_size": 3, "padding": 1},
        {"type": "ReLU"},
        {"type": "Flatten"},
        {"type": "Linear", "in_features": c2 * 64, "out_features": 32},
        {"type": "ReLU"},
        {"type": "Linear", "in_features": 32, "out_features": classes},
    ]


def digits_spec() -> dict[str, Any]:
    return module_to_spec(
        cnn_layers(), input_shape=[1, 8, 8], classes=[str(i) for i in range(10)],
        input_range=(0.0, 1.0),
    )


def train_classifier(
    module: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    random_state: int = 0,
) -> nn.Module:
    """Plain supervised training with Adam (seeded, deterministic on CPU)."""
    torch.manual_seed(random_state)
    gen = torch.Generator().manual_seed(random_state)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(len(Xt), generator=gen)
        for i in range(0, len(Xt), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            loss_fn(module(Xt[idx]), yt[idx]).backward()
            opt.step()
    module.eval()
    return module


def accuracy(module: nn.Module, X: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        pred = module(torch.from_numpy(X)).argmax(1).numpy()
    return float((pred == y).mean())


def train_digits_cnn(X: np.ndarray, y: np.ndarray, *, random_state: int = 0, epochs: int = 30) -> tuple[nn.Module, dict[str, Any]]:
    torch.manual_seed(random_state)
    spec = digits_spec()
    module = build_module(spec)
    train_classifier(module, X, y, epochs=epochs, random_state=random_state)
    return module, spec
