"""Containers: ZIP (PyTorch, Keras, NumPy ``.npz``, TorchScript), 7z, tar, compressed streams.

Every member is scanned by content, whatever its name, and nested containers are opened
again up to the nesting budget. PyTorch archives are read as ``torch.load`` reads them: the
pickle first, then the members it references as tensor storages, which are raw bytes and
never parsed as code.
"""

from __future__ import annotations

import bz2
import io
import json
import lzma
import posixpath
import tarfile
import zlib
from typing import Any

from .budgets import BudgetExceeded
from .context import ScanContext, join_member
from .modelfiles import check_keras_config
from .sevenzip import SevenZipError, read_7z
from .zipread import TRICK_FLAGS, Entry, Unsupported, list_zip, member_data

CRC_LIMIT = 64 << 20


def _kind(names: list[str]) -> str:
    base = {posixpath.basename(n) for n in names}
    if any(n == "config.json" for n in names) and "metadata.json" in names:
        return "keras"
    if "constants.pkl" in base and any("/code/" in n or n.startswith("code/") for n in names):
        return "torchscript"
    if "data.pkl" in base:
        return "torch-zip"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def scan_zip(ctx: ScanContext, buf: Any, start: int, end: int, member: str | None, depth: int) -> str:
    listing = list_zip(buf, start, end, max_members=ctx.budgets.max_members)
    for t in listing.tricks:
        ctx.issue("container-trick", "needs-trust", "ZIP structure trick", t, member)
    for e in listing.errors:
        ctx.issue("malformed", "needs-trust", "malformed ZIP archive", e, member)
    if len(listing.entries) >= ctx.budgets.max_members:
        ctx.issue("budget", "needs-trust", "max_members budget exceeded",
                  f"only the first {ctx.budgets.max_members} archive members were scanned", member)
    if listing.prefix:
        ctx.scan(buf, start, start + listing.prefix, join_member(member, "<data before the archive>"), depth + 1)
    names = [e.name for e in listing.entries]
    kind = _kind(names)
    entries = sorted(listing.entries, key=lambda e: (not e.name.endswith(".pkl"), e.header))
    pkl_dirs = {posixpath.dirname(n) for n in names if posixpath.basename(n) == "data.pkl"}
    keras_config: Any = None
    for e in entries:
        ctx.meter.check_time()
        child = join_member(member, e.name)
        top = posixpath.dirname(posixpath.dirname(e.name))
        if (kind == "torch-zip" and top in pkl_dirs and posixpath.basename(posixpath.dirname(e.name)) == "data"
                and posixpath.basename(e.name) in ctx.storage_keys):
            ctx.part(child, "tensor-storage")
            continue
        data = _read(ctx, buf, e, end, child)
        if data is None:
            continue
        mbuf, ms, me = data
        fmt = ctx.scan(mbuf, ms, me, child, depth + 1)
        tricks = [v for k, v in TRICK_FLAGS.items() if e.flags & k]
        encrypted = bool(tricks) and fmt == "data"
        crc_known = e.in_central or not e.flags & 0x8
        if (not encrypted and crc_known and me - ms <= CRC_LIMIT
                and zlib.crc32(memoryview(mbuf)[ms:me]) != e.crc):
            ctx.issue("container-trick", "needs-trust", f"CRC mismatch in member '{e.name}'",
                      "the member was changed after the archive was written; loaders that skip the "
                      "check read it anyway (CVE-2025-10156)", member)
        if tricks:
            if encrypted:
                ctx.issue("unscannable", "needs-trust", f"member '{e.name}' is encrypted",
                          "its content cannot be inspected without the password", member)
            else:
                ctx.issue("container-trick", "needs-trust", f"member '{e.name}' is flagged as {', '.join(tricks)}",
                          f"yet it reads as {fmt}: loaders that ignore the flag load it (CVE-2025-1945)", member)
        if kind == "keras" and e.name == "config.json":
            try:
                keras_config = json.loads(bytes(mbuf[ms:me]))
            except (ValueError, RecursionError):
                ctx.issue("malformed", "needs-trust", "Keras config.json is not valid JSON", "", child)
    if keras_config is not None:
        check_keras_config(ctx, keras_config, join_member(member, "config.json"))
    if kind == "torchscript":
        ctx.issue("embedded-code", "needs-trust", "TorchScript program",
                  "the archive holds TorchScript code (code/*.py) that runs in the TorchScript "
                  "interpreter when the model is loaded and called", member)
    return kind


def _read(ctx: ScanContext, buf: Any, e: Entry, end: int, child: str) -> tuple[Any, int, int] | None:
    try:
        return member_data(buf, e, end, ctx.meter)
    except Unsupported as exc:
        ctx.issue("unscannable", "needs-trust", f"member '{e.name}' cannot be decompressed", f"{exc} is not supported", child)
    except BudgetExceeded:
        raise
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as exc:
        if e.flags & 0x1:
            ctx.issue("unscannable", "needs-trust", f"member '{e.name}' is encrypted",
                      "its content cannot be inspected without the password", child)
        else:
            ctx.issue("malformed", "needs-trust", f"member '{e.name}' does not decompress", str(exc), child)
    return None


def scan_7z(ctx: ScanContext, buf: Any, start: int, end: int, member: str | None, depth: int) -> str:
    try:
        files = read_7z(buf, start, end, ctx.meter)
    except Unsupported as exc:
        ctx.issue("unscannable", "needs-trust", "7z archive cannot be read", f"{exc} is not supported", member)
        return "7z"
    except (SevenZipError, lzma.LZMAError, zlib.error, OSError, EOFError, ValueError) as exc:
        ctx.issue("malformed", "needs-trust", "malformed 7z archive", str(exc), member)
        return "7z"
    for name, data in files[:ctx.budgets.max_members]:
        child = join_member(member, name)
        if isinstance(data, Exception):
            ctx.issue("unscannable", "needs-trust", f"7z member '{name}' cannot be decoded", str(data), child)
        else:
            ctx.scan(data, 0, len(data), child, depth + 1)
    return "7z"


class _Window(io.RawIOBase):
    """A read-only file over ``buf[start:end]`` (for tarfile)."""

    def __init__(self, buf: Any, start: int, end: int) -> None:
        self.buf, self.start, self.end, self.pos = buf, start, end, start

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), self.end - self.pos))
        b[:n] = self.buf[self.pos:self.pos + n]
        self.pos += n
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: self.start, 1: self.pos, 2: self.end}[whence]
        self.pos = min(max(self.start, base + offset), self.end)
        return self.pos - self.start

    def tell(self) -> int:
        return self.pos - self.start


def scan_tar(ctx: ScanContext, buf: Any, start: int, end: int, member: str | None, depth: int) -> str:
    try:
        with tarfile.open(fileobj=io.BufferedReader(_Window(buf, start, end)), mode="r:") as tar:
            for i, info in enumerate(tar):
                if i >= ctx.budgets.max_members:
                    ctx.issue("budget", "needs-trust", "max_members budget exceeded", "tar archive", member)
                    break
                child = join_member(member, info.name)
                if info.issym() or info.islnk():
                    ctx.report.notes.append(f"{child}: link to '{info.linkname}' (not followed)")
                    continue
                if not info.isfile():
                    continue
                ctx.meter.add_decompressed(info.size)
                fh = tar.extractfile(info)
                data = fh.read() if fh else b""
                ctx.scan(data, 0, len(data), child, depth + 1)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        ctx.issue("malformed", "needs-trust", "malformed tar archive", str(exc), member)
    return "tar"


def _inflate(kind: str, raw: bytes, room: int) -> bytes:
    if kind == "gzip":
        return zlib.decompressobj(wbits=47).decompress(raw, room + 1)
    if kind == "zlib":
        return zlib.decompressobj().decompress(raw, room + 1)
    if kind == "bz2":
        return bz2.BZ2Decompressor().decompress(raw, room + 1)
    return lzma.LZMADecompressor(lzma.FORMAT_AUTO).decompress(raw, room + 1)


def scan_compressed(ctx: ScanContext, kind: str, buf: Any, start: int, end: int,
                    member: str | None, depth: int) -> str:
    """A single compressed stream (gzip, zlib, bz2, xz, lzma): joblib's compressed files."""
    room = ctx.meter.decompress_room()
    try:
        out = _inflate(kind, bytes(buf[start:end]), room)
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as exc:
        ctx.issue("malformed", "needs-trust", f"{kind} stream does not decompress", str(exc), member)
        return kind
    ctx.meter.add_decompressed(len(out))
    ctx.scan(out, 0, len(out), join_member(member, f"<{kind} content>"), depth + 1)
    return kind
