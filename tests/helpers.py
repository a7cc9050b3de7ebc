"""Small builders for test data files (real files, real formats)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_csv(path: Path, rows: int = 20, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, rows),
            "income": rng.normal(50_000, 10_000, rows).round(2),
            "sex": rng.choice(["f", "m"], rows),
            "label": rng.integers(0, 2, rows),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def write_parquet(path: Path, rows: int = 15) -> Path:
    frame = pd.DataFrame({"x": np.arange(rows, dtype=np.float64), "y": np.arange(rows) % 3})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)
    return path


def write_npz(path: Path, rows: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    with open(path, "wb") as fh:
        np.savez(fh, X=rng.random((rows, 4)).astype(np.float32), y=np.arange(rows) % 2)
    return path


def write_model_folder(path: Path, payload: bytes = b"weights-v1") -> Path:
    """A folder model made of plain files (enough for inventory and signing tests)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "weights.bin").write_bytes(payload)
    (path / "config.json").write_text('{"layers": 2}\n')
    (path / "sub").mkdir(exist_ok=True)
    (path / "sub" / "vocab.txt").write_text("a\nb\n")
    return path
