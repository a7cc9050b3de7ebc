"""A small, fully known target for tests: a linear softmax model with switchable defects.

``noise > 0`` adds fresh random noise to every answer (outputs change between identical
queries); ``mask_gradients=True`` quantises the input inside the model so that its input
gradient is zero almost everywhere while predictions stay useful: the two failure modes
that make robustness numbers untrustworthy, so the self-checks can be tested.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .base import InputSpec
from .torch_target import TorchTarget


class _Linear(nn.Module):
    def __init__(self, weights: np.ndarray, bias: np.ndarray, *, noise: float,
                 mask_gradients: bool, levels: int, random_state: int) -> None:
        super().__init__()
        self.register_buffer("w", torch.as_tensor(weights, dtype=torch.float32))
        self.register_buffer("b", torch.as_tensor(bias, dtype=torch.float32))
        self.noise = float(noise)
        self.mask_gradients = mask_gradients
        self.levels = levels
        self.gen = torch.Generator().manual_seed(random_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(len(x), -1)
        if self.mask_gradients:
            x = torch.round(x * self.levels) / self.levels
        z = x @ self.w.T + self.b
        if self.noise:
            z = z + self.noise * torch.randn(z.shape, generator=self.gen).to(z)
        return z


class MockTarget(TorchTarget):
    """Linear softmax ``logits = W·x + b`` as a white-box target (torch under the hood)."""

    def __init__(
        self,
        *,
        weights: Any,
        bias: Any | None = None,
        input_spec: InputSpec | None = None,
        classes: tuple[str, ...] | list[str] | None = None,
        noise: float = 0.0,
        mask_gradients: bool = False,
        levels: int = 4,
        random_state: int = 0,
    ) -> None:
        w = np.atleast_2d(np.asarray(weights, dtype=np.float32))
        b = np.zeros(len(w), dtype=np.float32) if bias is None else np.asarray(bias, dtype=np.float32)
        module = _Linear(w, b, noise=noise, mask_gradients=mask_gradients, levels=levels,
                         random_state=random_state)
        spec = input_spec or InputSpec(shape=(w.shape[1],), kind="tabular")
        super().__init__(module, input_spec=spec,
                         classes=classes or [str(i) for i in range(len(w))])

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, *, random_state: int = 0, **kwargs: Any) -> MockTarget:
        """Fit the linear model with scikit-learn's multinomial logistic regression."""
        from sklearn.linear_model import LogisticRegression

        flat = np.asarray(X).reshape(len(X), -1)
        clf = LogisticRegression(max_iter=2000, random_state=random_state).fit(flat, y)
        w, b = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2:  # binary: one row of weights; make it two logits
            w, b = np.vstack([-w / 2, w / 2]), np.array([-b[0] / 2, b[0] / 2])
        if "input_spec" not in kwargs:
            lo, hi = flat.min(axis=0), flat.max(axis=0)
            kwargs["input_spec"] = InputSpec(shape=tuple(np.asarray(X).shape[1:]), lower=lo.reshape(np.asarray(X).shape[1:]),
                                             upper=hi.reshape(np.asarray(X).shape[1:]), kind="tabular")
        return cls(weights=w, bias=b, classes=[str(c) for c in clf.classes_],
                   random_state=random_state, **kwargs)
