"""NumPy ``.npy``, ONNX and Keras (``.keras`` config, legacy HDF5 ``model_config``) checks.

- ``.npy``: the header is a Python literal (read with ``ast.literal_eval``, as NumPy does);
  an object array's data is a pickle, scanned like any other.
- ONNX: tensors stored as external data name a file by path; a path that is absolute, climbs
  out with ``..`` or resolves (through links) outside the model's folder reads arbitrary
  files when the model loads (CVE-2024-27318 class). Operators from a custom domain need a
  native operator library. Parsed with the ``onnx`` protobuf bindings, nothing executed.
- Keras: a ``Lambda`` layer stores Python bytecode or source that runs when the model is
  loaded with ``safe_mode=False``; objects from modules outside Keras are imported by name
  while loading, so they are classified like pickle globals.
"""

from __future__ import annotations

import ast
import json
import struct
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .allowlist import DANGEROUS, UNKNOWN
from .context import ScanContext
from .pickles import scan_stream

NPY_MAGIC = b"\x93NUMPY"
NPY_MAX_HEADER = 10_000


def _descr_has_object(descr: Any, depth: int = 0) -> bool:
    if depth > 32:
        return True
    if isinstance(descr, str):
        return "O" in descr.lstrip("<>|=")[:1]
    if isinstance(descr, list | tuple):
        return any(_descr_has_object(d, depth + 1) for d in descr)
    return False


def check_npy(ctx: ScanContext, buf: Any, start: int, end: int, member: str | None, depth: int) -> None:
    def bad(what: str) -> None:
        ctx.issue("malformed", "needs-trust", "malformed .npy header", what, member)

    if end - start < 10:
        return bad("the file is shorter than an .npy header")
    major = buf[start + 6]
    if major == 1:
        hlen, hstart = struct.unpack_from("<H", buf, start + 8)[0], start + 10
    elif major in (2, 3) and end - start >= 12:
        hlen, hstart = struct.unpack_from("<I", buf, start + 8)[0], start + 12
    else:
        return bad(f"unknown .npy version {major}")
    if hlen > NPY_MAX_HEADER or hstart + hlen > end:
        return bad(f"header of {hlen} bytes (NumPy reads at most {NPY_MAX_HEADER}) or past the end")
    try:
        text = bytes(buf[hstart:hstart + hlen]).decode("utf-8" if major == 3 else "latin-1")
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, UnicodeDecodeError) as exc:
        return bad(f"the header is not a Python literal ({type(exc).__name__})")
    if not isinstance(header, dict) or not {"descr", "fortran_order", "shape"} <= set(header):
        return bad("the header must be a dict with descr, fortran_order and shape")
    data = hstart + hlen
    if _descr_has_object(header["descr"]):
        ctx.part(member, "npy-object-array")
        ctx.report.notes.append(f"{member or 'file'}: object array: its data is a pickle "
                                "(np.load needs allow_pickle=True)")
        if data < end:
            scan_stream(ctx, buf, data, end, member, depth)
        return
    shape = header["shape"]
    if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)):
        return bad("shape must be a tuple of non-negative integers")
    try:
        import numpy as np

        itemsize = np.dtype(header["descr"]).itemsize
    except (TypeError, ValueError):
        return bad(f"unknown dtype {header['descr']!r}")
    count = 1
    for d in shape:
        count *= d
    if count * itemsize > end - data:
        bad(f"shape {shape} needs {count * itemsize} bytes, the file holds {end - data}")


# --- ONNX -------------------------------------------------------------------------------------
STANDARD_DOMAINS = frozenset({
    "", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training",
    "com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental",
})


def parse_onnx(data: bytes) -> Any | None:
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a dependency
        return None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf raises DecodeError and RuntimeError variants
        return None
    if not model.HasField("graph") or not model.ir_version:
        return None
    return model


def _graphs(graph: Any, depth: int = 0) -> Any:
    yield graph
    if depth > 64:
        return
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g, depth + 1)
            for g in attr.graphs:
                yield from _graphs(g, depth + 1)


def _tensors(model: Any) -> Any:
    nodes = []
    for g in _graphs(model.graph):
        yield from g.initializer
        for sp in g.sparse_initializer:
            yield sp.values
            yield sp.indices
        nodes.extend(g.node)
    for f in model.functions:
        nodes.extend(f.node)
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors


def _escapes(location: str, base: Path | None) -> str | None:
    win, posix = PureWindowsPath(location), PurePosixPath(location)
    if posix.is_absolute() or win.is_absolute() or win.drive or location.startswith(("/", "\\")):
        return "an absolute path"
    if ".." in posix.parts or ".." in win.parts:
        return "a path that climbs out with '..'"
    if base is not None:
        try:
            target = (base / location).resolve()
            if not target.is_relative_to(base.resolve()):
                return f"a path that resolves to '{target}' (through a link)"
        except (OSError, ValueError):
            return "a path that cannot be resolved"
    return None


def check_onnx(ctx: ScanContext, model: Any, member: str | None) -> None:
    base = ctx.base_dir if member is None else None
    local_fns = {(f.domain, f.name) for f in model.functions}
    for t in _tensors(model):
        if t.data_location != 1:  # EXTERNAL
            continue
        entries = {e.key: e.value for e in t.external_data}
        loc = entries.get("location", "")
        why = _escapes(loc, base)
        if why:
            ctx.issue("path-escape", "malicious", f"tensor '{t.name}' reads external data from outside the model folder",
                      f"external data location '{loc}' is {why}: loading reads that file", member)
        elif base is not None and not (base / loc).is_file():
            ctx.issue("malformed", "needs-trust", f"tensor '{t.name}': external data file missing",
                      f"'{loc}' does not exist next to the model", member)
    custom = {imp.domain for imp in model.opset_import if imp.domain not in STANDARD_DOMAINS}
    for g in _graphs(model.graph):
        for node in g.node:
            if node.domain not in STANDARD_DOMAINS and (node.domain, node.op_type) not in local_fns:
                custom.add(node.domain)
    for domain in sorted(custom - {f.domain for f in model.functions}):
        ctx.issue("custom-operator", "needs-trust", f"operators from custom domain '{domain}'",
                  "running the model needs a custom operator library (native code) registered "
                  "with the runtime", member)


# --- Keras ------------------------------------------------------------------------------------
_KERAS_MODULES = ("keras", "tf_keras", "tensorflow.keras", "tensorflow.python.keras")


def check_keras_config(ctx: ScanContext, config: Any, member: str | None) -> None:
    """Walk a Keras model config (``config.json`` or HDF5 ``model_config``)."""
    stack: list[tuple[Any, int]] = [(config, 0)]
    seen = 0
    while stack and seen < 1_000_000:
        node, depth = stack.pop()
        seen += 1
        if isinstance(node, list) and depth < 200:
            stack.extend((v, depth + 1) for v in node)
            continue
        if not isinstance(node, dict) or depth >= 200:
            continue
        cls, module = node.get("class_name"), node.get("module")
        name = (node.get("config") or {}).get("name") if isinstance(node.get("config"), dict) else None
        if cls == "Lambda":
            ctx.issue("embedded-code", "malicious", f"Keras Lambda layer '{name or '?'}'",
                      "a Lambda layer stores Python bytecode or source that runs when the model is "
                      "loaded with safe_mode=False (and refuses to load otherwise)", member)
        if isinstance(cls, str) and isinstance(module, str) and module and not any(
            module == m or module.startswith(m + ".") for m in _KERAS_MODULES
        ):
            verdict = ctx.allowlist.classify(module, cls if cls != "function" else str(node.get("config")))
            if verdict.status in (DANGEROUS, UNKNOWN):
                bad = verdict.status == DANGEROUS
                ctx.issue("embedded-code", "malicious" if bad else "needs-trust",
                          f"Keras object {module}.{cls} is imported from outside Keras",
                          verdict.reason if bad else "custom objects run their own code when "
                          "the model is deserialised: needs an explicit trust decision", member)
        reg = node.get("registered_name")
        if isinstance(reg, str) and ">" in reg:
            ctx.issue("embedded-code", "needs-trust", f"Keras custom object '{reg}'",
                      "a registered custom object must be importable and runs its own code", member)
        stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))


def hdf5_keras_configs(buf: Any, start: int, end: int, limit: int = 64) -> list[Any]:
    """Keras JSON configs stored as HDF5 attributes, found by content (no HDF5 library)."""
    out: list[Any] = []
    pos = start
    dec = json.JSONDecoder()
    while len(out) < limit:
        pos = buf.find(b'{"class_name"', pos, end)
        if pos < 0:
            break
        window = bytes(buf[pos:min(end, pos + (64 << 20))]).decode("utf-8", "replace")
        try:
            obj, used = dec.raw_decode(window)
            out.append(obj)
            pos += max(1, len(window[:used].encode("utf-8")))
        except (ValueError, RecursionError):
            pos += 1
    return out
