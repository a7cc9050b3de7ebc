"""Small learners that attacks train themselves: reference models, surrogates, probes.

An attacker who trains shadow, reference or surrogate models needs an architecture. The
default follows the target: a fresh copy of a torch target's module (same layers, weights
re-initialised), a clone of a scikit-learn target's estimator, and otherwise a small torch MLP
over the flattened input. Every learner is seeded and trains on the CPU.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ...errors import InputError

log = logging.getLogger(__name__)


class Learner(Protocol):
    """What an attack trains: ``fit`` on inputs and labels (indices or soft rows), ``predict_proba``."""

    def fit(self, X: np.ndarray, Y: np.ndarray) -> Learner: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


def _reset(module: nn.Module) -> nn.Module:
    for m in module.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
    return module


def mlp(n_in: int, n_out: int, *, hidden: int = 128) -> nn.Module:
    """Flatten, one hidden ReLU layer, logits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


class TorchLearner:
    """Trains a torch module with Adam on hard labels (cross-entropy) or soft rows (KL).

    ``Y`` of shape (n,) holds class indices; ``Y`` of shape (n, k) holds probabilities, which
    are matched with the soft cross-entropy (equal to KL up to a constant).
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        n_classes: int,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        min_steps: int = 200,
        random_state: int = 0,
    ) -> None:
        self.module = module
        self.min_steps = int(min_steps)
        self.n_classes = int(n_classes)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.random_state = int(random_state)

    def fit(self, X: np.ndarray, Y: np.ndarray) -> TorchLearner:
        torch.manual_seed(self.random_state)
        gen = torch.Generator().manual_seed(self.random_state)
        _reset(self.module)
        Xt = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32))
        soft = np.asarray(Y).ndim == 2
        Yt = torch.as_tensor(np.asarray(Y, dtype=np.float32 if soft else np.int64))
        opt = torch.optim.Adam(self.module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.module.train()
        # At least ``min_steps`` optimiser steps, so a tiny query set is still fitted.
        per_epoch = max(1, int(np.ceil(len(Xt) / self.batch_size)))
        epochs = max(self.epochs, int(np.ceil(self.min_steps / per_epoch)))
        for _ in range(epochs):
            perm = torch.randperm(len(Xt), generator=gen)
            for i in range(0, len(Xt), self.batch_size):
                idx = perm[i : i + self.batch_size]
                opt.zero_grad()
                out = self.module(Xt[idx])
                if soft:
                    loss = -(Yt[idx] * torch.log_softmax(out, dim=1)).sum(dim=1).mean()
                else:
                    loss = nn.functional.cross_entropy(out, Yt[idx])
                loss.backward()
                opt.step()
        self.module.eval()
        return self

    def logits(self, X: np.ndarray) -> np.ndarray:
        outs = []
        with torch.inference_mode():
            for i in range(0, len(X), 1024):
                x = torch.as_tensor(np.ascontiguousarray(X[i : i + 1024], dtype=np.float32))
                outs.append(self.module(x).float().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.n_classes), np.float32)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = self.logits(X).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


class SklearnLearner:
    """A clone of a scikit-learn estimator (hard labels only), re-seeded when it has a seed."""

    def __init__(self, estimator: Any, *, n_classes: int, random_state: int = 0) -> None:
        from sklearn.base import clone

        self.estimator = clone(estimator)
        if "random_state" in self.estimator.get_params():
            self.estimator.set_params(random_state=random_state)
        self.n_classes = int(n_classes)

    def fit(self, X: np.ndarray, Y: np.ndarray) -> SklearnLearner:
        if np.asarray(Y).ndim == 2:
            raise InputError("a scikit-learn learner trains on labels only, not probabilities")
        self.estimator.fit(np.asarray(X).reshape(len(X), -1), Y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        flat = np.asarray(X).reshape(len(X), -1)
        proba = np.asarray(self.estimator.predict_proba(flat), dtype=np.float64)
        full = np.zeros((len(flat), self.n_classes))
        full[:, np.asarray(self.estimator.classes_, dtype=np.int64)] = proba
        return full


ARCHITECTURES = ("auto", "same", "mlp")


def learner_for(
    target: Any,
    *,
    architecture: str = "auto",
    soft_labels: bool = False,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    hidden: int = 128,
    random_state: int = 0,
) -> Learner:
    """A fresh, untrained learner shaped like ``target`` (see the module docstring).

    ``architecture``: "same" copies the target's architecture (a torch module or a
    scikit-learn estimator; an error for other targets), "mlp" uses a small MLP, "auto" takes
    "same" when possible. ``soft_labels`` needs a torch learner, so a scikit-learn target
    then gets the MLP.
    """
    if architecture not in ARCHITECTURES:
        raise InputError(f"unknown architecture '{architecture}': choose one of {', '.join(ARCHITECTURES)}")
    k = len(target.classes)
    module = getattr(target, "module", None)
    estimator = getattr(target, "estimator", None)
    torch_kw = dict(n_classes=k, epochs=epochs, batch_size=batch_size, lr=lr,
                    weight_decay=weight_decay, random_state=random_state)
    if architecture in ("auto", "same"):
        if isinstance(module, nn.Module) and any(True for _ in module.parameters()):
            torch.manual_seed(random_state)
            fresh = copy.deepcopy(module)
            for p in fresh.parameters():
                p.requires_grad_(True)
            return TorchLearner(_reset(fresh).train(), **torch_kw)
        if estimator is not None and not soft_labels and hasattr(estimator, "predict_proba"):
            return SklearnLearner(estimator, n_classes=k, random_state=random_state)
        if architecture == "same":
            raise InputError(
                "the target's architecture is not available to copy (only torch and "
                "scikit-learn targets expose it): use architecture 'mlp'"
            )
    n_in = target.input_spec.n_features
    torch.manual_seed(random_state)
    return TorchLearner(mlp(n_in, k, hidden=hidden), **torch_kw)
