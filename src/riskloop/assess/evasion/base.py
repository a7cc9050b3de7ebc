"""What every evasion attack shares: configuration, the threat model, norms and bookkeeping.

An attack is configured in its keyword-only ``__init__`` (budget ``eps``, norm, steps,
``targeted``, ``random_state``) and called with data. :meth:`EvasionAttack.attack` is the
core used by the robustness evaluation: it attacks every row it is given and returns an
:class:`AttackOutcome`. :meth:`EvasionAttack.run` is the standalone entry point: it validates
the data, attacks only the points the model classifies correctly and returns an
:class:`~riskloop.findings.AssessmentResult` with robust accuracy.

Budgets are measured in *scaled units*: a perturbation ``delta`` has size
``norm(delta / scale)``, where ``scale`` (default 1) is one positive number per feature. For
tabular data the evaluation passes each feature's standard deviation, so ``eps`` is in
standard deviations; for images ``scale`` is 1 and ``eps`` is in pixel units.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from ...errors import InputError
from ...findings import AssessmentResult
from ...targets.base import Target, check_data, is_white_box, predict

NORMS = ("linf", "l2")


@dataclass
class AttackOutcome:
    """Per row: the adversarial example, whether the goal was reached, queries used."""

    x_adv: np.ndarray
    success: np.ndarray
    queries: np.ndarray
    exhausted: bool = False  # a query budget ran out before the attack finished
    notes: list[str] = field(default_factory=list)


def perturbation_norm(delta: np.ndarray, norm: str, scale: np.ndarray | None = None) -> np.ndarray:
    """Size of each row of ``delta`` in scaled units."""
    if len(delta) == 0:
        return np.zeros(0)
    d = delta.reshape(len(delta), -1).astype(np.float64)
    if scale is not None:
        d = d / np.broadcast_to(scale, delta.shape[1:]).reshape(1, -1)
    if norm == "linf":
        return np.abs(d).max(axis=1) if d.shape[1] else np.zeros(len(d))
    return np.sqrt((d * d).sum(axis=1))


def goal_reached(pred: np.ndarray, y: np.ndarray, t: np.ndarray | None) -> np.ndarray:
    """Untargeted: the prediction left the true class; targeted: it hit the target class."""
    return pred == t if t is not None else pred != y


class EvasionAttack:
    """Base class of evasion attacks (paper 3.2.1, Table 2: adversarial examples)."""

    name: ClassVar[str] = "attack"
    threats: ClassVar[tuple[str, ...]] = ("evasion",)
    access: ClassVar[str] = "white-box"
    requires: ClassVar[tuple[str, ...]] = ()

    eps: float
    norm: str
    targeted: bool
    random_state: int | None

    # -- sklearn-style parameters ---------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self"}

    def clone(self, **changes: Any) -> EvasionAttack:
        """A fresh attack with the same configuration and ``changes`` applied."""
        return type(self)(**{**self.get_params(), **changes})

    def describe(self) -> dict[str, Any]:
        return {"attack": self.name, "access": self.access, **self.get_params()}

    def _check_common(self) -> None:
        if self.norm not in NORMS:
            raise InputError(f"{self.name}: norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if not (np.isfinite(self.eps) and self.eps > 0):
            raise InputError(f"{self.name}: eps must be a positive number, got {self.eps}")

    # -- the two entry points -------------------------------------------------------------
    def attack(
        self,
        target: Target,
        X: np.ndarray,
        y: np.ndarray,
        *,
        target_labels: np.ndarray | None = None,
        scale: np.ndarray | None = None,
    ) -> AttackOutcome:
        """Attack every row of validated ``X`` (float32, model shape) with labels ``y``."""
        if self.access == "white-box" and not is_white_box(target):
            raise InputError(
                f"{self.name} needs gradients (white-box), but the target is {target.access}: "
                "use square or hopskipjump"
            )
        if self.targeted and target_labels is None:
            raise InputError(f"{self.name}: targeted mode needs target labels")
        if len(X) == 0:
            return AttackOutcome(X.copy(), np.zeros(0, bool), np.zeros(0, np.int64))
        return self._attack(target, X, y, target_labels, scale)

    def _attack(self, target: Target, X: np.ndarray, y: np.ndarray,
                t: np.ndarray | None, scale: np.ndarray | None) -> AttackOutcome:
        raise NotImplementedError

    def run(
        self, target: Target, X: Any, y: Any, *, target_labels: Any | None = None
    ) -> AssessmentResult:
        """Attack the correctly classified points of ``(X, y)``; robust accuracy over all."""
        Xc, yc = check_data(target, X, y)
        tc = None
        if self.targeted:
            tc = (choose_targets(yc, len(target.classes), self.random_state)
                  if target_labels is None else np.asarray(target_labels, dtype=np.int64))
        clean = predict(target, Xc) == yc
        idx = np.flatnonzero(clean)
        out = self.attack(target, Xc[idx], yc[idx], target_labels=None if tc is None else tc[idx])
        self.x_adv_ = Xc.copy()
        self.x_adv_[idx] = out.x_adv
        self.success_ = np.zeros(len(Xc), dtype=bool)
        self.success_[idx] = out.success
        self.queries_ = int(out.queries.sum())
        self.clean_accuracy_ = float(clean.mean())
        self.robust_accuracy_ = float((clean & ~self.success_).mean())
        norms = perturbation_norm(self.x_adv_ - Xc, self.norm)[self.success_]
        return AssessmentResult(
            suite="evasion",
            metrics={
                "clean_accuracy": self.clean_accuracy_, "robust_accuracy": self.robust_accuracy_,
                "success_rate": float(out.success.mean()) if len(idx) else 0.0,
                "median_perturbation": float(np.median(norms)) if len(norms) else None,
                "queries": self.queries_,
            },
            params=self.describe(),
            warnings=list(out.notes),
            trustworthy=not out.exhausted,
        )


def choose_targets(y: np.ndarray, k: int, random_state: int | None) -> np.ndarray:
    """A random class other than the true one for every row (targeted mode)."""
    if k < 2:
        raise InputError("targeted attacks need at least two classes")
    rng = np.random.default_rng(random_state)
    return ((y + rng.integers(1, k, size=len(y))) % k).astype(np.int64)


# -- torch helpers shared by the white-box attacks ----------------------------------------
@dataclass
class Box:
    """Valid range, frozen mask and feature scale as tensors of shape (1, *input)."""

    lo: torch.Tensor
    hi: torch.Tensor
    mutable: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def of(cls, target: Target, scale: np.ndarray | None, device: Any = "cpu") -> Box:
        spec = target.input_spec
        shape = (1, *spec._shape())

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.broadcast_to(a, shape[1:]).reshape(shape).copy(),
                                   dtype=torch.float32, device=device)

        return cls(t(spec.lower_array()), t(spec.upper_array()),
                   t(spec.mutable_mask().astype(np.float32)),
                   t(np.ones(shape[1:]) if scale is None else np.asarray(scale, dtype=np.float64)))

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(x, self.hi), self.lo)


def flat_norm(v: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-row norm, shaped to broadcast against ``v``."""
    f = v.reshape(len(v), -1)
    n = f.abs().amax(dim=1) if norm == "linf" else f.norm(dim=1)
    return n.view(-1, *([1] * (v.dim() - 1)))


def project(x0: torch.Tensor, x: torch.Tensor, eps: float, norm: str, box: Box) -> torch.Tensor:
    """Into the valid range, then into the eps ball around ``x0`` (ART's order)."""
    x = box.clip(x)
    delta = (x - x0) / box.scale
    if norm == "linf":
        delta = torch.clamp(delta, -eps, eps)
    else:
        n = flat_norm(delta, "l2")
        delta = delta * torch.clamp(eps / (n + 1e-12), max=1.0)
    return x0 + delta * box.scale * box.mutable


def random_start(x0: torch.Tensor, eps: float, norm: str, box: Box, gen: torch.Generator) -> torch.Tensor:
    """A uniform point of the L-inf ball, or a uniform point of the L2 ball."""
    if norm == "linf":
        noise = (torch.rand(x0.shape, generator=gen) * 2 - 1).to(x0) * eps
    else:
        d = x0[0].numel()
        g = torch.randn(x0.shape, generator=gen).to(x0)
        g = g / (flat_norm(g, "l2") + 1e-12)
        r = torch.rand((len(x0),) + (1,) * (x0.dim() - 1), generator=gen).to(x0) ** (1.0 / d)
        noise = g * r * eps
    return box.clip(x0 + noise * box.scale * box.mutable)


def steepest(grad: torch.Tensor, norm: str, box: Box) -> torch.Tensor:
    """The steepest-ascent direction in input units for a unit step in scaled units."""
    g = grad * box.mutable * box.scale
    if norm == "linf":
        return g.sign() * box.scale
    return g / (flat_norm(g, "l2") + 1e-12) * box.scale


def generator(random_state: int | None) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(0 if random_state is None else int(random_state))
    return gen


def ce_loss(logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
    """Per-row loss to *maximise*: cross-entropy of the true class, or minus the target's."""
    if t is None:
        return torch.nn.functional.cross_entropy(logits, y, reduction="none")
    return -torch.nn.functional.cross_entropy(logits, t, reduction="none")
