"""A small 7z reader (standard library only): headers, folders, LZMA/LZMA2/Deflate/BZip2/Copy.

Enough of the 7z format to list an archive's files and decode them for scanning, including
archives whose header is itself compressed ("encoded header"). Coder chains (BCJ filters,
AES encryption) and multi-volume archives are reported as unscannable instead of guessed.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from .budgets import Meter
from .zipread import Unsupported, lzma1_filter

MAGIC = b"7z\xbc\xaf\x27\x1c"
(K_END, K_HEADER, K_ARCHIVE_PROPS, K_ADD_STREAMS, K_MAIN_STREAMS, K_FILES, K_PACK_INFO,
 K_UNPACK_INFO, K_SUBSTREAMS, K_SIZE, K_CRC, K_FOLDER, K_UNPACK_SIZE, K_NUM_UNPACK,
 K_EMPTY_STREAM, K_EMPTY_FILE) = range(16)
K_NAME, K_DUMMY, K_ENCODED = 0x11, 0x19, 0x17


class SevenZipError(Exception):
    pass


class _R:
    def __init__(self, data: bytes) -> None:
        self.d, self.i = data, 0

    def byte(self) -> int:
        if self.i >= len(self.d):
            raise SevenZipError("header ends early")
        b = self.d[self.i]
        self.i += 1
        return b

    def take(self, n: int) -> bytes:
        if n < 0 or self.i + n > len(self.d):
            raise SevenZipError("header ends early")
        out = self.d[self.i:self.i + n]
        self.i += n
        return out

    def num(self) -> int:
        first, mask, value = self.byte(), 0x80, 0
        for i in range(8):
            if not first & mask:
                return value | ((first & (mask - 1)) << (8 * i))
            value |= self.byte() << (8 * i)
            mask >>= 1
        return value

    def bits(self, n: int) -> list[bool]:
        out, b, mask = [], 0, 0
        for _ in range(n):
            if mask == 0:
                b, mask = self.byte(), 0x80
            out.append(bool(b & mask))
            mask >>= 1
        return out

    def defined(self, n: int) -> list[bool]:
        return [True] * n if self.byte() else self.bits(n)


@dataclass
class _Folder:
    coders: list[tuple[bytes, bytes]] = field(default_factory=list)
    unpack_sizes: list[int] = field(default_factory=list)
    streams: int = 1
    sizes: list[int] = field(default_factory=list)
    crc: bool = False


@dataclass
class _Streams:
    pack_pos: int = 0
    pack_sizes: list[int] = field(default_factory=list)
    folders: list[_Folder] = field(default_factory=list)


def _read_streams(r: _R) -> _Streams:
    s = _Streams()
    prop = r.byte()
    if prop == K_PACK_INFO:
        s.pack_pos = r.num()
        n = r.num()
        prop = r.byte()
        while prop != K_END:
            if prop == K_SIZE:
                s.pack_sizes = [r.num() for _ in range(n)]
            elif prop == K_CRC:
                d = r.defined(n)
                r.take(4 * sum(d))
            else:
                raise SevenZipError(f"unexpected property {prop} in pack info")
            prop = r.byte()
        prop = r.byte()
    if prop == K_UNPACK_INFO:
        if r.byte() != K_FOLDER:
            raise SevenZipError("folder list expected")
        nf = r.num()
        if nf > 100_000 or r.byte() != 0:
            raise SevenZipError("unsupported folder list")
        outs: list[int] = []
        for _ in range(nf):
            f, total_out, total_in = _Folder(), 0, 0
            for _c in range(r.num()):
                flag = r.byte()
                cid = r.take(flag & 0x0F)
                nin, nout = (r.num(), r.num()) if flag & 0x10 else (1, 1)
                props = r.take(r.num()) if flag & 0x20 else b""
                f.coders.append((cid, props))
                total_in, total_out = total_in + nin, total_out + nout
            for _b in range(total_out - 1):
                r.num(), r.num()
            packed = total_in - (total_out - 1)
            if packed > 1:
                for _p in range(packed):
                    r.num()
            s.folders.append(f)
            outs.append(total_out)
        if r.byte() != K_UNPACK_SIZE:
            raise SevenZipError("unpack sizes expected")
        for f, n_out in zip(s.folders, outs, strict=True):
            f.unpack_sizes = [r.num() for _ in range(n_out)]
        prop = r.byte()
        while prop != K_END:
            if prop == K_CRC:
                d = r.defined(nf)
                for f, has in zip(s.folders, d, strict=False):
                    f.crc = has
                r.take(4 * sum(d))
            else:
                raise SevenZipError(f"unexpected property {prop} in folder info")
            prop = r.byte()
        prop = r.byte()
    if prop == K_SUBSTREAMS:
        prop = r.byte()
        if prop == K_NUM_UNPACK:
            for f in s.folders:
                f.streams = r.num()
            prop = r.byte()
        if prop == K_SIZE:
            for f in s.folders:
                if f.streams:
                    f.sizes = [r.num() for _ in range(f.streams - 1)]
            prop = r.byte()
        while prop != K_END:
            if prop == K_CRC:
                n = sum(0 if (f.streams == 1 and f.crc) else f.streams for f in s.folders)
                r.take(4 * sum(r.defined(n)))
            else:
                raise SevenZipError(f"unexpected property {prop} in substreams")
            prop = r.byte()
        prop = r.byte()
    if prop != K_END:
        raise SevenZipError(f"unexpected property {prop} in streams info")
    for f in s.folders:
        total = f.unpack_sizes[-1] if f.unpack_sizes else 0
        if f.streams and not f.sizes and f.streams > 1:
            raise SevenZipError("substream sizes missing")
        f.sizes = [*f.sizes, total - sum(f.sizes)] if f.streams else []
    return s


_FILTERS = {
    b"\x03\x03\x01\x03": lzma.FILTER_X86, b"\x03\x03\x02\x05": lzma.FILTER_POWERPC,
    b"\x03\x03\x04\x01": lzma.FILTER_IA64, b"\x03\x03\x05\x01": lzma.FILTER_ARM,
    b"\x03\x03\x07\x01": lzma.FILTER_ARMTHUMB, b"\x03\x03\x08\x05": lzma.FILTER_SPARC,
}


def _lzma_filter(cid: bytes, props: bytes) -> dict[str, int] | None:
    if cid == b"\x21":
        if not props:
            raise SevenZipError("LZMA2 properties missing")
        p = props[0]
        dict_size = 0xFFFFFFFF if p == 40 else (2 | (p & 1)) << (p // 2 + 11)
        return {"id": lzma.FILTER_LZMA2, "dict_size": min(dict_size, 1 << 30)}
    if cid == b"\x03\x01\x01":
        return lzma1_filter(props)
    return None


def _decode(coders: list[tuple[bytes, bytes]], packed: bytes, size: int, meter: Meter) -> bytes:
    room = meter.decompress_room()
    if size > room:
        meter.add_decompressed(size)
    comp = [c for c in coders if _lzma_filter(*c) is not None]
    if len(coders) == 2 and len(comp) == 1:
        other = next(c for c in coders if c is not comp[0])
        if other[0] == b"\x03":
            pre = {"id": lzma.FILTER_DELTA, "dist": (other[1][0] + 1) if other[1] else 1}
        elif other[0] in _FILTERS:
            pre = {"id": _FILTERS[other[0]]}
        else:
            raise Unsupported(f"7z coder {other[0].hex()}")
        chain = [pre, _lzma_filter(*comp[0])]
        out = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=chain).decompress(packed, size)
        meter.add_decompressed(len(out))
        return out
    if len(coders) != 1:
        raise Unsupported("a 7z coder chain of more than one compression or encryption step")
    cid, props = coders[0]
    filt = _lzma_filter(cid, props)
    if filt is not None:
        out = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt]).decompress(packed, size)
    elif cid == b"\x00":
        out = packed[:size]
    elif cid == b"\x04\x01\x08":
        out = zlib.decompressobj(-15).decompress(packed, size)
    elif cid == b"\x04\x02\x02":
        out = bz2.BZ2Decompressor().decompress(packed, size)
    elif cid.startswith(b"\x06\xf1\x07"):
        raise Unsupported("7z AES encryption")
    else:
        raise Unsupported(f"7z coder {cid.hex()}")
    meter.add_decompressed(len(out))
    return out


def _folder_data(buf: Any, start: int, end: int, s: _Streams, meter: Meter) -> list[bytes]:
    pos = start + 32 + s.pack_pos
    out = []
    for f, psize in zip(s.folders, s.pack_sizes, strict=False):
        if pos + psize > end:
            raise SevenZipError("packed data runs past the end of the file")
        out.append(_decode(f.coders, bytes(buf[pos:pos + psize]), f.unpack_sizes[-1], meter))
        pos += psize
    return out


def read_7z(buf: Any, start: int, end: int, meter: Meter) -> list[tuple[str, bytes | Exception]]:
    """Every file in the archive as (name, bytes) or (name, the reason it cannot be read)."""
    if end - start < 32 or bytes(buf[start:start + 6]) != MAGIC:
        raise SevenZipError("not a 7z archive")
    off, size = struct.unpack_from("<QQ", buf, start + 12)
    hstart = start + 32 + off
    if hstart + size > end or size > 64 << 20:
        raise SevenZipError("the header lies outside the file")
    r = _R(bytes(buf[hstart:hstart + size]))
    kind = r.byte()
    for _ in range(4):
        if kind != K_ENCODED:
            break
        data = _folder_data(buf, start, end, _read_streams(r), meter)
        if not data:
            raise SevenZipError("empty encoded header")
        r = _R(data[0])
        kind = r.byte()
    if kind != K_HEADER:
        raise SevenZipError("no header")
    prop = r.byte()
    if prop == K_ARCHIVE_PROPS:
        raise Unsupported("7z archive properties")
    if prop == K_ADD_STREAMS:
        _read_streams(r)
        prop = r.byte()
    streams = _Streams()
    if prop == K_MAIN_STREAMS:
        streams = _read_streams(r)
        prop = r.byte()
    names: list[str] = []
    empty: list[bool] = []
    if prop == K_FILES:
        n = r.num()
        empty = [False] * n
        while (p := r.byte()) != K_END:
            body = _R(r.take(r.num()))
            if p == K_EMPTY_STREAM:
                empty = body.bits(n)
            elif p == K_NAME:
                body.byte()
                raw = body.d[body.i:].decode("utf-16-le", "replace")
                names = raw.split("\x00")[:n]
    out: list[tuple[str, bytes | Exception]] = []
    streams_iter = iter([])
    try:
        data = _folder_data(buf, start, end, streams, meter)
        chunks = []
        for f, blob in zip(streams.folders, data, strict=False):
            pos = 0
            for sz in f.sizes:
                chunks.append(blob[pos:pos + sz])
                pos += sz
        streams_iter = iter(chunks)
    except (Unsupported, SevenZipError, lzma.LZMAError, zlib.error, OSError, EOFError) as exc:
        return [(name, exc) for name, e in zip(names, empty, strict=False) if not e]
    for i, name in enumerate(names):
        if i < len(empty) and empty[i]:
            continue
        out.append((name, next(streams_iter, b"")))
    return out
