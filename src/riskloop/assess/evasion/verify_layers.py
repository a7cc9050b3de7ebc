"""A ReLU network as a chain of affine maps and ReLUs, for :mod:`.verify`.

Each affine layer gives its centre pass (``A x + b``), ``|A| x`` for interval radii, ``Λ A``
for the backward pass and, where it is cheap, ``(A∘A) x`` for L2 intervals. Layers without
such a form raise :class:`Unsupported`, with the layer's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...targets.torchspec import Normalize

Tensor = torch.Tensor


class Unsupported(Exception):
    """The network has a part the verifier has no bounds for."""


@dataclass
class Affine:
    """One affine map ``A x + b``: the centre pass, ``|A|`` on radii, ``Λ A`` backwards."""

    name: str
    forward: Callable[[Tensor], Tensor]  # with bias
    absolute: Callable[[Tensor], Tensor]  # |A| x, no bias
    back: Callable[[Tensor, tuple[int, ...]], Tensor]  # Λ A for Λ of shape (rows, *out)
    squared: Callable[[Tensor], Tensor] | None = None  # A∘A (elementwise square) x, for L2 bounds
    mixing: bool = True  # False for maps that scale or move single features (rows of A with one entry)


class ReLU:
    name = "ReLU"


def _vjp(fn: Callable[[Tensor], Tensor], lam: Tensor, in_shape: tuple[int, ...]) -> Tensor:
    """Λ A for a linear ``fn`` without bias, by automatic differentiation."""
    with torch.enable_grad():
        x = torch.zeros((lam.shape[0], *in_shape), dtype=lam.dtype, device=lam.device, requires_grad=True)
        (g,) = torch.autograd.grad(fn(x), x, lam)
    return g


def _conv(m: nn.Conv1d | nn.Conv2d) -> Affine:
    if m.padding_mode != "zeros":
        raise Unsupported(f"{type(m).__name__} with padding_mode={m.padding_mode!r}")
    w = m.weight.detach().float()
    dims = w.dim() - 2
    padding: Any = m.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0,) * dims
        else:  # "same" (stride 1): symmetric only when every kernel extent is odd
            total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size, strict=True)]
            if any(t % 2 for t in total):
                raise Unsupported(f"{type(m).__name__} with asymmetric 'same' padding")
            padding = tuple(t // 2 for t in total)
    conv = F.conv1d if dims == 1 else F.conv2d
    grad_input = torch.nn.grad.conv1d_input if dims == 1 else torch.nn.grad.conv2d_input
    kw = {"stride": m.stride, "padding": padding, "dilation": m.dilation, "groups": m.groups}
    b = None if m.bias is None else m.bias.detach().float()

    def back(lam: Tensor, in_shape: tuple[int, ...]) -> Tensor:
        return grad_input((lam.shape[0], *in_shape), w, lam, **kw)

    return Affine(type(m).__name__, lambda x: conv(x, w, b, **kw), lambda x: conv(x, w.abs(), None, **kw),
                   back, lambda x: conv(x, w * w, None, **kw))


def _linear(m: nn.Linear) -> Affine:
    w = m.weight.detach().float()
    b = None if m.bias is None else m.bias.detach().float()
    return Affine("Linear", lambda x: F.linear(x, w, b), lambda x: F.linear(x, w.abs()),
                   lambda lam, _shape: lam @ w, lambda x: F.linear(x, w * w))


def _channel_affine(name: str, scale: Tensor, shift: Tensor) -> Affine:
    """``x * scale + shift`` per channel (dimension 1)."""

    def shaped(t: Tensor, x: Tensor) -> Tensor:
        return t.view(-1, *([1] * (x.dim() - 2)))

    return Affine(
        name,
        lambda x: x * shaped(scale, x) + shaped(shift, x),
        lambda x: x * shaped(scale.abs(), x),
        lambda lam, _shape: lam * shaped(scale, lam),
        lambda x: x * shaped(scale * scale, x),
        mixing=False,
    )


def _batchnorm(m: nn.modules.batchnorm._BatchNorm) -> Affine:
    if m.running_mean is None or m.running_var is None:
        raise Unsupported(f"{type(m).__name__} without running statistics (it uses each batch's own)")
    scale = 1.0 / torch.sqrt(m.running_var.detach().float() + m.eps)
    if m.weight is not None:
        scale = scale * m.weight.detach().float()
    shift = -m.running_mean.detach().float() * scale
    if m.bias is not None:
        shift = shift + m.bias.detach().float()
    return _channel_affine(type(m).__name__, scale, shift)


def _normalize(m: Normalize) -> Affine:
    if m.mean.dim() != 2:
        raise Unsupported("Normalize over a dimension other than 1")
    scale = 1.0 / m.std.detach().float().flatten()
    return _channel_affine("Normalize", scale, -m.mean.detach().float().flatten() * scale)


def _pool(m: nn.Module) -> Affine:
    """Average pooling: non-negative weights, so ``|A| x`` is the pooling itself."""
    return Affine(type(m).__name__, m, m, lambda lam, shape: _vjp(m, lam, shape))


def _flatten(m: nn.Flatten) -> Affine:
    if m.start_dim != 1 or m.end_dim != -1:
        raise Unsupported("Flatten other than Flatten(1, -1)")

    def flat(x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)

    return Affine("Flatten", flat, flat, lambda lam, shape: lam.reshape(lam.shape[0], *shape), flat,
                   mixing=False)


def layers_of(module: nn.Module) -> list[Affine | ReLU]:
    """The network as a chain of affine maps and ReLUs, or :class:`Unsupported`."""
    out: list[Affine | ReLU] = []
    for m in (module if isinstance(module, nn.Sequential) else [module]):
        if isinstance(m, nn.Sequential):
            out += layers_of(m)
        elif isinstance(m, nn.ReLU):
            out.append(ReLU())
        elif isinstance(m, nn.Linear):
            out.append(_linear(m))
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
            out.append(_conv(m))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            out.append(_batchnorm(m))
        elif isinstance(m, Normalize):
            out.append(_normalize(m))
        elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            out.append(_pool(m))
        elif isinstance(m, nn.Flatten):
            out.append(_flatten(m))
        elif isinstance(m, (nn.Dropout, nn.Identity)):
            continue
        else:
            raise Unsupported(f"layer {type(m).__name__} has no bounds here")
    return out
