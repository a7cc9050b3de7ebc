"""A PyTorch module as a white-box target: differentiable logits, input gradients, batching.

Normalisation belongs inside the model (torchspec's ``Normalize`` first layer, or the
``normalization=`` argument here), so attack budgets such as eps are in raw input units,
the way AutoAttack and RobustBench require.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .base import ACCESS_WHITE, InputSpec, guess_kind
from .torchspec import Normalize


def _set_training(module: nn.Module, flag: bool) -> None:
    """Switch train/eval mode; modules from ``torch.export`` are fixed (already traced)."""
    try:
        module.train(flag)
    except NotImplementedError:
        pass


class TorchTarget:
    """White-box target around an ``nn.Module`` that maps inputs to logits.

    The module is used in eval mode. Inside :meth:`attack_mode` (which every attack enters)
    its parameters stop requiring gradients, so a backward pass computes the gradient with
    respect to the input only; the previous state is restored on exit.
    """

    access = ACCESS_WHITE

    def __init__(
        self,
        module: nn.Module,
        *,
        input_spec: InputSpec,
        classes: tuple[str, ...] | list[str],
        normalization: tuple[list[float], list[float]] | None = None,
        batch_size: int = 1024,
        device: str = "cpu",
    ) -> None:
        if normalization is not None:
            module = nn.Sequential(Normalize(list(normalization[0]), list(normalization[1])), module)
        self.module = module.to(device)
        _set_training(self.module, False)
        self.input_spec = input_spec
        self.classes = tuple(str(c) for c in classes)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.queries = 0

    @classmethod
    def from_spec(cls, module: nn.Module, spec: dict[str, Any], **kwargs: Any) -> TorchTarget:
        """Build from a torchspec ``spec.json`` dict (shape, range, classes)."""
        shape = tuple(spec["input_shape"]) if spec.get("input_shape") else None
        lo, hi = spec.get("input_range") or (-np.inf, np.inf)
        lo = -np.inf if lo is None else lo
        hi = np.inf if hi is None else hi
        input_spec = InputSpec(
            shape=shape, lower=lo, upper=hi, frozen=spec.get("frozen"),
            kind=spec.get("kind") or guess_kind(shape, lo, hi),
            feature_names=tuple(spec["feature_names"]) if spec.get("feature_names") else None,
        )
        return cls(module, input_spec=input_spec, classes=spec["classes"], **kwargs)

    # -- white-box ------------------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable logits of a batch already on the target's device."""
        out = self.module(x)
        if out.dim() != 2 or out.shape[1] != len(self.classes):
            raise InputError(
                f"the model returned outputs of shape {tuple(out.shape)}, expected "
                f"(rows, {len(self.classes)}) logits"
            )
        return out

    def input_gradient(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Gradient of the summed cross-entropy loss with respect to each input."""
        grads = []
        with self.attack_mode():
            for i in range(0, len(X), self.batch_size):
                x = self.tensor(X[i : i + self.batch_size]).requires_grad_(True)
                t = torch.as_tensor(y[i : i + self.batch_size], device=self.device)
                loss = nn.functional.cross_entropy(self.logits(x), t, reduction="sum")
                (g,) = torch.autograd.grad(loss, x)
                grads.append(g.detach().cpu().numpy())
        self.queries += len(X)
        return np.concatenate(grads) if grads else np.zeros_like(X)

    @contextmanager
    def attack_mode(self) -> Iterator[None]:
        """Eval mode, parameters frozen (no weight gradients); restored afterwards."""
        params = list(self.module.parameters())
        before = [p.requires_grad for p in params]
        was_training = self.module.training
        _set_training(self.module, False)
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(params, before, strict=True):
                p.requires_grad_(flag)
            _set_training(self.module, was_training)

    def tensor(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32), device=self.device)

    # -- black-box view -------------------------------------------------------------------
    def predict_logits(self, X: np.ndarray) -> np.ndarray:
        outs = []
        with torch.inference_mode():
            for i in range(0, len(X), self.batch_size):
                outs.append(self.logits(self.tensor(X[i : i + self.batch_size])).float().cpu().numpy())
        self.queries += len(X)
        if not outs:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.concatenate(outs)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = self.predict_logits(X).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
