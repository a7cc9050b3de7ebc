"""Model file formats, named by content and layout (the scanner decides whether they are safe)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

SAFE_FORMATS = ("torch-safetensors", "torch-export", "onnx", "skops")
PICKLE_FORMATS = ("torch-pickle", "sklearn-pickle")


def _magic(path: Path, n: int = 8) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def detect_model_format(path: Path, framework: str) -> str:
    """A short name for how the model is stored; never loads anything."""
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if "spec.json" in names and any(n.endswith(".safetensors") for n in names):
            if framework != "torch":
                raise InputError(f"'{path}' is a torch safetensors model: use --framework torch")
            return "torch-safetensors"
        onnx = [n for n in names if n.endswith(".onnx")]
        if onnx:
            return "onnx"
        return "folder"
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        if framework != "onnx":
            raise InputError(f"'{path}' is an ONNX file: use --framework onnx")
        return "onnx"
    if suffix == ".skops":
        return "skops"
    if suffix == ".pt2":
        return "torch-export"
    if suffix == ".safetensors":
        return "safetensors-weights"
    head = _magic(path)
    if head[:1] == b"\x80" or head[:2] == b"PK":
        return "torch-pickle" if framework == "torch" else f"{framework}-pickle"
    return "unknown"
