"""A tolerant ZIP reader: it reads what loaders would read, and notes every trick on the way.

Loaders disagree with strict readers (Python's ``zipfile``): PyTorch reads members whose
flag bits claim encryption, ignores CRC errors, and trusts the central directory's names.
Scanners that used ``zipfile`` were bypassed by exactly those differences (CVE-2025-1944,
CVE-2025-1945, CVE-2025-10156). This reader takes members from the central directory *and*
from the local headers, reads data whatever the flags say, checks CRCs without stopping,
and reports name mismatches, hidden entries, overlaps and prepended data.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from .budgets import Meter

LOCAL, CENTRAL, EOCD, EOCD64, LOC64 = b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"
TRICK_FLAGS = {0x1: "encrypted", 0x20: "compressed patched data", 0x40: "strong encryption"}


@dataclass
class Entry:
    name: str
    header: int  # absolute offset of the local header
    method: int
    flags: int
    csize: int
    usize: int
    crc: int
    data_start: int = -1
    local_name: str | None = None
    in_central: bool = True


@dataclass
class ZipListing:
    entries: list[Entry] = field(default_factory=list)
    tricks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    prefix: int = 0  # bytes before the first member (self-extractor, polyglot)


def _name(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8" if flags & 0x800 else "cp437", "replace")


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    i = 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, i)
        body = extra[i + 4:i + 4 + size]
        if tag == 1:
            vals = [struct.unpack_from("<Q", body, j)[0] for j in range(0, len(body) - 7, 8)]
            if usize == 0xFFFFFFFF and vals:
                usize = vals.pop(0)
            if csize == 0xFFFFFFFF and vals:
                csize = vals.pop(0)
            if offset == 0xFFFFFFFF and vals:
                offset = vals.pop(0)
        i += 4 + size
    return usize, csize, offset


def _local(buf: Any, at: int, end: int) -> tuple[int, int, int, int, int, int, bytes] | None:
    """(flags, method, crc, csize, usize, data_start, name) of the local header at ``at``."""
    if at < 0 or at + 30 > end or bytes(buf[at:at + 4]) != LOCAL:
        return None
    _v, flags, method, _t, _d, crc, csize, usize, nlen, xlen = struct.unpack_from("<HHHHHIIIHH", buf, at + 4)
    name = bytes(buf[at + 30:at + 30 + nlen])
    extra = bytes(buf[at + 30 + nlen:at + 30 + nlen + xlen])
    usize, csize, _o = _zip64_extra(extra, usize, csize, 0)
    return flags, method, crc, csize, usize, at + 30 + nlen + xlen, name


def list_zip(buf: Any, start: int, end: int, *, max_members: int) -> ZipListing:
    out = ZipListing()
    tail_from = max(start, end - 65557)
    eocd = buf.rfind(EOCD, tail_from, end) if hasattr(buf, "rfind") else bytes(buf[tail_from:end]).rfind(EOCD)
    central: list[Entry] = []
    if eocd >= 0 and eocd + 22 <= end:
        _d, _dc, _n1, count, cd_size, cd_off, _cl = struct.unpack_from("<HHHHIIH", buf, eocd + 4)
        loc = eocd - 20
        if loc >= start and bytes(buf[loc:loc + 4]) == LOC64:
            rec = struct.unpack_from("<Q", buf, loc + 8)[0] + start
            if start <= rec and rec + 56 <= end and bytes(buf[rec:rec + 4]) == EOCD64:
                count, _c2, cd_size, cd_off = struct.unpack_from("<QQQQ", buf, rec + 24)
                eocd = rec
            else:  # a locator whose record is elsewhere (prepended data): it sits right before
                rec = loc - 56
                if rec >= start and bytes(buf[rec:rec + 4]) == EOCD64:
                    count, _c2, cd_size, cd_off = struct.unpack_from("<QQQQ", buf, rec + 24)
                    eocd = rec
        cd_start = eocd - cd_size
        delta = cd_start - (start + cd_off)
        if delta > 0:
            out.prefix = delta
            out.tricks.append(f"{delta} bytes of other data before the archive")
        pos = cd_start
        while pos + 46 <= end and bytes(buf[pos:pos + 4]) == CENTRAL and len(central) < max_members:
            (_vm, _vn, flags, method, _t, _d, crc, csize, usize, nlen, xlen, clen, _disk, _ia,
             _ea, off) = struct.unpack_from("<HHHHHHIIIHHHHHII", buf, pos + 4)
            name = bytes(buf[pos + 46:pos + 46 + nlen])
            extra = bytes(buf[pos + 46 + nlen:pos + 46 + nlen + xlen])
            usize, csize, off = _zip64_extra(extra, usize, csize, off)
            central.append(Entry(_name(name, flags), start + off + delta, method, flags, csize, usize, crc))
            pos += 46 + nlen + xlen + clen
        if count and len(central) < min(count, max_members):
            out.errors.append(f"the central directory lists {count} entries, {len(central)} were readable")
    else:
        out.errors.append("no end-of-central-directory record (truncated or not a complete ZIP)")
    for e in central:
        loc_info = _local(buf, e.header, end)
        if loc_info is None:
            out.errors.append(f"member '{e.name}': no local header at offset {e.header - start}")
            continue
        flags, method, _crc, _cs, _us, data_start, lname = loc_info
        e.data_start = data_start
        e.local_name = _name(lname, flags)
        if e.local_name != e.name:
            out.tricks.append(f"member '{e.name}': the local header names it '{e.local_name}'")
        if method != e.method:
            out.tricks.append(f"member '{e.name}': compression method {method} in the local header, {e.method} in the directory")
    out.entries = [e for e in central if e.data_start >= 0]
    # entries that only the local headers show (stream readers see them, directory readers do not)
    known = {e.header: e for e in central}
    pos = start + out.prefix if central else start
    while pos + 30 <= end and len(out.entries) < max_members:
        info = _local(buf, pos, end)
        if info is None:
            break
        flags, method, crc, csize, usize, data_start, lname = info
        nxt = data_start + csize
        if pos in known:
            nxt = data_start + known[pos].csize
        else:
            if flags & 0x8 and csize == 0:
                found = buf.find(LOCAL, data_start, end) if hasattr(buf, "find") else -1
                nxt = found if found >= 0 else end
                csize = nxt - data_start
            e = Entry(_name(lname, flags), pos, method, flags, csize, usize, crc, data_start,
                      _name(lname, flags), in_central=False)
            out.entries.append(e)
            if central:
                out.tricks.append(f"member '{e.name}' is in the local headers but not in the central directory")
        if flags & 0x8:
            if nxt + 4 <= end and bytes(buf[nxt:nxt + 4]) == b"PK\x07\x08":
                nxt += 16
            elif nxt + 12 <= end and bytes(buf[nxt + 12:nxt + 16]) in (LOCAL, CENTRAL):
                nxt += 12
        if nxt <= pos:
            break
        pos = nxt
    spans = sorted((e.data_start, e.data_start + e.csize, e.name) for e in out.entries if e.in_central)
    for (_a, a_end, a_name), (b_start, _b, b_name) in zip(spans, spans[1:], strict=False):
        if b_start < a_end:
            out.tricks.append(f"members '{a_name}' and '{b_name}' overlap (a zip-bomb construction)")
            break
    return out


class Unsupported(Exception):
    pass


def lzma1_filter(props: bytes) -> dict[str, int]:
    """The LZMA1 filter described by its 5 property bytes (lc/lp/pb + dictionary size)."""
    if len(props) < 5:
        raise ValueError("truncated LZMA properties")
    d = props[0]
    if d >= 9 * 5 * 5:
        raise ValueError("bad LZMA properties")
    lc, lp, pb = d % 9, (d // 9) % 5, d // 45
    dict_size = max(4096, struct.unpack_from("<I", props, 1)[0])
    return {"id": lzma.FILTER_LZMA1, "lc": lc, "lp": lp, "pb": pb, "dict_size": dict_size}


def member_data(buf: Any, e: Entry, end: int, meter: Meter) -> tuple[Any, int, int]:
    """The member's uncompressed bytes as (buffer, start, end); stored members are not copied."""
    stop = min(end, e.data_start + e.csize)
    if e.method == 0:
        return buf, e.data_start, stop
    raw = bytes(buf[e.data_start:stop])
    room = meter.decompress_room()
    if e.method == 8:
        d = zlib.decompressobj(-15)
        out = d.decompress(raw, room + 1)
    elif e.method == 12:
        out = bz2.BZ2Decompressor().decompress(raw, room + 1)
    elif e.method == 14:
        if len(raw) < 4:
            raise ValueError("truncated LZMA header")
        psize = struct.unpack_from("<H", raw, 2)[0]
        props = raw[4:4 + psize]
        out = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[lzma1_filter(props)]).decompress(
            raw[4 + psize:], room + 1)
    else:
        raise Unsupported(f"compression method {e.method}")
    meter.add_decompressed(len(out))
    return out, 0, len(out)
