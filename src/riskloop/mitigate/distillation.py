"""Defensive distillation (Papernot et al. 2016, "Distillation as a Defense to Adversarial
Perturbations against Deep Neural Networks"; paper 4.1 and Table 3).

1. A *teacher* with the parent's architecture is trained on the hard labels with its softmax
   at temperature ``T``: ``softmax(z / T)``.
2. The teacher's soft labels ``softmax(z_teacher(x) / T)`` on the training inputs become the
   targets of a *student* (same architecture, fresh weights), also trained at temperature T.
3. The student is served at ``T = 1``: its raw logits, unchanged, so its softmax is sharpened
   by a factor T and its input gradients shrink.

Default ``temperature=20`` and ``lr=3e-3`` (Adam, 30 epochs). Papernot et al. used T = 100
for MNIST; on the bundled 8x8 digits T = 100 cost 2-3 points of test accuracy against about
one point for T = 20 (measured; ``docs/mitigations.md``). Logits divided by T need a larger
step than plain training to grow, hence the higher learning rate. Carlini & Wagner (2016, "Defensive
Distillation is Not Robust to Adversarial Examples") showed the gain is largely gradient
masking that logit-based and black-box attacks undo; re-running the full evasion suite (with
its gradient-masking checks and a black-box attack) on the student is therefore part of the
mitigation, and a robustness gain that only shows under gradient attacks is not evidence.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .base import (
    Mitigation,
    MitigationResult,
    Progress,
    accuracy,
    check_positive,
    predict_logits,
    start_module,
    train,
)


def soft_labels(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / T)`` row by row (float32)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def tempered_loss(temperature: float) -> Any:
    """Cross-entropy of ``softmax(z / T)`` against hard (indices) or soft (rows) labels."""

    def loss(module: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(module(xb) / temperature, dim=1)
        if yb.dim() == 1:
            return nn.functional.nll_loss(logp, yb)
        return -(yb * logp).sum(dim=1).mean()

    return loss


class DefensiveDistillation(Mitigation):
    """Teacher at temperature T, student on its soft labels at T, student served at T=1."""

    name: ClassVar[str] = "distillation"
    threats: ClassVar[tuple[str, ...]] = ("evasion",)
    reassess: ClassVar[tuple[str, ...]] = ("evasion",)
    summary: ClassVar[str] = "defensive distillation at temperature T (served at T=1)"

    teacher_: nn.Module
    teacher_accuracy_: float

    def __init__(
        self,
        *,
        temperature: float = 20.0,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 3e-3,
        random_state: int = 0,
    ) -> None:
        self.temperature = temperature
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.random_state = random_state

    def _run(
        self, module: nn.Module, spec: dict[str, Any], X: np.ndarray, y: np.ndarray,
        progress: Progress,
    ) -> MitigationResult:
        check_positive("temperature", self.temperature)
        check_positive("epochs", self.epochs, integer=True)
        check_positive("batch_size", self.batch_size, integer=True)
        check_positive("lr", self.lr)
        loss = tempered_loss(self.temperature)
        common = dict(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                      batch_loss=loss, progress=progress)
        teacher = start_module(module, spec, "scratch", self.random_state)
        train(teacher, X, y, random_state=self.random_state, phase="teacher", **common)
        soft = soft_labels(predict_logits(teacher, X), self.temperature)
        student = start_module(module, spec, "scratch", self.random_state + 1)
        train(student, X, soft, random_state=self.random_state + 1, phase="student", **common)
        self.teacher_ = teacher
        self.teacher_accuracy_ = accuracy(teacher, X, y)
        agreement = float((predict_logits(student, X).argmax(1) == soft.argmax(1)).mean())
        return MitigationResult(
            method=self.name, module=student, spec=dict(spec), params=self.get_params(),
            metrics={"temperature": self.temperature,
                     "teacher_train_accuracy": self.teacher_accuracy_,
                     "student_train_accuracy": accuracy(student, X, y),
                     "student_teacher_agreement": agreement},
        )
