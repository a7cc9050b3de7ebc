"""Payload generators for the scanner's conformance suite, one per known bypass class.

Every payload is written as bytes (hand-assembled opcodes, or ``pickle.dumps`` of an object
whose ``__reduce__`` names a function without calling it) and is only ever *scanned*: no test
loads one. The classes follow the public advisories against picklescan, modelscan and
fickling (2023-2026); the code is ours.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

# --- opcode assembly --------------------------------------------------------------------------


def s4(text: str) -> bytes:
    """SHORT_BINUNICODE (or BINUNICODE) + MEMOIZE."""
    raw = text.encode()
    head = b"\x8c" + bytes([len(raw)]) if len(raw) < 256 else b"X" + struct.pack("<I", len(raw))
    return head + raw + b"\x94"


def proto4_call(module: str, name: str, *args: str) -> bytes:
    """``module.name(*args)`` via STACK_GLOBAL (protocol 4)."""
    tup = b"(" + b"".join(s4(a) for a in args) + b"t" if args else b")"
    return b"\x80\x04" + s4(module) + s4(name) + b"\x93\x94" + tup + b"R\x94."


def proto0_call(module: str, name: str, arg: str) -> bytes:
    """``module.name(arg)`` via GLOBAL in protocol 0 (no PROTO opcode at all)."""
    return f"c{module}\n{name}\n(V{arg}\ntR.".encode()


class Reduce:
    """An object that pickles as ``func(*args)``; pickling never calls ``func``."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.func, self.args


def dumps_reduce(func: Callable[..., Any], *args: Any, protocol: int = 4) -> bytes:
    return pickle.dumps(Reduce(func, *args), protocol=protocol)


# --- bypass classes named in the advisories ------------------------------------------------------


def advisory_payloads() -> dict[str, tuple[bytes, str]]:
    """name -> (payload, the dangerous global it must be reported with)."""
    import functools
    import imaplib
    import logging
    import pydoc
    import timeit
    import uuid

    system = f"{os.system.__module__}.system"
    return {
        "timeit": (dumps_reduce(timeit.timeit, "print(1)"), "timeit.timeit"),
        "pydoc": (dumps_reduce(pydoc.pipepager, "x", "sh -c id"), "pydoc.pipepager"),
        "operator.attrgetter": (proto4_call("operator", "attrgetter", "system"), "operator.attrgetter"),
        "_operator.methodcaller": (proto4_call("_operator", "methodcaller", "system", "id"),
                                   "_operator.methodcaller"),
        "functools.partial": (pickle.dumps(functools.partial(os.system, "id"), protocol=4),
                              "functools.partial"),
        "_io.FileIO": (proto4_call("_io", "FileIO", "/etc/hosts"), "_io.FileIO"),
        "logging.FileHandler": (dumps_reduce(logging.FileHandler, "/tmp/x"), "logging.FileHandler"),
        "uuid": (dumps_reduce(uuid._get_command_stdout, "id"), "uuid._get_command_stdout"),  # type: ignore[attr-defined]
        "imaplib": (dumps_reduce(imaplib.IMAP4_stream, "id"), "imaplib.IMAP4_stream"),
        "_pyrepl": (proto4_call("_pyrepl.pager", "pipe_pager", "x", "id"), "_pyrepl.pager.pipe_pager"),
        "asyncio submodule": (proto4_call("asyncio.unix_events", "_UnixSubprocessTransport"),
                              "asyncio.unix_events._UnixSubprocessTransport"),
        "dotted qualname": (proto4_call("bdb", "Bdb.run", "import os"), "bdb.Bdb.run"),
        "dunder attribute": (proto4_call("numpy", "__builtins__"), "numpy.__builtins__"),
        "package __main__": (proto4_call("torch.utils.bottleneck.__main__", "run_cprofile", "x"),
                             "torch.utils.bottleneck.__main__.run_cprofile"),
        "protocol 0 .bin": (proto0_call("os", "system", "id"), "os.system"),
        "protocol 2 builtins": (dumps_reduce(eval, "1", protocol=2), "builtins.eval"),
        "INST opcode": (b"(S'id'\nios\nsystem\n.", "os.system"),
        "OBJ opcode": (b"\x80\x02(cos\nsystem\nS'id'\no.", "os.system"),
        "NEWOBJ_EX": (b"\x80\x04" + s4("subprocess") + s4("Popen") + b"\x93" + s4("id")
                      + b"\x85}\x92.", "subprocess.Popen"),
        "posix.system": (dumps_reduce(os.system, "id", protocol=3), system),
    }


def memo_overwrite() -> bytes:
    """Slot 0 first holds 'numpy', then 'os': a scanner that keeps the first value is fooled."""
    return (b"\x80\x04" + b"\x8c\x05numpy" + b"q\x00" + b"0" + b"\x8c\x02osq\x00" + b"0"
            + b"\x8c\x06systemq\x01" + b"0" + b"h\x00h\x01\x93" + s4("id") + b"\x85R.")


def module_override() -> bytes:
    """BUILD plants strings in an allowlisted module; later imports resolve to builtins.exec."""
    return (b"\x80\x04" + b"\x8c\x0ctorch._utils\x94" + b"\x8c\x05torch\x94\x8c\x06_utils\x94\x93\x94"
            + b"}\x94(\x8c\x03mod\x94\x8c\x08builtins\x94\x8c\x03fun\x94\x8c\x04exec\x94u" + b"b0"
            + b"h\x00h\x05\x93h\x00h\x07\x93\x93" + s4("print(1)") + b"\x85R.")


def computed_name() -> bytes:
    """STACK_GLOBAL whose module name is the result of a call (allowlisted builtins.str)."""
    return (b"\x80\x04" + s4("builtins") + s4("str") + b"\x93" + s4("os") + b"\x85R"
            + s4("system") + b"\x93" + s4("id") + b"\x85R.")


def nested_pickle(outer_loader: tuple[str, str] = ("pickle", "loads")) -> bytes:
    inner = proto4_call("os", "system", "id")
    return (b"\x80\x04" + s4(outer_loader[0]) + s4(outer_loader[1]) + b"\x93"
            + b"C" + bytes([len(inner)]) + inner + b"\x85R.")


def concatenated() -> bytes:
    return pickle.dumps([1, 2, 3], protocol=4) + proto4_call("os", "system", "id")


def frames() -> bytes:
    """Payload in a second FRAME, after a benign first frame."""
    body1 = b"]\x94(K\x01K\x02e0"
    body2 = s4("os") + s4("system") + b"\x93" + s4("id") + b"\x85R."
    return (b"\x80\x04" + b"\x95" + struct.pack("<Q", len(body1)) + body1
            + b"\x95" + struct.pack("<Q", len(body2)) + body2)


def extension_code() -> bytes:
    return b"\x80\x02\x82\x05)R."


def billion_laughs(depth: int = 40) -> bytes:
    """Each level is a list of the previous one, twice (memo references, exponential size)."""
    out = b"\x80\x04]\x94"
    for i in range(depth):
        out += b"]\x94(h" + bytes([i % 256]) + b"h" + bytes([i % 256]) + b"e"
    return out + b"."


def opcode_flood(n: int) -> bytes:
    return b"\x80\x04]\x94(" + b"K\x01" * n + b"e."


# --- containers ---------------------------------------------------------------------------


def zip_bytes(members: dict[str, bytes], *, method: int = zipfile.ZIP_STORED) -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", compression=method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return bio.getvalue()


def set_flag(data: bytes, flag: int) -> bytes:
    """Set a general-purpose flag bit in every local and central header."""
    b = bytearray(data)
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = b.find(sig)
        while i >= 0:
            (cur,) = struct.unpack_from("<H", b, i + off)
            struct.pack_into("<H", b, i + off, cur | flag)
            i = b.find(sig, i + 4)
    return bytes(b)


def break_crc(data: bytes) -> bytes:
    b = bytearray(data)
    for sig, off in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
        i = b.find(sig)
        while i >= 0:
            struct.pack_into("<I", b, i + off, zlib.crc32(b"other") & 0xFFFFFFFF)
            i = b.find(sig, i + 4)
    return bytes(b)


def rename_local(data: bytes, old: str, new: str) -> bytes:
    """Change a member's name in its local header only (same length)."""
    assert len(old) == len(new)
    i = data.find(b"PK\x03\x04")
    return data[:i] + data[i:].replace(old.encode(), new.encode(), 1)


def hidden_local_entry(payload: bytes) -> bytes:
    """A local entry placed before a normal archive, missing from its central directory."""
    visible = zip_bytes({"readme.txt": b"hello"})
    hidden = zip_bytes({"evil.pkl": payload})
    local_end = hidden.find(b"PK\x01\x02")
    shifted = bytearray(visible)
    cd = shifted.find(b"PK\x01\x02")
    while cd >= 0:  # fix the visible archive's offsets for the bytes put in front
        (off,) = struct.unpack_from("<I", shifted, cd + 42)
        struct.pack_into("<I", shifted, cd + 42, off + local_end)
        cd = shifted.find(b"PK\x01\x02", cd + 4)
    eocd = shifted.rfind(b"PK\x05\x06")
    (cdo,) = struct.unpack_from("<I", shifted, eocd + 16)
    struct.pack_into("<I", shifted, eocd + 16, cdo + local_end)
    return hidden[:local_end] + bytes(shifted)


def test_payloads_are_bytes_and_never_loaded() -> None:
    for name, (payload, expected) in advisory_payloads().items():
        assert isinstance(payload, bytes) and payload, name
        assert "." in expected
    for make in (memo_overwrite, module_override, computed_name, nested_pickle, concatenated,
                 frames, extension_code):
        assert make()[-1:] == b"."
