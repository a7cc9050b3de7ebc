"""Gradient attacks: FGSM and PGD (L-inf and L2, random start, restarts)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from ...errors import InputError
from ...targets.base import Target
from .base import (
    AttackOutcome,
    Box,
    EvasionAttack,
    ce_loss,
    generator,
    project,
    random_start,
    steepest,
)

KEEP = ("first", "final")


def pgd_batch(
    target: Target,
    x0: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor | None,
    *,
    eps: float,
    step: float,
    steps: int,
    norm: str,
    box: Box,
    rand_init: bool,
    keep: str,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One PGD run on a batch: (x_adv, success, forward passes per row).

    ``keep="first"`` keeps the first iterate that reaches the goal and stops working on that
    row; ``keep="final"`` runs every step on every row and judges the last iterate (ART).
    """
    n = len(x0)
    x = random_start(x0, eps, norm, box, gen) if rand_init else x0.clone()
    out = x.clone()
    success = torch.zeros(n, dtype=torch.bool)
    evals = torch.zeros(n, dtype=torch.int64)
    ids = torch.arange(n)
    xa, x0a, ya = x, x0, y
    ta = t
    for i in range(steps + 1):
        last = i == steps
        if last:
            with torch.no_grad():
                logits = target.logits(xa)
        else:
            xa = xa.detach().requires_grad_(True)
            logits = target.logits(xa)
        evals[ids] += 1
        if keep == "first" or last:
            pred = logits.detach().argmax(1)
            hit = pred == ta if ta is not None else pred != ya
        else:
            hit = torch.zeros(len(ids), dtype=torch.bool)
        if last:
            out[ids] = xa.detach()
            success[ids] = hit
            break
        (grad,) = torch.autograd.grad(ce_loss(logits, ya, ta).sum(), xa)
        if hit.any():
            out[ids[hit]] = xa.detach()[hit]
            success[ids[hit]] = True
            keep_rows = ~hit
            ids, xa, x0a, ya, grad = ids[keep_rows], xa[keep_rows], x0a[keep_rows], ya[keep_rows], grad[keep_rows]
            ta = ta[keep_rows] if ta is not None else None
            if len(ids) == 0:
                break
        with torch.no_grad():
            xa = project(x0a, xa.detach() + step * steepest(grad, norm, box), eps, norm, box)
    return out, success, evals


class _GradientAttack(EvasionAttack):
    access: ClassVar[str] = "white-box"
    requires: ClassVar[tuple[str, ...]] = ("torch",)
    batch_size: int

    def _batches(self, n: int) -> range:
        return range(0, n, max(1, int(self.batch_size)))


class FGSM(_GradientAttack):
    """Fast Gradient Sign Method: one step of size eps along the gradient's sign (L2: its
    direction).

    Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015.
    """

    name = "fgsm"

    def __init__(self, *, eps: float = 8 / 255, norm: str = "linf", targeted: bool = False,
                 batch_size: int = 1024, random_state: int | None = 0) -> None:
        self.eps = float(eps)
        self.norm = norm
        self.targeted = targeted
        self.batch_size = batch_size
        self.random_state = random_state
        self._check_common()

    def _attack(self, target, X, y, t, scale):  # type: ignore[no-untyped-def]
        return _run_pgd(self, target, X, y, t, scale, step=self.eps, steps=1, rand_init=False,
                        keep="final", restarts=1)


class PGD(_GradientAttack):
    """Projected Gradient Descent: ``steps`` signed-gradient (L-inf) or normalised-gradient (L2)
    steps of size ``step`` (default ``eps/4``), each projected back into the eps ball and
    the valid range; optional uniform random start and restarts.

    Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to
    Adversarial Attacks", ICLR 2018.
    """

    name = "pgd"

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        norm: str = "linf",
        step: float | None = None,
        rel_step: float = 0.25,
        steps: int = 10,
        random_start: bool = True,
        restarts: int = 1,
        keep: str = "first",
        targeted: bool = False,
        batch_size: int = 1024,
        random_state: int | None = 0,
    ) -> None:
        self.eps = float(eps)
        self.norm = norm
        self.step = step
        self.rel_step = rel_step
        self.steps = int(steps)
        self.random_start = random_start
        self.restarts = int(restarts)
        self.keep = keep
        self.targeted = targeted
        self.batch_size = batch_size
        self.random_state = random_state
        self._check_common()
        if self.steps < 1 or self.restarts < 1:
            raise InputError(f"pgd: steps and restarts must be at least 1 (got {steps}, {restarts})")
        if keep not in KEEP:
            raise InputError(f"pgd: keep must be 'first' or 'final', got {keep!r}")

    @property
    def step_size(self) -> float:
        return float(self.step) if self.step is not None else self.rel_step * self.eps

    def _attack(self, target, X, y, t, scale):  # type: ignore[no-untyped-def]
        return _run_pgd(self, target, X, y, t, scale, step=self.step_size, steps=self.steps,
                        rand_init=self.random_start, keep=self.keep, restarts=self.restarts)


def _run_pgd(attack: _GradientAttack, target: Target, X: np.ndarray, y: np.ndarray,
             t: np.ndarray | None, scale: np.ndarray | None, *, step: float, steps: int,
             rand_init: bool, keep: str, restarts: int) -> AttackOutcome:
    tt = target  # white-box, checked by EvasionAttack.attack
    box = Box.of(tt, scale, tt.device)  # type: ignore[attr-defined]
    gen = generator(attack.random_state)
    x_adv = X.copy()
    success = np.zeros(len(X), dtype=bool)
    queries = np.zeros(len(X), dtype=np.int64)
    with tt.attack_mode():  # type: ignore[attr-defined]
        for lo in attack._batches(len(X)):
            sl = slice(lo, lo + attack.batch_size)
            for r in range(restarts):
                todo = np.flatnonzero(~success[sl]) + lo
                if len(todo) == 0:
                    break
                x0 = tt.tensor(X[todo])  # type: ignore[attr-defined]
                yb = torch.as_tensor(y[todo])
                tb = torch.as_tensor(t[todo]) if t is not None else None
                xo, ok, ev = pgd_batch(tt, x0, yb, tb, eps=attack.eps, step=step, steps=steps,
                                       norm=attack.norm, box=box, keep=keep, gen=gen,
                                       rand_init=rand_init)
                okn = ok.numpy()
                if r == 0:
                    x_adv[todo] = xo.cpu().numpy()
                else:
                    x_adv[todo[okn]] = xo.cpu().numpy()[okn]
                success[todo] = okn
                queries[todo] += ev.numpy()
    return AttackOutcome(x_adv, success, queries)
