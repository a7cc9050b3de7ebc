"""Header checks for formats that hold only tensors: safetensors and GGUF.

Neither format can carry code, but a malformed header is how a file smuggles data a reader
misinterprets (offsets that overlap, point outside the file, or sizes that disagree with the
shape) and how parsers are crashed. The checks follow the safetensors specification
(``huggingface/safetensors``: header JSON, known dtypes, contiguous non-overlapping offsets
that cover the buffer) and the GGUF specification (``ggml/docs/gguf.md``: typed metadata,
tensor infos, aligned offsets inside the data section). A GGUF chat template is a Jinja2
program: one that reaches Python internals is the llama-cpp-python SSTI pattern
(CVE-2024-34359).
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any

from .context import ScanContext

# dtype -> bits per element
ST_DTYPES = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16,
    "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64,
    "U64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
ST_MAX_HEADER = 100_000_000


def looks_like_safetensors(buf: Any, start: int, end: int) -> bool:
    if end - start < 10:
        return False
    n = struct.unpack_from("<Q", buf, start)[0]
    return 2 <= n <= min(ST_MAX_HEADER, end - start - 8) and buf[start + 8] == 0x7B


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key '{k}'")
        out[k] = v
    return out


def check_safetensors(ctx: ScanContext, buf: Any, start: int, end: int, member: str | None) -> None:
    def bad(what: str) -> None:
        ctx.issue("malformed", "needs-trust", "malformed safetensors header", what, member)

    n = struct.unpack_from("<Q", buf, start)[0]
    try:
        header = json.loads(bytes(buf[start + 8:start + 8 + n]).decode("utf-8"),
                            object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return bad(f"the header is not valid JSON ({exc})")
    if not isinstance(header, dict):
        return bad("the header is not a JSON object")
    data_len = end - start - 8 - n
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        bad("__metadata__ must map strings to strings")
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if not isinstance(info, dict):
            bad(f"tensor '{name}': entry is not an object")
            continue
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in ST_DTYPES:
            bad(f"tensor '{name}': unknown dtype {dtype!r}")
            continue
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            bad(f"tensor '{name}': shape must be a list of non-negative integers")
            continue
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs)
                and 0 <= offs[0] <= offs[1]):
            bad(f"tensor '{name}': data_offsets must be [begin, end] with begin <= end")
            continue
        count = 1
        for d in shape:
            count *= d
        bits = count * ST_DTYPES[dtype]
        if bits % 8 or bits // 8 != offs[1] - offs[0]:
            bad(f"tensor '{name}': {offs[1] - offs[0]} bytes stored, shape {shape} of {dtype} needs {bits / 8:g}")
        if offs[1] > data_len:
            bad(f"tensor '{name}': data_offsets end {offs[1]} past the data ({data_len} bytes)")
        spans.append((offs[0], offs[1], name))
    spans.sort()
    expected = 0
    for begin, stop, name in spans:
        if begin < expected:
            bad(f"tensor '{name}' overlaps the tensor before it")
        elif begin > expected:
            bad(f"a gap of {begin - expected} bytes before tensor '{name}'")
        expected = max(expected, stop)
    if expected != data_len:
        bad(f"the tensors cover {expected} bytes of a {data_len}-byte data buffer")


# --- GGUF -------------------------------------------------------------------------------------
GGUF_MAGIC = b"GGUF"
# ggml type -> (block size, bytes per block)
GGML_TYPES = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
    14: (256, 210), 15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98),
    19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1),
    25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54),
    35: (256, 66), 39: (32, 17),
}
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}
SSTI = re.compile(r"__(class|globals|subclasses|builtins|import|init|mro|base|bases|code|"
                  r"getattribute|dict|reduce|reduce_ex)__|\b(popen|subprocess|eval|exec|"
                  r"os\.system)\b")


class _GGUFError(Exception):
    pass


class _Cursor:
    def __init__(self, buf: Any, pos: int, end: int, version: int) -> None:
        self.buf, self.pos, self.end, self.version = buf, pos, end, version

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > self.end:
            raise _GGUFError("the header runs past the end of the file")
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return v

    def count(self) -> int:
        return int(self.unpack("<I" if self.version == 1 else "<Q"))

    def string(self, limit: int = 1 << 26) -> str:
        n = self.count()
        if n > limit or self.pos + n > self.end:
            raise _GGUFError(f"a string of {n} bytes runs past the end or the limit")
        s = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8", "replace")
        self.pos += n
        return s

    def value(self, vtype: int, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9 and depth < 4:
            etype, n = self.unpack("<I"), self.count()
            if n > self.end - self.pos:
                raise _GGUFError(f"an array of {n} items cannot fit in the file")
            if etype in _SCALARS and etype != 8:
                self.pos += n * struct.calcsize(_SCALARS[etype])
                if self.pos > self.end:
                    raise _GGUFError("an array runs past the end of the file")
                return None
            return [self.value(etype, depth + 1) for _ in range(n)]
        raise _GGUFError(f"unknown metadata value type {vtype}")


def check_gguf(ctx: ScanContext, buf: Any, start: int, end: int, member: str | None) -> None:
    def bad(what: str) -> None:
        ctx.issue("malformed", "needs-trust", "malformed GGUF header", what, member)

    if end - start < 24:
        return bad("the file is shorter than a GGUF header")
    version = struct.unpack_from("<I", buf, start + 4)[0]
    if version not in (1, 2, 3):
        return bad(f"unknown GGUF version {version}")
    cur = _Cursor(buf, start + 8, end, version)
    try:
        n_tensors, n_kv = cur.count(), cur.count()
        if n_tensors > 10_000_000 or n_kv > 10_000_000:
            return bad(f"implausible counts ({n_tensors} tensors, {n_kv} metadata keys)")
        alignment = 32
        for _ in range(n_kv):
            ctx.meter.check_time()
            key = cur.string(1 << 16)
            value = cur.value(cur.unpack("<I"))
            if key == "general.alignment":
                if type(value) is not int or value <= 0 or value & (value - 1):
                    bad(f"general.alignment must be a power of two, got {value!r}")
                else:
                    alignment = value
            if key.startswith("tokenizer.chat_template") and isinstance(value, str):
                m = SSTI.search(value)
                if m:
                    ctx.issue("embedded-code", "malicious", f"chat template '{key}' reaches Python internals",
                              f"the Jinja2 template uses '{m.group(0)}': rendering it outside a sandbox "
                              "runs code (CVE-2024-34359)", member)
        infos = []
        for _ in range(n_tensors):
            ctx.meter.check_time()
            name = cur.string(1 << 16)
            n_dims = cur.unpack("<I")
            if n_dims > 4:
                bad(f"tensor '{name}': {n_dims} dimensions (GGML allows 4)")
                return
            dims = [cur.unpack("<Q" if version > 1 else "<I") for _ in range(n_dims)]
            infos.append((name, dims, cur.unpack("<I"), cur.unpack("<Q")))
    except _GGUFError as exc:
        return bad(str(exc))
    data_start = cur.pos + (-(cur.pos - start)) % alignment
    data_len = end - data_start
    spans = []
    for name, dims, gtype, offset in infos:
        if gtype not in GGML_TYPES:
            bad(f"tensor '{name}': unknown tensor type {gtype}")
            continue
        block, size = GGML_TYPES[gtype]
        count = 1
        for d in dims:
            count *= d
        if dims and dims[0] % block:
            bad(f"tensor '{name}': first dimension {dims[0]} is not a multiple of the block size {block}")
            continue
        nbytes = count // block * size
        if offset % alignment:
            bad(f"tensor '{name}': offset {offset} is not aligned to {alignment}")
        if offset + nbytes > data_len:
            bad(f"tensor '{name}': data [{offset}, {offset + nbytes}) runs past the data section ({data_len} bytes)")
        spans.append((offset, offset + nbytes, name))
    spans.sort()
    for (_a, a_end, a_name), (b_start, _b, b_name) in zip(spans, spans[1:], strict=False):
        if b_start < a_end:
            bad(f"tensors '{a_name}' and '{b_name}' overlap")
            break
