"""Differential privacy: DP-SGD training through Opacus with a target (epsilon, delta).

Abadi et al. 2016, "Deep Learning with Differential Privacy" (paper 2.3.3 and Table 3:
differential privacy against membership inference and model inversion). Each step clips
every example's gradient to ``max_grad_norm`` and adds Gaussian noise of standard deviation
``noise_multiplier * max_grad_norm``; batches are Poisson-sampled with rate
``sample_rate = batch_size / n``. Opacus picks the smallest noise multiplier whose privacy
cost over the whole schedule (``steps = epochs / sample_rate``) stays within ``epsilon`` at
``delta`` under the chosen accountant (``prv`` by default, as in Opacus 1.6; ``rdp`` and
``gdp`` are the alternatives; the accountant alone moves epsilon by ~20%, so it is recorded).

DP-SGD needs a model trained from scratch on the private data: fine-tuning a model already
trained without privacy on the same data would void the guarantee, so there is no
``init="parent"`` here. BatchNorm mixes examples and cannot be trained privately; models with
it are refused with a clear message.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .base import Mitigation, MitigationResult, Progress, check_positive, start_module

log = logging.getLogger(__name__)

ACCOUNTANTS = ("prv", "rdp", "gdp")
GRAD_SAMPLE_MODES = ("hooks", "ghost", "functorch", "ew")


class DPTraining(Mitigation):
    """DP-SGD (Abadi et al. 2016) via Opacus ``make_private_with_epsilon``.

    Defaults: ``epsilon=3.0``, ``delta=1e-5`` (below 1/n for datasets of up to 100k rows),
    ``max_grad_norm=1.0``, 30 epochs of Adam at ``lr=5e-3`` with expected batch 64,
    ``accountant="prv"``, ``grad_sample_mode="ghost"`` (fast gradient clipping; same clipped
    gradients as per-sample hooks, measured faster in ``bench/mitigate.py``).

    After :meth:`run`: ``epsilon_`` (spent, from the accountant), ``noise_multiplier_``,
    ``sample_rate_``, ``steps_``.
    """

    name: ClassVar[str] = "dp"
    threats: ClassVar[tuple[str, ...]] = ("membership-inference", "model-inversion")
    reassess: ClassVar[tuple[str, ...]] = ("privacy",)
    summary: ClassVar[str] = "DP-SGD training (Opacus) to a target epsilon"

    epsilon_: float
    noise_multiplier_: float
    sample_rate_: float
    steps_: int

    def __init__(
        self,
        *,
        epsilon: float = 3.0,
        delta: float = 1e-5,
        max_grad_norm: float = 1.0,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 5e-3,
        accountant: str = "prv",
        grad_sample_mode: str = "ghost",
        random_state: int = 0,
    ) -> None:
        self.epsilon = epsilon
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.accountant = accountant
        self.grad_sample_mode = grad_sample_mode
        self.random_state = random_state

    def _check(self, n: int) -> None:
        check_positive("epsilon", self.epsilon)
        check_positive("max_grad_norm", self.max_grad_norm)
        check_positive("epochs", self.epochs, integer=True)
        check_positive("batch_size", self.batch_size, integer=True)
        check_positive("lr", self.lr)
        if not 0 < self.delta < 1:
            raise InputError(f"bad delta {self.delta!r}: must be between 0 and 1 (e.g. 1e-5)")
        if self.accountant not in ACCOUNTANTS:
            raise InputError(
                f"unknown accountant '{self.accountant}': choose one of {', '.join(ACCOUNTANTS)}"
            )
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise InputError(
                f"unknown grad_sample_mode '{self.grad_sample_mode}': choose one of "
                f"{', '.join(GRAD_SAMPLE_MODES)}"
            )
        if self.batch_size >= n:
            raise InputError(
                f"batch_size {self.batch_size} is not below the {n} training rows: DP-SGD "
                "needs sampled batches; lower --batch-size"
            )

    def _run(
        self, module: nn.Module, spec: dict[str, Any], X: np.ndarray, y: np.ndarray,
        progress: Progress,
    ) -> MitigationResult:
        from opacus import PrivacyEngine
        from opacus.validators import ModuleValidator

        n = len(X)
        self._check(n)
        result_warnings: list[str] = []
        if self.delta >= 1.0 / n:
            result_warnings.append(
                f"delta {self.delta:g} is not below 1/n = {1.0 / n:.2g}: the guarantee is weak; "
                "choose a smaller delta"
            )
        model = start_module(module, spec, "scratch", self.random_state)
        problems = ModuleValidator.validate(model, strict=False)
        if problems:
            raise InputError(
                "the model cannot be trained with DP-SGD: "
                + "; ".join(str(p).splitlines()[0] for p in problems[:3])
                + " (replace BatchNorm with GroupNorm in spec.json and retrain)"
            )
        torch.manual_seed(self.random_state)
        data = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
        loader = torch.utils.data.DataLoader(
            data, batch_size=self.batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(self.random_state),
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        criterion = nn.CrossEntropyLoss()
        kwargs: dict[str, Any] = dict(
            module=model, optimizer=optimizer, data_loader=loader, criterion=criterion,
            target_epsilon=self.epsilon, target_delta=self.delta, epochs=self.epochs,
            max_grad_norm=self.max_grad_norm, grad_sample_mode=self.grad_sample_mode,
        )
        with warnings.catch_warnings():
            # Opacus warns that secure_mode is off (recorded in the metrics instead)
            warnings.simplefilter("ignore")
            engine = PrivacyEngine(accountant=self.accountant)
            made = engine.make_private_with_epsilon(**kwargs)
        if self.grad_sample_mode == "ghost":
            private, dp_opt, dp_criterion, dp_loader = made
        else:
            private, dp_opt, dp_loader = made
            dp_criterion = criterion
        progress("dp-sgd", 0, self.epochs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for epoch in range(self.epochs):
                private.train()
                for xb, yb in dp_loader:
                    if len(xb) == 0:
                        continue
                    dp_opt.zero_grad()
                    loss = dp_criterion(private(xb), yb)
                    loss.backward()
                    dp_opt.step()
                progress("dp-sgd", epoch + 1, self.epochs)
        trained = _unwrap(private)
        trained.eval()
        self.epsilon_ = float(engine.get_epsilon(self.delta))
        self.noise_multiplier_ = float(dp_opt.noise_multiplier)
        self.sample_rate_ = float(1 / len(loader))
        self.steps_ = int(sum(h[2] for h in engine.accountant.history))
        history = [[float(s), float(q), int(k)] for s, q, k in engine.accountant.history]
        metrics = {
            "epsilon": self.epsilon_, "delta": self.delta, "target_epsilon": self.epsilon,
            "accountant": self.accountant, "noise_multiplier": self.noise_multiplier_,
            "max_grad_norm": self.max_grad_norm, "sample_rate": self.sample_rate_,
            "steps": self.steps_, "accountant_history": history,
            "grad_sample_mode": self.grad_sample_mode, "poisson_sampling": True,
            "secure_mode": False,
        }
        log.info("DP-SGD: epsilon %.3f at delta %g (%s), sigma %.3f, q %.4f, %d steps",
                 self.epsilon_, self.delta, self.accountant, self.noise_multiplier_,
                 self.sample_rate_, self.steps_)
        return MitigationResult(
            method=self.name, module=trained, spec=dict(spec), params=self.get_params(),
            metrics=metrics, warnings=result_warnings,
        )


def _unwrap(private: nn.Module) -> nn.Module:
    """The plain module inside Opacus' GradSampleModule, with its hooks removed."""
    inner = getattr(private, "_module", private)
    if hasattr(private, "remove_hooks"):
        private.remove_hooks()
    for p in inner.parameters():
        for attr in ("grad_sample", "_forward_counter", "_current_grad_sample"):
            if hasattr(p, attr):
                delattr(p, attr)
        p.grad = None
    return inner
