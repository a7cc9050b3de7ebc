"""APGD-CE: step-size-free PGD with momentum and checkpoints (the first attack of AutoAttack)."""

from __future__ import annotations

import math
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


def checkpoints(n_iter: int) -> list[int]:
    """Iterations at which the step size is reconsidered: p0=0, p1=0.22,
    p(j+1) = p(j) + max(p(j) - p(j-1) - 0.03, 0.06); w(j) = ceil(p(j) * n_iter)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    marks = {math.ceil(q * n_iter - 1e-9) for q in p[1:]}
    return sorted(m for m in marks if 0 < m < n_iter)


class APGD(EvasionAttack):
    """Auto-PGD with the cross-entropy loss (APGD-CE), L-inf or L2.

    The step size starts at 2·eps and is halved (restarting from the best point so far) at
    checkpoints where fewer than ``rho`` of the steps since the last checkpoint increased the
    loss, or where the step size and the best loss did not change; momentum 0.75.

    Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020 (Algorithm 1).
    """

    name = "apgd-ce"
    access: ClassVar[str] = "white-box"
    requires: ClassVar[tuple[str, ...]] = ("torch",)

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        momentum: float = 0.75,
        targeted: bool = False,
        batch_size: int = 1024,
        random_state: int | None = 0,
    ) -> None:
        self.eps = float(eps)
        self.norm = norm
        self.steps = int(steps)
        self.restarts = int(restarts)
        self.rho = rho
        self.momentum = momentum
        self.targeted = targeted
        self.batch_size = batch_size
        self.random_state = random_state
        self._check_common()
        if self.steps < 1 or self.restarts < 1:
            raise InputError(f"apgd-ce: steps and restarts must be at least 1 (got {steps}, {restarts})")

    def _attack(self, target: Target, X: np.ndarray, y: np.ndarray,
                t: np.ndarray | None, scale: np.ndarray | None) -> AttackOutcome:
        tt = target
        box = Box.of(tt, scale, tt.device)  # type: ignore[attr-defined]
        gen = generator(self.random_state)
        x_adv = X.copy()
        success = np.zeros(len(X), dtype=bool)
        queries = np.zeros(len(X), dtype=np.int64)
        with tt.attack_mode():  # type: ignore[attr-defined]
            for lo in range(0, len(X), max(1, self.batch_size)):
                for r in range(self.restarts):
                    todo = np.flatnonzero(~success[lo : lo + self.batch_size]) + lo
                    if len(todo) == 0:
                        break
                    x0 = tt.tensor(X[todo])  # type: ignore[attr-defined]
                    yb = torch.as_tensor(y[todo])
                    tb = torch.as_tensor(t[todo]) if t is not None else None
                    xo, ok, ev = self._batch(tt, x0, yb, tb, box, gen)
                    okn = ok.numpy()
                    if r == 0:
                        x_adv[todo] = xo.numpy()
                    else:
                        x_adv[todo[okn]] = xo.numpy()[okn]
                    success[todo] = okn
                    queries[todo] += ev.numpy()
        return AttackOutcome(x_adv, success, queries)

    def _forward(self, target, x, y, t):  # type: ignore[no-untyped-def]
        x = x.detach().requires_grad_(True)
        logits = target.logits(x)
        loss = ce_loss(logits, y, t)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        pred = logits.detach().argmax(1)
        hit = pred == t if t is not None else pred != y
        return loss.detach(), grad, hit

    def _batch(self, target, x0, y, t, box, gen):  # type: ignore[no-untyped-def]
        n, eps, norm = len(x0), self.eps, self.norm
        x = random_start(x0, eps, norm, box, gen)
        loss, grad, hit = self._forward(target, x, y, t)
        evals = torch.ones(n, dtype=torch.int64)
        done = hit.clone()
        x_succ = x.clone()
        x_best, grad_best, loss_best = x.clone(), grad.clone(), loss.clone()
        x_old = x.clone()
        step = torch.full((n,) + (1,) * (x0.dim() - 1), 2.0 * eps)
        increases = torch.zeros(n)
        loss_prev = loss.clone()
        reduced_last = torch.ones(n, dtype=torch.bool)
        best_at_check = loss_best.clone()
        marks = set(checkpoints(self.steps))
        last_mark = 0
        for i in range(self.steps):
            a = (~done).nonzero().squeeze(1)
            if len(a) == 0:
                break
            with torch.no_grad():
                xa, xo = x[a], x_old[a]
                m = 1.0 if i == 0 else self.momentum
                z = project(x0[a], xa + step[a] * steepest(grad[a], norm, box), eps, norm, box)
                xn = project(x0[a], xa + m * (z - xa) + (1 - m) * (xa - xo), eps, norm, box)
                x_old[a] = xa
                x[a] = xn
            la, ga, ha = self._forward(target, xn, y[a], t[a] if t is not None else None)
            evals[a] += 1
            grad[a] = ga
            if ha.any():
                x_succ[a[ha]] = xn[ha]
                done[a[ha]] = True
            increases[a] += (la > loss_prev[a]).float()
            loss_prev[a] = la
            better = la > loss_best[a]
            if better.any():
                b = a[better]
                x_best[b], grad_best[b], loss_best[b] = xn[better], ga[better], la[better]
            if i + 1 in marks:
                k = i + 1 - last_mark
                oscillating = increases <= k * self.rho
                stalled = ~reduced_last & (best_at_check >= loss_best)
                reduce = (oscillating | stalled) & ~done
                reduced_last = reduce
                best_at_check = loss_best.clone()
                if reduce.any():
                    step[reduce] /= 2.0
                    x[reduce] = x_best[reduce]
                    grad[reduce] = grad_best[reduce]
                increases.zero_()
                last_mark = i + 1
        out = torch.where(done.view(-1, *([1] * (x0.dim() - 1))), x_succ, x_best)
        return out.detach(), done, evals
