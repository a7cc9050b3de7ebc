"""Adversarial training: PGD (Madry et al. 2018) and TRADES (Zhang et al. 2019).

Paper 2.3.3, 4.1 and Table 3: train on adversarial examples so the model resists evasion,
at a cost in clean accuracy (the robustness-accuracy trade-off the before / after table shows).

- ``method="pgd"``: Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models
  Resistant to Adversarial Attacks", ICLR 2018. Every batch is replaced by its PGD
  adversarial examples (random start, ``steps`` steps of size ``step``, all steps kept) and
  the model minimises the cross-entropy on them. The examples come from the evasion suite's
  own :class:`~riskloop.assess.evasion.gradient.PGD` attack, run against the model being
  trained.
- ``method="trades"``: Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan, "Theoretically Principled
  Trade-off between Robustness and Accuracy", ICML 2019. Loss
  ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` where ``x'`` maximises the KL term inside the
  eps ball (start ``x + 0.001 * N(0, I)``). PGD maximises cross-entropy against a label, not
  this KL term, so the inner loop is written here on the evasion suite's projection,
  steepest-ascent and valid-range helpers (``project``, ``steepest``, ``Box``), keeping the
  threat model identical to the attacks that later measure it.

``eps`` is in the evasion suite's units: input units for images, standard deviations of each
feature for tabular data; the default is the suite's standard budget (8/255 for images in
[0, 1], 0.1 sigma for tabular data), where the ARS is read. ``init="parent"`` (default) fine-tunes the parent's weights; ``"scratch"`` retrains
from fresh weights with the parent's architecture.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .base import (
    INITS,
    Mitigation,
    MitigationResult,
    Progress,
    accuracy,
    check_positive,
    start_module,
    train,
)

METHODS = ("pgd", "trades")


class AdversarialTraining(Mitigation):
    """PGD adversarial training (Madry et al. 2018) or TRADES (Zhang et al. 2019)."""

    name: ClassVar[str] = "adversarial-training"
    threats: ClassVar[tuple[str, ...]] = ("evasion",)
    reassess: ClassVar[tuple[str, ...]] = ("evasion",)
    summary: ClassVar[str] = "PGD (Madry) or TRADES adversarial training"

    def __init__(
        self,
        *,
        method: str = "pgd",
        eps: float | None = None,
        step: float | None = None,
        steps: int = 7,
        beta: float = 6.0,
        epochs: int = 15,
        batch_size: int = 64,
        lr: float = 1e-3,
        init: str = "parent",
        random_state: int = 0,
    ) -> None:
        self.method = method
        self.eps = eps
        self.step = step
        self.steps = steps
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.init = init
        self.random_state = random_state

    def _check(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown adversarial training method '{self.method}': pgd or trades")
        if self.init not in INITS:
            raise InputError(f"bad init '{self.init}': choose one of {', '.join(INITS)}")
        if self.eps is not None:
            check_positive("eps", self.eps)
        if self.step is not None:
            check_positive("step", self.step)
        check_positive("steps", self.steps, integer=True)
        check_positive("beta", self.beta)
        check_positive("epochs", self.epochs, integer=True)
        check_positive("batch_size", self.batch_size, integer=True)
        check_positive("lr", self.lr)

    def _run(
        self, module: nn.Module, spec: dict[str, Any], X: np.ndarray, y: np.ndarray,
        progress: Progress,
    ) -> MitigationResult:
        from ..assess.evasion.base import Box
        from ..assess.evasion.evaluate import feature_scale
        from ..assess.evasion.gradient import PGD
        from ..targets.torch_target import TorchTarget

        self._check()
        model = start_module(module, spec, self.init, self.random_state)
        target = TorchTarget.from_spec(model, spec)
        target.input_spec = target.input_spec.complete(X)
        eps = float(self.eps) if self.eps is not None else standard_eps(target.input_spec.kind)
        step = float(self.step) if self.step is not None else 2.5 * eps / self.steps
        # the evasion suite's units: input units for images, standard deviations for tabular
        scale = feature_scale(target, X)
        box = Box.of(target, scale)
        gen = torch.Generator().manual_seed(self.random_state)
        if self.method == "pgd":
            attack = PGD(eps=eps, step=step, steps=self.steps, random_start=True, keep="final",
                         batch_size=self.batch_size, random_state=self.random_state)

            def batch_loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
                # a new seed per batch, drawn from the run's seed: fresh random starts
                attack.random_state = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
                out = attack.attack(target, xb.numpy(), yb.numpy(), scale=scale)
                m.train()
                return nn.functional.cross_entropy(m(torch.from_numpy(out.x_adv)), yb)

        else:

            def batch_loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
                x_adv = trades_examples(target, xb, eps=eps, step=step, steps=self.steps,
                                        box=box, gen=gen)
                m.train()
                logits = m(xb)
                kl = nn.functional.kl_div(torch.log_softmax(m(x_adv), dim=1),
                                          torch.softmax(logits, dim=1), reduction="batchmean")
                return nn.functional.cross_entropy(logits, yb) + self.beta * kl

        train(model, X, y, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
              random_state=self.random_state, batch_loss=batch_loss, progress=progress,
              phase=f"{self.method} adversarial training")
        return MitigationResult(
            method=self.name, module=model, spec=dict(spec),
            params={**{k: v for k, v in self.get_params().items()
                       if k != "beta" or self.method == "trades"}, "eps": eps, "step": step},
            metrics={"method": self.method, "eps": eps, "step": step, "steps": self.steps,
                     "eps_units": "standard deviations" if scale is not None else "input units",
                     "beta": self.beta if self.method == "trades" else None,
                     "train_accuracy": accuracy(model, X, y)},
        )


def trades_examples(
    target: Any, x: torch.Tensor, *, eps: float, step: float, steps: int, box: Any,
    gen: torch.Generator,
) -> torch.Tensor:
    """TRADES' inner maximisation of ``KL(f(x) || f(x'))`` over the L-inf eps ball."""
    from ..assess.evasion.base import project, steepest

    with target.attack_mode():
        with torch.no_grad():
            p_clean = torch.softmax(target.logits(x), dim=1)
        x_adv = box.clip(x + 0.001 * torch.randn(x.shape, generator=gen))
        for _ in range(steps):
            x_adv = x_adv.detach().requires_grad_(True)
            kl = nn.functional.kl_div(torch.log_softmax(target.logits(x_adv), dim=1), p_clean,
                                      reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
            with torch.no_grad():
                x_adv = project(x, x_adv + step * steepest(grad, "linf", box), eps, "linf", box)
    return x_adv.detach()


def standard_eps(kind: str) -> float:
    """The evasion suite's standard budget for an input kind ("image" or "tabular")."""
    from ..assess.evasion.suite import STANDARD

    return float(STANDARD[kind]["standard_eps"])
