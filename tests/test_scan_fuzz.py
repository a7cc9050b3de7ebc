"""Fuzzing the parsers with mutated files: no crash, no hang past the budget, no surprise error.

Seeds are real files of every format the scanner reads; hypothesis flips, truncates, inserts
and duplicates bytes. The scanner must always return a report (``scan_bytes`` never raises),
within its time budget, and must never import anything a file names.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import sys
import tarfile
import time
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskloop.assess.supply_chain import Budgets, ScanPolicy, scan_bytes, scan_paths
from riskloop.errors import RiskloopError

BUDGET = ScanPolicy(budgets=Budgets(max_seconds=2.0, max_opcodes=200_000, max_memory=64 << 20,
                                    max_decompressed=8 << 20, max_nesting=4, max_members=200))


def _seeds() -> dict[str, bytes]:
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    zipped, legacy = io.BytesIO(), io.BytesIO()
    torch.save(m.state_dict(), zipped)
    torch.save(m.state_dict(), legacy, _use_new_zipfile_serialization=False)
    npz = io.BytesIO()
    np.savez(npz, a=np.arange(4), b=np.array(["x", None], dtype=object))
    npy = io.BytesIO()
    np.save(npy, np.array([1, "a"], dtype=object), allow_pickle=True)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        info = tarfile.TarInfo("a.pkl")
        raw = pickle.dumps({"k": [1, 2]})
        info.size = len(raw)
        t.addfile(info, io.BytesIO(raw))
    gguf = (b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + struct.pack("<Q", 4) + b"name"
            + struct.pack("<I", 8) + struct.pack("<Q", 1) + b"x" + struct.pack("<Q", 1) + b"w"
            + struct.pack("<IQIQ", 1, 4, 0, 0))
    gguf += b"\0" * (-len(gguf) % 32) + b"\0" * 16
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data.pkl", pickle.dumps([1.5, "two", {3}], protocol=2))
        z.writestr("nested.zip", zipped.getvalue())
    return {
        "p0": pickle.dumps({"a": [1, 2.5, "x"], "b": (None, True)}, protocol=0),
        "p2": pickle.dumps(np.arange(6).reshape(2, 3), protocol=2),
        "p4": pickle.dumps([{"k": i} for i in range(20)], protocol=4),
        "p5": pickle.dumps(torch.ones(3), protocol=5),
        "torch-zip": zipped.getvalue(), "torch-legacy": legacy.getvalue(),
        "npz": npz.getvalue(), "npy": npy.getvalue(),
        "safetensors": struct.pack("<Q", len(header)) + header + b"\0" * 8,
        "tar": tar.getvalue(), "gzip": gzip.compress(pickle.dumps(list(range(50)))),
        "gguf": gguf, "zip": zbuf.getvalue(),
    }


SEEDS = _seeds()
# the scanner's own lazy imports (ONNX bindings, codecs) are loaded before counting modules
scan_bytes(b"\x08\x07\x12\x00:\x00", BUDGET)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "duplicate", "zero"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "duplicate":
            n = draw(st.integers(1, 64))
            data[pos:pos] = data[pos:pos + n]
        elif kind == "zero":
            data[pos:pos + draw(st.integers(1, 16))] = b"\0" * len(data[pos:pos + 16])
    return bytes(data)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_mutated_files_never_crash_or_hang(data):
    before = set(sys.modules)
    t0 = time.perf_counter()
    report = scan_bytes(data, BUDGET)
    elapsed = time.perf_counter() - t0
    assert elapsed < BUDGET.budgets.max_seconds + 3
    assert report.verdict in ("clean", "needs-trust", "malicious")
    assert all(i.rule and i.title for i in report.issues)
    json.dumps(report.as_dict(), default=str)
    new = {m for m in set(sys.modules) - before if not m.startswith("encodings.")}
    assert not new, new


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=2048))
def test_random_bytes_never_crash(data):
    assert scan_bytes(data, BUDGET).verdict in ("clean", "needs-trust", "malicious")


def test_scanning_never_imports_what_a_file_names(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "rl_canary_mod.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nboom = print\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from tests.test_scan_payloads import proto0_call, proto4_call

    payloads = [proto4_call("rl_canary_mod", "boom", "x"), proto0_call("rl_canary_mod", "boom", "x"),
                pickle.dumps([1] * 200_000, protocol=4)[:-1] + b"0" + proto4_call("rl_canary_mod", "boom")[2:]]
    for p in payloads:
        report = scan_bytes(p)
        assert report.verdict == "needs-trust"
        assert any(i.global_name == "rl_canary_mod.boom" for i in report.issues)
    assert not marker.exists() and "rl_canary_mod" not in sys.modules


def test_path_errors_are_our_errors(tmp_path):
    with pytest.raises(RiskloopError, match="does not exist"):
        scan_paths([tmp_path / "missing.pkl"])
    locked = tmp_path / "locked.pkl"
    locked.write_bytes(b"x")
    locked.chmod(0)
    try:
        if not locked.stat().st_mode & 0o444 and not _root():
            with pytest.raises(RiskloopError, match="cannot be read"):
                scan_paths([locked])
    finally:
        locked.chmod(0o644)


def _root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0
