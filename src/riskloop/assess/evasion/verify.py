"""Proving points robust: linear bounds on a ReLU network's margins (CROWN-IBP).

For a point ``x`` with label ``y`` the verifier bounds every margin ``logit_y - logit_j`` from
below over the whole threat region: the eps ball around ``x`` (L-inf or L2, in the same scaled
units as the attacks), intersected with the valid input range, frozen features held fixed. When
every lower bound is positive no input in the region changes the prediction, so no attack can
fool the point and the evaluation stops attacking it. The check is sound but incomplete: a point
that is not proved may still be robust, and only the attacks can tell.

Bounds (Zhang et al. 2020, "Towards Stable and Efficient Training of Verifiably Robust Neural
Networks", the CROWN-IBP combination):

1. interval bound propagation (Gowal et al. 2018, "On the Effectiveness of Interval Bound
   Propagation for Training Verifiably Robust Models") gives the pre-activation interval of
   every ReLU; it is exact for the affine block before the first ReLU;
2. one backward pass from the margins to the input replaces each ReLU by linear upper and lower
   bounds (CROWN, Zhang et al. 2018, "Efficient Neural Network Robustness Certification with
   General Activation Functions"; lower slope 0 or 1, whichever is tighter), which leaves each
   margin bounded by a linear function of the input, minimised in closed form over the box
   (and, for L2, over the ball).

Cost: one interval pass (two forwards) and one backward pass per margin, so about 20 forward
passes per point for 10 classes, against the 1,000 queries Square spends on every robust point.

Supported networks: a chain (``nn.Sequential``, nested ones flattened) of Linear, Conv1d/Conv2d
(zero padding), ReLU, Flatten, AvgPool2d, AdaptiveAvgPool2d, BatchNorm in eval mode, riskloop's
Normalize, Dropout and Identity. Anything else (max pooling, smooth activations, residual
blocks, an exported graph) is reported as unsupported and the evaluation attacks every point.

Rounding: the bounds are computed in float32. Every interval is widened by 1e-4 of the
magnitude of the terms it sums, and a margin counts as proved only when its lower bound exceeds
1e-4 of the magnitude of its own terms, which covers the rounding of sums far longer than these
networks have.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ...targets.base import Target
from .verify_layers import Affine, ReLU, Unsupported, layers_of

ROUNDING = 1e-4
CHUNK_ELEMENTS = 1 << 23  # floats per backward tensor (32 MB)
NARROW = 64  # ReLU layers at most this wide get backward-pass bounds
Tensor = torch.Tensor


class LinearBoundVerifier:
    """Proves points robust to every perturbation in the threat region (CROWN-IBP).

    ``verify`` returns a boolean per point: True means *no* input in the region changes the
    prediction away from the label (untargeted) or onto the target label (targeted). Build it
    with :meth:`for_target`, which returns None with a reason when the model is not a
    supported white-box network.
    """

    name = "crown-ibp"

    def __init__(self, module: nn.Module, target: Target, device: torch.device | str = "cpu") -> None:
        self.layers = layers_of(module)
        if not any(isinstance(layer, Affine) for layer in self.layers):
            raise Unsupported("the network has no affine layer")
        self.target = target
        self.device = torch.device(device)
        spec = target.input_spec
        self.lower = torch.as_tensor(spec.lower_array(), dtype=torch.float32, device=self.device)
        self.upper = torch.as_tensor(spec.upper_array(), dtype=torch.float32, device=self.device)
        self.mutable = torch.as_tensor(spec.mutable_mask(), device=self.device)

    @classmethod
    def for_target(cls, target: Target) -> tuple[LinearBoundVerifier | None, str | None]:
        module = getattr(target, "module", None)
        if module is None or not hasattr(target, "logits"):
            return None, f"the model is {target.access}: only a white-box PyTorch network can be verified"
        try:
            return cls(module, target, getattr(target, "device", "cpu")), None
        except Unsupported as exc:
            return None, str(exc)

    # -- the region -------------------------------------------------------------------------
    def _box(self, x: Tensor, eps: float, scale: Tensor | None) -> tuple[Tensor, Tensor]:
        step = eps if scale is None else eps * scale
        lo = torch.maximum(x - step, self.lower)
        hi = torch.minimum(x + step, self.upper)
        lo = torch.where(self.mutable, lo, x)
        hi = torch.where(self.mutable, hi, x)
        return (lo + hi) / 2, (hi - lo) / 2

    # -- the two passes ---------------------------------------------------------------------
    def _shapes(self, in_shape: tuple[int, ...]) -> None:
        """Each layer's input and output shape, and each affine layer's bias over its output."""
        self._in: list[tuple[int, ...]] = []
        self._out: list[tuple[int, ...]] = []
        self._bias: list[Tensor | None] = []
        with torch.no_grad():
            z = torch.zeros((1, *in_shape), device=self.device)
            for layer in self.layers:
                self._in.append(tuple(z.shape[1:]))
                if isinstance(layer, Affine):
                    z = layer.forward(z)
                    self._bias.append(z[0])  # the output of a zero input is the bias
                else:
                    self._bias.append(None)
                self._out.append(tuple(z.shape[1:]))
                z = torch.zeros_like(z)

    def _intervals(self, region: _Region) -> list[tuple[Tensor, Tensor] | None]:
        """ReLU pre-activation intervals, widened by ROUNDING of the magnitude of their terms.

        Interval arithmetic everywhere; in addition, a ReLU layer of at most ``NARROW``
        neurons after the first gets the tighter bounds of a backward pass (two rows per
        neuron, cheap at that width), and for L2 the first ReLU's interval is the exact one
        over the ball when at most one layer before it mixes features (a neuron's radius is
        then eps times the L2 norm of its row of weights)."""
        c, r, ball = region.c, region.r, region.ball()
        bounds: list[tuple[Tensor, Tensor] | None] = []
        mag = c.abs() + r
        mixed = 0
        for i, (layer, bias) in enumerate(zip(self.layers, self._bias, strict=True)):
            if isinstance(layer, ReLU):
                pad = ROUNDING * mag
                lo, hi = c - r - pad, c + r + pad
                if ball is not None:
                    rad = ball[1].sqrt()
                    lo, hi = torch.maximum(lo, ball[0] - rad - pad), torch.minimum(hi, ball[0] + rad + pad)
                    ball = None
                elif self._tight and any(b is not None for b in bounds) and c[0].numel() <= NARROW:
                    lo, hi = self._tighten(region, bounds, i, lo, hi)
                bounds.append((lo, hi))
                lo, hi = lo.clamp_min(0), hi.clamp_min(0)
                c, r = (lo + hi) / 2, (hi - lo) / 2
                mag = c.abs() + r
                continue
            assert bias is not None
            bounds.append(None)
            c, r = layer.forward(c), layer.absolute(r)
            mag = layer.absolute(mag) + bias.abs()
            if ball is not None:
                mixed += layer.mixing
                ball = None if layer.squared is None or mixed > 1 else (layer.forward(ball[0]), layer.squared(ball[1]))
        return bounds

    def _tighten(self, region: _Region, bounds: list[tuple[Tensor, Tensor] | None], upto: int,
                 lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        """The interval of layer ``upto``'s inputs from a backward pass, met with ``lo, hi``."""
        n, shape = len(lo), lo.shape[1:]
        w = lo[0].numel()
        eye = torch.eye(w, device=lo.device, dtype=lo.dtype)
        spec = torch.cat([eye, -eye]).expand(n, 2 * w, w)
        low = region.lower(*self._backward(spec, bounds, upto))
        return (torch.maximum(lo, low[:, :w].reshape(n, *shape)),
                torch.minimum(hi, -low[:, w:].reshape(n, *shape)))

    def _backward(self, spec: Tensor, bounds: list[tuple[Tensor, Tensor] | None], upto: int
                  ) -> tuple[Tensor, Tensor, Tensor]:
        """Backward pass of ``spec`` (n, k, outputs of layer ``upto - 1``) through the layers
        before ``upto``: returns Λ on the input (n, k, *in), the constant (n, k), its magnitude."""
        n, k = spec.shape[:2]
        lam = spec.reshape(n * k, -1)
        const = lam.new_zeros(n * k)
        mag = lam.new_zeros(n * k)
        parts = zip(reversed(self.layers[:upto]), reversed(bounds[:upto]), reversed(self._in[:upto]),
                    reversed(self._out[:upto]), reversed(self._bias[:upto]), strict=True)
        for layer, bound, shape, out_shape, bias in parts:
            if isinstance(layer, ReLU):
                assert bound is not None
                lo, hi = (t.repeat_interleave(k, dim=0) for t in bound)
                lam = lam.reshape(n * k, *shape)
                unstable = (lo < 0) & (hi > 0)
                up = torch.where(unstable, hi / (hi - lo).clamp_min(1e-30), (lo >= 0).to(lam.dtype))
                down = torch.where(unstable, (hi > -lo).to(lam.dtype), (lo >= 0).to(lam.dtype))
                intercept = torch.where(unstable, -up * lo, torch.zeros_like(lo))
                neg = lam.clamp_max(0)
                term = (neg * intercept).reshape(n * k, -1).sum(1)
                const, mag = const + term, mag + term.abs()
                lam = lam.clamp_min(0) * down + neg * up
                continue
            assert bias is not None
            lam = lam.reshape(n * k, *out_shape)
            term = (lam * bias).reshape(n * k, -1).sum(1)
            const, mag = const + term, mag + term.abs()
            lam = layer.back(lam, shape)
        return lam.reshape(n, k, *self._in[0]), const.reshape(n, k), mag.reshape(n, k)

    # -- the public check -------------------------------------------------------------------
    def verify(self, X: np.ndarray, y: np.ndarray, eps: float, norm: str = "linf",
               scale: np.ndarray | None = None, target_labels: np.ndarray | None = None,
               tight: bool = True) -> np.ndarray:
        """True per point proved robust within ``eps`` (``norm`` "linf" or "l2")."""
        return (self.lower_bounds(X, y, eps, norm, scale, target_labels, tight) > 0).all(axis=1)

    def narrow_layers(self, in_shape: tuple[int, ...]) -> list[int]:
        """Widths of the ReLU layers after the first that get backward-pass bounds."""
        self._shapes(in_shape)
        relus = [int(np.prod(self._in[i])) for i, layer in enumerate(self.layers) if isinstance(layer, ReLU)]
        return [w for w in relus[1:] if w <= NARROW]

    def tight_cost(self, in_shape: tuple[int, ...]) -> float:
        """Forward passes' worth of work per point of a tight pass (one row per margin, two
        per neuron of each narrow layer, plus the interval pass)."""
        return 2.0 + len(self.target.classes) + 2.0 * sum(self.narrow_layers(in_shape))

    def lower_bounds(self, X: np.ndarray, y: np.ndarray, eps: float, norm: str = "linf",
                     scale: np.ndarray | None = None, target_labels: np.ndarray | None = None,
                     tight: bool = True) -> np.ndarray:
        """Lower bounds of ``logit_y - logit_j`` over the region, less the rounding allowance:
        shape (rows, classes - 1) for every other class ``j`` in class order, or (rows, 1) for
        the target label when ``target_labels`` is given. ``tight=False`` skips the backward
        passes for narrow layers (interval bounds only before the last layer's pass)."""
        if norm not in ("linf", "l2"):
            raise ValueError(f"unknown norm {norm!r}")
        self._tight = tight
        self._shapes(tuple(X.shape[1:]))
        n_classes = len(self.target.classes)
        k = 1 if target_labels is not None else n_classes - 1
        widest = max(int(np.prod(shape)) for shape in self._in + self._out)
        narrow = self.narrow_layers(tuple(X.shape[1:])) if tight else []
        chunk = max(1, CHUNK_ELEMENTS // (max([k, *(2 * w for w in narrow)]) * widest))
        out = np.zeros((len(X), k), dtype=np.float64)
        s = None if scale is None else torch.as_tensor(np.array(np.broadcast_to(scale, X.shape[1:])), dtype=torch.float32,
                                                       device=self.device)
        eye = torch.eye(n_classes, device=self.device)
        with torch.no_grad():
            for i in range(0, len(X), chunk):
                x = torch.as_tensor(np.ascontiguousarray(X[i:i + chunk], dtype=np.float32), device=self.device)
                yy = torch.as_tensor(y[i:i + chunk], device=self.device).long()
                if target_labels is not None:
                    others = torch.as_tensor(target_labels[i:i + chunk], device=self.device).long()[:, None]
                else:
                    grid = torch.arange(n_classes, device=self.device).expand(len(x), -1)
                    others = grid[grid != yy[:, None]].reshape(len(x), n_classes - 1)
                spec = eye[yy][:, None, :] - eye[others]  # (n, k, classes): logit_y - logit_j
                out[i:i + len(x)] = self._chunk_bounds(x, spec, eps, norm, s)
        return out

    def _chunk_bounds(self, x: Tensor, spec: Tensor, eps: float, norm: str, s: Tensor | None) -> np.ndarray:
        region = _Region(x, *self._box(x, eps, s), eps, norm, self.mutable, s)
        bounds = self._intervals(region)
        lower = region.lower(*self._backward(spec, bounds, len(self.layers)))
        return lower.double().cpu().numpy()


@dataclass
class _Region:
    """The threat region of a chunk of points: the box (centre ``c``, radius ``r``) and, for
    L2, the ball of radius ``eps`` around ``x`` in scaled units over the mutable features."""

    x: Tensor
    c: Tensor
    r: Tensor
    eps: float
    norm: str
    mutable: Tensor
    scale: Tensor | None

    def lower(self, lam: Tensor, const: Tensor, mag: Tensor) -> Tensor:
        """min over the region of Λ·x + const, less the rounding allowance; shape (n, k)."""
        flat = lam.reshape(*lam.shape[:2], -1)
        c_, r_ = self.c.reshape(len(self.c), 1, -1), self.r.reshape(len(self.r), 1, -1)
        lower = const + (flat * c_).sum(-1) - (flat.abs() * r_).sum(-1)
        mag = mag + (flat.abs() * (c_.abs() + r_)).sum(-1)
        if self.norm == "l2":  # the ball itself, ignoring the valid range (a superset: still sound)
            weight = self.mutable.reshape(1, 1, -1).to(flat.dtype)
            if self.scale is not None:
                weight = weight * self.scale.reshape(1, 1, -1)
            x_ = self.x.reshape(len(self.x), 1, -1)
            ball_lower = const + (flat * x_).sum(-1) - self.eps * (flat * weight).norm(dim=-1)
            lower = torch.maximum(lower, ball_lower)
        return lower - ROUNDING * mag

    def ball(self) -> tuple[Tensor, Tensor] | None:
        """For L2: the centre and the squared per-feature radius (see ``_intervals``)."""
        if self.norm != "l2":
            return None
        weight = self.mutable.to(self.x.dtype) if self.scale is None else self.mutable * self.scale
        return self.x, (self.eps * weight).square().expand_as(self.x)


@dataclass
class VerificationRecord:
    """What the verifier did at one eps (for the run's metrics)."""

    eps: float
    checked: int
    proved: int
    seconds: float
    skipped: str | None = None
    tight: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"eps": self.eps, "checked": self.checked, "proved": self.proved,
                "seconds": round(self.seconds, 4), "skipped": self.skipped, "tight": self.tight}


PROBE_ROWS = 64
PROBE_SHARE = 0.05


def verify_with_probe(verifier: LinearBoundVerifier, X: np.ndarray, y: np.ndarray, eps: float, norm: str,
                      scale: np.ndarray | None, target_labels: np.ndarray | None,
                      budget: float = 0.0) -> tuple[np.ndarray, VerificationRecord]:
    """Verify a probe of the first rows; go on with the rest only if it proved at least 5% of
    them (at a budget where almost nothing can be proved, the bounds are not worth their cost).

    ``budget`` is the work, in forward passes per point, that the attacks still to run at this
    eps would spend on each point proved. The interval pass always runs; the tight pass
    (backward bounds for narrow layers) runs on the points it left unproved only when the
    budget is at least four times its cost, so it pays for itself once it proves a quarter of
    them."""
    t0 = time.perf_counter()
    tight = bool(verifier.narrow_layers(tuple(X.shape[1:]))) and budget >= 4 * verifier.tight_cost(tuple(X.shape[1:]))

    def prove(sl: slice) -> np.ndarray:
        tl = None if target_labels is None else target_labels[sl]
        ok = verifier.verify(X[sl], y[sl], eps, norm, scale, tl, tight=False)
        if tight and not ok.all():
            rest = ~ok
            ok[rest] = verifier.verify(X[sl][rest], y[sl][rest], eps, norm, scale,
                                       None if tl is None else tl[rest], tight=True)
        return ok

    out = np.zeros(len(X), dtype=bool)
    head = min(PROBE_ROWS, len(X))
    out[:head] = prove(slice(0, head))
    skipped = None
    if head < len(X):
        if out[:head].mean() >= PROBE_SHARE:
            out[head:] = prove(slice(head, None))
        else:
            skipped = (f"proved {int(out[:head].sum())} of the first {head} points: too few to be worth "
                       "bounding the rest")
    return out, VerificationRecord(eps, len(X) if skipped is None else head, int(out.sum()),
                                   time.perf_counter() - t0, skipped, tight)
