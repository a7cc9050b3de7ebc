"""A data-only description of a PyTorch architecture, so weights load without code.

A torch model is stored as a folder with ``spec.json`` (this architecture description) and
``model.safetensors`` (the state dict). Loading builds the layers from an allowlist of
``torch.nn`` classes with the recorded keyword arguments, then loads the tensors: nothing in
the files can make Python import or run anything.

``spec.json``::

    {"format": "riskloop.torch-sequential/1",
     "input_shape": [1, 8, 8], "input_range": [0.0, 1.0],
     "classes": ["0", "1", ...],
     "normalization": {"mean": [0.5], "std": [0.5]},      # optional, applied inside the model
     "layers": [{"type": "Conv2d", "in_channels": 1, "out_channels": 16, "kernel_size": 3,
                 "padding": 1}, {"type": "ReLU"}, {"type": "Flatten"}, ...]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError

SPEC_FORMAT = "riskloop.torch-sequential/1"
SPEC_FILE = "spec.json"
WEIGHTS_FILE = "model.safetensors"

_ALLOWED: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (
        nn.Linear, nn.Conv1d, nn.Conv2d, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.Sigmoid,
        nn.ELU, nn.SiLU, nn.Flatten, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
        nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.Dropout, nn.Identity,
    )
}
_ALLOWED_VALUE_TYPES = (int, float, bool, str, type(None))


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as the first layer of the model."""

    def __init__(self, mean: list[float], std: list[float], channel_dim: int = 1) -> None:
        super().__init__()
        shape = [1] * (channel_dim + 1)
        shape[channel_dim] = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(*shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(*shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean, self.std
        while mean.dim() < x.dim():
            mean, std = mean.unsqueeze(-1), std.unsqueeze(-1)
        return (x - mean) / std


def _check_value(key: str, value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_check_value(key, v) for v in value)
    if not isinstance(value, _ALLOWED_VALUE_TYPES):
        raise InputError(f"spec.json: layer argument '{key}' has unsupported type {type(value).__name__}")
    return value


def build_module(spec: dict[str, Any]) -> nn.Sequential:
    """Build the layers described by ``spec`` (weights are random until loaded)."""
    if spec.get("format") != SPEC_FORMAT:
        raise InputError(f"spec.json: format must be '{SPEC_FORMAT}', got {spec.get('format')!r}")
    layers: list[nn.Module] = []
    norm = spec.get("normalization")
    if norm:
        layers.append(Normalize(list(norm["mean"]), list(norm["std"])))
    for i, layer in enumerate(spec.get("layers", [])):
        kind = layer.get("type")
        cls = _ALLOWED.get(kind)
        if cls is None:
            raise InputError(
                f"spec.json: layer {i} has type {kind!r}, which is not an allowed torch.nn layer "
                f"({', '.join(sorted(_ALLOWED))})"
            )
        kwargs = {k: _check_value(k, v) for k, v in layer.items() if k != "type"}
        try:
            layers.append(cls(**kwargs))
        except TypeError as exc:
            raise InputError(f"spec.json: layer {i} ({kind}): {exc}") from None
    if not layers:
        raise InputError("spec.json: no layers")
    return nn.Sequential(*layers)


def module_to_spec(
    layers: list[dict[str, Any]],
    *,
    input_shape: list[int],
    classes: list[str],
    input_range: tuple[float, float] = (0.0, 1.0),
    normalization: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    return {
        "format": SPEC_FORMAT, "input_shape": list(input_shape), "classes": list(classes),
        "input_range": list(input_range), "normalization": normalization, "layers": layers,
    }


def save_torch_model(folder: Path, module: nn.Module, spec: dict[str, Any]) -> Path:
    """Write ``spec.json`` and ``model.safetensors`` into ``folder``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": SPEC_FORMAT})
    return folder


def load_torch_model(folder: Path) -> tuple[nn.Sequential, dict[str, Any]]:
    """Build the module from ``spec.json`` and load ``model.safetensors`` into it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    spec_path = folder / SPEC_FILE
    weights = folder / WEIGHTS_FILE
    if not spec_path.exists() or not weights.exists():
        raise InputError(f"'{folder}' needs {SPEC_FILE} and {WEIGHTS_FILE}")
    try:
        spec = json.loads(spec_path.read_text())
    except ValueError as exc:
        raise InputError(f"'{spec_path}' is not valid JSON ({exc})") from None
    module = build_module(spec)
    try:
        state = load_file(str(weights))
        module.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise InputError(f"'{weights}' does not fit spec.json ({str(exc).splitlines()[0]})") from None
    module.eval()
    return module, spec
