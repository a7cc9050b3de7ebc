"""Benchmark: riskloop's model-file scanner against picklescan and modelscan, side by side.

Workloads (written once into --dir, which is kept between runs):

- ``array.pkl``: a pickle holding one NumPy float64 array (default 200 MB);
- ``dicts.pkl``: a pickle of one million small dicts (about 9 million opcodes);
- ``checkpoint.pt``: a PyTorch zip checkpoint (``torch.save`` of a state dict, about 50 MB);
- ``legacy.pt``: the same state dict in the legacy (pre-zip) torch.save layout.

Each tool scans each file through its Python API (single call, file by file), ``--repeat``
times; the median is reported with the ratio to riskloop. Reference points: reading the
file, and a bare ``pickletools.genops`` walk (what the peers build on). Nothing is loaded.

    .venv/bin/python bench/scan.py --repeat 3
    .venv/bin/python bench/scan.py --repeat 3 --json bench-scan.json
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import pickle
import pickletools
import platform
import statistics
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def make_files(folder: Path, array_mb: int, dicts: int) -> dict[str, Path]:
    import numpy as np
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    files = {"array.pkl": folder / "array.pkl", "dicts.pkl": folder / "dicts.pkl",
             "checkpoint.pt": folder / "checkpoint.pt", "legacy.pt": folder / "legacy.pt"}
    if not files["array.pkl"].exists():
        arr = np.random.default_rng(0).random(array_mb * 1024 * 1024 // 8)
        files["array.pkl"].write_bytes(pickle.dumps(arr, protocol=4))
    if not files["dicts.pkl"].exists():
        files["dicts.pkl"].write_bytes(pickle.dumps(
            [{"id": i, "score": float(i), "tag": "x"} for i in range(dicts)], protocol=4))
    if not files["checkpoint.pt"].exists():
        torch.manual_seed(0)
        state = {f"layer{i}.weight": torch.randn(512, 512) for i in range(48)}
        torch.save(state, files["checkpoint.pt"])
        torch.save(state, files["legacy.pt"], _use_new_zipfile_serialization=False)
    return files


def _riskloop(path: Path) -> str:
    from riskloop.assess.supply_chain import scan_paths

    return scan_paths([path]).verdict


def _picklescan(path: Path) -> str:
    from picklescan.scanner import scan_file_path

    result = scan_file_path(str(path))
    return "malicious" if result.infected_files else ("error" if result.scan_err else "clean")


def _modelscan(path: Path) -> str:
    from modelscan.modelscan import ModelScan

    result = ModelScan().scan(str(path))
    return "findings" if result.get("issues") else "clean"


def _read(path: Path) -> str:
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass
    return "-"


def _genops(path: Path) -> str:
    data = path.read_bytes()
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    n = 0
    for _ in pickletools.genops(data):
        n += 1
    return f"{n} ops"


TOOLS: dict[str, Callable[[Path], str]] = {
    "riskloop": _riskloop, "picklescan": _picklescan, "modelscan": _modelscan,
    "read the file": _read, "pickletools.genops": _genops,
}


def measure(fn: Callable[[Path], str], path: Path, repeat: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(path)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/riskloop-bench-scan"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--array-mb", type=int, default=200)
    ap.add_argument("--dicts", type=int, default=1_000_000)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.disable(logging.CRITICAL)  # modelscan logs every skipped file
    files = make_files(args.dir, args.array_mb, args.dicts)
    tools = [t for t in args.tools.split(",") if t in TOOLS]
    for fn in (TOOLS[t] for t in tools):  # warm the imports outside the timings
        fn(files["legacy.pt"])
    rows: list[dict[str, Any]] = []
    print(f"python {platform.python_version()} on {platform.machine()}, median of {args.repeat}")
    for name, path in files.items():
        size = path.stat().st_size
        base = None
        for tool in tools:
            if tool == "pickletools.genops" and name == "legacy.pt":
                continue
            secs, out = measure(TOOLS[tool], path, args.repeat)
            base = secs if tool == "riskloop" else base
            ratio = secs / base if base else float("nan")
            rows.append({"file": name, "bytes": size, "tool": tool, "seconds": secs,
                         "ratio_to_riskloop": ratio, "result": out})
            print(f"{name:14} {size / 1e6:8.1f} MB  {tool:20} {secs:9.3f} s  "
                  f"{ratio:7.1f}x riskloop  {out}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
