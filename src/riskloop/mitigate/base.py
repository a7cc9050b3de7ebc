"""The mitigation contract and the training loop the mitigations share.

A mitigation takes a white-box PyTorch model (the module built from its ``spec.json``) and
training data, and returns a *new* model: retrained, fine-tuned or wrapped with a defence.
It never changes the parent. Configuration goes to a keyword-only ``__init__``, data to
:meth:`Mitigation.run`, and the outcome lands in attributes ending in ``_`` plus the returned
:class:`MitigationResult`. Storing the new version, lineage and the before / after
assessments is the job of :mod:`riskloop.mitigate.apply`.

Every mitigation reports a ``progress(phase, done, total)`` callback so the CLI can draw
progress bars; the library itself never prints.
"""

from __future__ import annotations

import copy
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..targets.torchspec import build_module

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
INITS = ("scratch", "parent")


def _no_progress(_phase: str, _done: int, _total: int) -> None:
    return None


@dataclass
class DatasetChange:
    """A new dataset version a mitigation derived from its input (data sanitization)."""

    X: np.ndarray
    y: np.ndarray
    derivation: dict[str, Any]


@dataclass
class MitigationResult:
    """What a mitigation produced: the new module and spec plus its evidence.

    ``files`` are extra files (name → text) stored next to the weights in the new version's
    folder, e.g. ``defence.json`` for the feature-squeezing detector. ``metrics`` are the
    method's own numbers (epsilon spent, detection rate, rows dropped, ...).
    """

    method: str
    module: nn.Module
    spec: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    dataset: DatasetChange | None = None
    train_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


class Mitigation(ABC):
    """Base class of every mitigation (one class per technique).

    Class metadata: ``name`` (registry key and CLI method name), ``threats`` (threat ids it
    reduces), ``reassess`` (assessment suites to re-run on the new version), ``access`` and
    ``requires``.
    """

    name: ClassVar[str]
    threats: ClassVar[tuple[str, ...]]
    reassess: ClassVar[tuple[str, ...]] = ()
    access: ClassVar[str] = "white-box"
    requires: ClassVar[tuple[str, ...]] = ("torch",)
    summary: ClassVar[str] = ""

    result_: MitigationResult
    module_: nn.Module
    train_seconds_: float

    def get_params(self) -> dict[str, Any]:
        """The configuration, as passed to ``__init__`` (JSON types only)."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def run(
        self,
        module: nn.Module,
        spec: dict[str, Any],
        X: np.ndarray,
        y: np.ndarray,
        *,
        progress: Progress | None = None,
    ) -> MitigationResult:
        """Mitigate ``module`` (described by ``spec``) using training data ``X``, ``y``.

        ``X`` must already have the model's input shape and range, ``y`` class indices.
        """
        X, y = check_training_data(spec, X, y)
        started = time.perf_counter()
        result = self._run(module, spec, X, y, progress or _no_progress)
        result.train_seconds = time.perf_counter() - started
        self.result_ = result
        self.module_ = result.module
        self.train_seconds_ = result.train_seconds
        log.info("%s finished in %.1f s", self.name, result.train_seconds)
        return result

    @abstractmethod
    def _run(
        self, module: nn.Module, spec: dict[str, Any], X: np.ndarray, y: np.ndarray,
        progress: Progress,
    ) -> MitigationResult: ...


def check_training_data(
    spec: dict[str, Any], X: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Float32 inputs of the spec's shape and int64 labels inside the class range."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y).astype(np.int64).ravel()
    shape = tuple(spec.get("input_shape") or X.shape[1:])
    if len(X) != len(y):
        raise InputError(f"training data: {len(X)} inputs but {len(y)} labels")
    if len(X) < 2:
        raise InputError("training data has fewer than 2 rows: nothing to train on")
    if tuple(X.shape[1:]) != shape:
        if int(np.prod(X.shape[1:])) != int(np.prod(shape)):
            raise InputError(
                f"training inputs have shape {tuple(X.shape[1:])} but the model expects "
                f"{shape}: pass the data the model was trained on"
            )
        X = X.reshape((len(X), *shape))
    k = len(spec.get("classes") or [])
    if k and (y.min() < 0 or y.max() >= k):
        raise InputError(f"training labels must be class indices 0..{k - 1}")
    return X, y


def check_positive(name: str, value: float, *, integer: bool = False) -> None:
    if value is None or value <= 0 or (integer and int(value) != value):
        kind = "a positive integer" if integer else "a positive number"
        raise InputError(f"bad {name} {value!r}: must be {kind}")


def start_module(module: nn.Module, spec: dict[str, Any], init: str, random_state: int) -> nn.Module:
    """A trainable copy of the parent (``init="parent"``) or fresh weights (``"scratch"``)."""
    if init not in INITS:
        raise InputError(f"bad init '{init}': choose one of {', '.join(INITS)}")
    if init == "parent":
        fresh = copy.deepcopy(module)
    else:
        torch.manual_seed(random_state)
        fresh = build_module(spec)
    for p in fresh.parameters():
        p.requires_grad_(True)
    return fresh


def train(
    module: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    random_state: int,
    batch_loss: BatchLoss | None = None,
    progress: Progress = _no_progress,
    phase: str = "train",
    weight_decay: float = 0.0,
) -> nn.Module:
    """Mini-batch Adam over shuffled data, seeded; ``batch_loss`` defaults to cross-entropy.

    ``batch_loss(module, xb, yb)`` returns the loss of one batch; adversarial training uses
    it to attack the batch first. ``y`` may be class indices or (n, k) soft labels.
    """
    torch.manual_seed(random_state)
    gen = torch.Generator().manual_seed(random_state)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    loss_fn = batch_loss or (lambda m, xb, yb: nn.functional.cross_entropy(m(xb), yb))
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    progress(phase, 0, epochs)
    for epoch in range(epochs):
        module.train()
        perm = torch.randperm(len(Xt), generator=gen)
        for i in range(0, len(Xt), batch_size):
            idx = perm[i : i + batch_size]
            loss = loss_fn(module, Xt[idx], yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        progress(phase, epoch + 1, epochs)
    module.eval()
    return module


def predict_logits(module: nn.Module, X: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    module.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(X), batch_size):
            out.append(module(torch.from_numpy(np.ascontiguousarray(X[i : i + batch_size]))).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def accuracy(module: nn.Module, X: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose arg-max class equals the label."""
    if len(X) == 0:
        return float("nan")
    return float((predict_logits(module, X).argmax(1) == np.asarray(y)).mean())
