"""A minimal grayscale PNG writer (zlib only), for evidence images without an imaging library."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(image: np.ndarray) -> bytes:
    """8-bit grayscale PNG of a 2-D array with values in [0, 1]."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    pixels = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    h, w = pixels.shape
    raw = b"".join(b"\x00" + pixels[r].tobytes() for r in range(h))  # filter 0 per row
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))


def image_grid(images: list[np.ndarray], *, columns: int, scale: int = 8, pad: int = 1) -> np.ndarray:
    """Tile equally sized 2-D images (values in [0, 1]) into one, upscaled by ``scale``."""
    if not images:
        raise ValueError("no images to tile")
    h, w = images[0].shape
    rows = -(-len(images) // columns)
    H, W = h * scale, w * scale
    grid = np.ones((rows * (H + pad) + pad, columns * (W + pad) + pad))
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        big = np.kron(np.asarray(img, dtype=np.float64), np.ones((scale, scale)))
        y0, x0 = pad + r * (H + pad), pad + c * (W + pad)
        grid[y0 : y0 + H, x0 : x0 + W] = big
    return grid


def write_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(image))
    return path
